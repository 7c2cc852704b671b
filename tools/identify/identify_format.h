// Text and hex output of an IdentifyReport, laid out like SPDK's
// spdk_nvme_identify: the same section headings ("Controller
// Capabilities/Features", "Admin Command Set Attributes", ...), one
// "Label:   value" line per field, with the field names users search for
// ("Serial Number", "Maximum Data Transfer Size", "LBA Format #00: ...").
//
// Values are decoded: sizes in bytes with a human-readable form in
// parentheses ("131072 (128KiB)"), temperatures in Kelvin and Celsius,
// MDTS from CAP.MPSMIN. Absent optional data (log pages, features) prints
// "Not Supported" under its heading. Device strings are trimmed of trailing
// spaces and NULs, with non-printable bytes shown as '.'.
//
// Thread safety: pure functions of their arguments; they only write to the
// stream they are given. No call fails; stream errors are left in the
// stream's state for the caller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <span>
#include <string>
#include <string_view>

#include "tools/identify/identify_report.h"

namespace nvmux::identify {

// The whole report: controller sections, logs, features, then every
// namespace under "Active Namespaces".
void PrintText(std::ostream& os, const IdentifyReport& report);

// Raw pages as hex dumps, after a "Raw Data, NVMe Controller at <trid>"
// banner: Identify Controller, each Identify Namespace, and each log page
// present, every one under a heading naming it and its size. For -x, print
// it after PrintText (spdk_nvme_identify interleaves the dumps instead).
void PrintHex(std::ostream& os, const IdentifyReport& report);

// One dump, 16 bytes a line:
//   "0000: 4e 56 4d 55 58 20 20 20 00 00 00 00 00 00 00 00  NVMUX   ........"
// Offsets are 4 hex digits (more if needed); bytes 0x20..0x7e show as
// themselves in the ASCII column, others as '.'. The last line is short if
// the size is not a multiple of 16. Nothing is printed for an empty span.
void HexDump(std::ostream& os, std::span<const uint8_t> bytes);

// Value helpers, shared with the JSON output (the raw-field readers are in
// identify_report.h).

// Bytes in the largest binary unit that keeps the value >= 1: "512B",
// "128KiB", "1GiB", "1.5GiB" (one decimal, truncated, when not exact).
std::string HumanSize(uint64_t bytes);

// Names of opcodes ("Identify", "Read"); "Vendor Specific" in the vendor
// range, "Unknown" otherwise.
std::string_view AdminOpcodeName(uint8_t opc);
std::string_view IoOpcodeName(uint8_t opc);

}  // namespace nvmux::identify
