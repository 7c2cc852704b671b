// Logging: one process-wide sink, printf-style, levelled.
//
// Default level is Warning (quiet); NVMUX_LOG_LEVEL=error|warning|notice|info|debug
// in the environment or SetLogLevel() changes it. Lines go to stderr as
// "nvmux[<pid>] <level>: <text>". DPDK EAL's own log is routed here by shm/eal.
//
// Thread safety: all functions may be called from any thread; a line is
// written with a single write(2) so lines from threads and processes do not
// interleave.
#pragma once

#include <optional>
#include <string_view>

namespace nvmux {

enum class LogLevel { kError = 0, kWarning = 1, kNotice = 2, kInfo = 3, kDebug = 4 };

const char* ToString(LogLevel level);
// Parses "error", "warning", "notice", "info", "debug" (or 0-4).
std::optional<LogLevel> ParseLogLevel(std::string_view text);

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
bool LogEnabled(LogLevel level);

void Log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// Writes an already formatted line (used for routed foreign logs).
void LogRaw(LogLevel level, std::string_view text);

}  // namespace nvmux

#define NVMUX_LOG(level, ...)                                              \
  do {                                                                    \
    if (::nvmux::LogEnabled(::nvmux::LogLevel::level)) ::nvmux::Log(::nvmux::LogLevel::level, __VA_ARGS__); \
  } while (0)
