#include "shm/base/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace nvmux {
namespace {

LogLevel InitialLevel() {
  const char* env = std::getenv("NVMUX_LOG_LEVEL");
  if (env == nullptr) return LogLevel::kWarning;
  return ParseLogLevel(env).value_or(LogLevel::kWarning);
}

std::atomic<int>& LevelStore() {
  static std::atomic<int> level{static_cast<int>(InitialLevel())};
  return level;
}

}  // namespace

const char* ToString(LogLevel level) {
  switch (level) {
    case LogLevel::kError: return "error";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kNotice: return "notice";
    case LogLevel::kInfo: return "info";
    case LogLevel::kDebug: return "debug";
  }
  return "?";
}

std::optional<LogLevel> ParseLogLevel(std::string_view text) {
  for (int i = 0; i <= static_cast<int>(LogLevel::kDebug); ++i) {
    auto level = static_cast<LogLevel>(i);
    if (text == ToString(level) || text == std::to_string(i)) return level;
  }
  return std::nullopt;
}

void SetLogLevel(LogLevel level) { LevelStore().store(static_cast<int>(level)); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(LevelStore().load()); }
bool LogEnabled(LogLevel level) { return static_cast<int>(level) <= LevelStore().load(); }

void LogRaw(LogLevel level, std::string_view text) {
  char prefix[48];
  int n = std::snprintf(prefix, sizeof(prefix), "nvmux[%d] %s: ", static_cast<int>(getpid()), ToString(level));
  std::string line(prefix, static_cast<size_t>(n));
  line.append(text);
  if (line.empty() || line.back() != '\n') line.push_back('\n');
  ssize_t ignored = write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

void Log(LogLevel level, const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = static_cast<size_t>(n) < sizeof(buf) ? static_cast<size_t>(n) : sizeof(buf) - 1;
  LogRaw(level, std::string_view(buf, len));
}

}  // namespace nvmux
