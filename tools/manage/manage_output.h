// nvmux-manage's output helpers: a small JSON writer (the `--json` form of
// every subcommand), nvme-cli style formatting of sizes, 128-bit counters,
// hex dumps and identify strings, and the names nvme-cli prints for
// features and completion statuses.
//
// Thread safety: pure functions; a JsonWriter belongs to one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nvmux/spec/command.h"
#include "tools/common/json_writer.h"

namespace nvmux::manage {

// The --json form of every subcommand: one document per line, ", " and
// ": " separators (the shared writer in its spaced single-line style).
class JsonWriter : public tools::JsonWriter {
 public:
  JsonWriter() : tools::JsonWriter(0, true) {}
};

// printf into a std::string, of any length (format checked by the compiler).
std::string Sprintf(const char* format, ...) __attribute__((format(printf, 1, 2)));

// `s` as a JSON string literal, quotes included.
std::string JsonQuote(std::string_view s);

// A fixed-width, space-padded identify field (SN, MN, FR) without the padding.
std::string TrimField(const char* field, size_t width);
template <size_t N>
std::string TrimField(const char (&field)[N]) {
  return TrimField(field, N);
}

// nvme-cli's `nvme list` units: "1.07  GB", "512.00  kB", "0.00   B".
std::string FormatUnits(uint64_t bytes);
// A little-endian 128-bit counter (SMART log) in decimal.
std::string Uint128ToString(const uint8_t (&le)[16]);
// Little-endian 16-bit field stored as bytes (SMART composite temperature).
inline uint16_t Le16(const uint8_t (&le)[2]) { return static_cast<uint16_t>(le[0] | (le[1] << 8)); }

// nvme-cli's hex dump: a header row, then "0000: 00 11 ... "ascii"" lines.
std::string HexDump(const void* data, size_t length);
// Lowercase hex digits, no separators (the `--json` form of binary data).
std::string HexString(const void* data, size_t length);

// "2024-05-01 12:00:00" (local time) from CLOCK_REALTIME nanoseconds.
std::string FormatRealtime(uint64_t realtime_ns);

// nvme-cli's names: "Arbitration", ...; "Unknown" for others.
const char* FeatureName(uint8_t fid);
// Get Features SEL: "Current", "Default", "Saved", "Supported capabilities".
const char* SelectName(uint8_t sel);
// "Invalid Namespace or Format (sct 0, sc 0x0b)" for a failed completion.
std::string CompletionStatusText(const spec::Cqe& cpl);

}  // namespace nvmux::manage
