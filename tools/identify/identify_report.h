// IdentifyReport: everything nvmux-identify shows about one controller, as
// plain data. The gathering half (nvmux_identify.cc) fills it from a live
// controller; identify_format.h prints it as text or hex and identify_json.h
// as JSON. Tests build one by hand.
//
// Conventions:
//  - Spec structures are kept verbatim (little-endian, as the controller
//    returned them), so the hex dump shows exactly what was read.
//  - std::nullopt means "not available": the controller does not support the
//    log page or feature, or the command failed. The printers say
//    "Not Supported" (text) or write null (JSON); they never show a default.
//  - Feature values are Get Features (SEL=0, current) completion dword 0.
//
// Thread safety: value type, no shared state.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "nvmux/spec/identify.h"
#include "nvmux/spec/log_page.h"
#include "nvmux/spec/registers.h"

namespace nvmux::identify {

// One active namespace.
struct NamespaceReport {
  uint32_t nsid = 0;
  spec::IdentifyNamespace data{};  // Identify CNS 00h
  // From the Namespace Identification Descriptor list (Identify CNS 03h);
  // nullopt when the list was not read or did not carry that type. The
  // printers fall back to data.nguid / data.eui64 when these are absent.
  std::optional<std::array<uint8_t, 16>> nguid;  // NIDT 2
  std::optional<std::array<uint8_t, 8>> eui64;   // NIDT 1
  std::optional<std::array<uint8_t, 16>> uuid;   // NIDT 3
};

struct IdentifyReport {
  // Canonical transport id string ("trtype:vfiouser traddr:/run/nvmux-emu").
  std::string transport_id;

  // Controller registers as read after initialisation.
  spec::Cap cap;
  spec::Vs vs;
  spec::Cc cc;
  spec::Csts csts;

  spec::IdentifyController ctrlr{};  // Identify CNS 01h

  // I/O queues granted by Set Features Number of Queues during init (NSQA + 1
  // and NCQA + 1, as ControllerData reports them); 0 when none were granted.
  uint16_t io_sq_granted = 0;
  uint16_t io_cq_granted = 0;

  // Log pages (Get Log Page, NSID FFFFFFFFh).
  std::optional<spec::SmartHealthLog> smart_health;                 // LID 02h
  std::optional<std::vector<spec::ErrorInformationEntry>> errors;  // LID 01h, ELPE + 1 entries
  std::optional<spec::FirmwareSlotLog> firmware_slots;             // LID 03h
  std::optional<spec::CommandsSupportedAndEffectsLog> effects;     // LID 05h

  // Features (Get Features, current value, completion dword 0).
  std::optional<uint32_t> arbitration;            // FID 01h
  std::optional<uint32_t> power_management;       // FID 02h
  std::optional<uint32_t> temperature_threshold;  // FID 04h (composite, over-temperature)
  std::optional<uint32_t> error_recovery;         // FID 05h
  std::optional<uint32_t> number_of_queues;       // FID 07h

  // Active namespaces in ascending NSID order.
  std::vector<NamespaceReport> namespaces;
};

// Derived values shared by the text and JSON printers.

// Maximum data transfer size in bytes: 2^(12 + CAP.MPSMIN + MDTS).
// nullopt when MDTS is 0 (no limit) or the value would not fit in 64 bits.
inline std::optional<uint64_t> MdtsBytes(const spec::Cap& cap, uint8_t mdts) {
  const unsigned shift = 12u + cap.mpsmin() + mdts;
  if (mdts == 0 || shift >= 64) {
    return std::nullopt;
  }
  return uint64_t{1} << shift;
}

// Index of the LBA format in use (FLBAS bits 3:0).
inline uint8_t CurrentLbaFormat(const spec::IdentifyNamespace& ns) {
  return static_cast<uint8_t>(ns.flbas & 0x0F);
}

// Data bytes per LBA of format `index` (2^LBADS); 0 when the index or LBADS
// is out of range. Shown as reported even when LBADS < 9 (invalid per spec).
inline uint64_t LbaDataSize(const spec::IdentifyNamespace& ns, uint8_t index) {
  if (index >= 16) {
    return 0;
  }
  const uint8_t lbads = ns.lbaf[index].lbads;
  return lbads >= 64 ? 0 : uint64_t{1} << lbads;
}

// Reading raw fields.

// A fixed-size ASCII field (SN, MN, FR, SUBNQN, firmware revisions) up to its
// first NUL, trailing spaces removed, bytes outside 0x20..0x7e replaced by '.'.
inline std::string AsciiField(const char* data, size_t size) {
  size_t len = 0;
  while (len < size && data[len] != '\0') {
    ++len;
  }
  while (len > 0 && data[len - 1] == ' ') {
    --len;
  }
  std::string out(data, len);
  for (char& ch : out) {
    const auto b = static_cast<unsigned char>(ch);
    if (b < 0x20 || b > 0x7E) {
      ch = '.';
    }
  }
  return out;
}

// A little-endian 16-bit field stored as bytes (SMART composite temperature).
inline uint16_t Le16(const uint8_t (&le)[2]) { return static_cast<uint16_t>(le[0] | (le[1] << 8)); }

// A 128-bit little-endian counter (SMART counters, TNVMCAP, NVMCAP) if it
// fits in 64 bits.
inline std::optional<uint64_t> Uint128ToU64(const uint8_t (&le)[16]) {
  if (std::any_of(le + 8, le + 16, [](uint8_t b) { return b != 0; })) {
    return std::nullopt;
  }
  uint64_t v = 0;
  for (unsigned i = 0; i < 8; ++i) {
    v |= uint64_t{le[i]} << (8 * i);
  }
  return v;
}

// A 128-bit little-endian counter in decimal, exact at any size.
inline std::string Uint128Decimal(const uint8_t (&le)[16]) {
  uint8_t be[16];  // most significant byte first, divided by 10 in place
  std::reverse_copy(le, le + 16, be);
  std::string digits;
  bool nonzero = true;
  while (nonzero) {
    unsigned remainder = 0;
    nonzero = false;
    for (uint8_t& byte : be) {
      const unsigned cur = (remainder << 8) | byte;
      byte = static_cast<uint8_t>(cur / 10);
      remainder = cur % 10;
      nonzero = nonzero || byte != 0;
    }
    digits.push_back(static_cast<char>('0' + remainder));
  }
  std::reverse(digits.begin(), digits.end());
  return digits;
}

// Bytes as hex in array order without separators: uppercase for NGUID and
// EUI64 (as spdk_nvme_identify prints them), lowercase otherwise.
inline std::string HexBytes(std::span<const uint8_t> bytes, bool upper = true) {
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string out;
  for (const uint8_t b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 0xF];
  }
  return out;
}

// 16 bytes as a lowercase RFC 4122 UUID: "01234567-89ab-cdef-0123-456789abcdef".
inline std::string UuidString(std::span<const uint8_t, 16> b) {
  return HexBytes(b.subspan(0, 4), false) + '-' + HexBytes(b.subspan(4, 2), false) + '-' +
         HexBytes(b.subspan(6, 2), false) + '-' + HexBytes(b.subspan(8, 2), false) + '-' +
         HexBytes(b.subspan(10, 6), false);
}

}  // namespace nvmux::identify
