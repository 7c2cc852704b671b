// NVMe controller registers (BAR0), NVMe base specification 1.4 section 3.1.
//
// Offsets of each register, and value wrappers for CAP, VS, CC, CSTS and AQA
// whose accessors keep the spec's field names. Doorbells start at
// kDoorbellBase; see DoorbellOffset().
//
// Thread safety: values only.
#pragma once

#include <cstdint>

#include "nvmux/spec/bits.h"

namespace nvmux::spec {

// Register offsets within BAR0.
inline constexpr uint32_t kRegCap = 0x00;    // 8 bytes, RO
inline constexpr uint32_t kRegVs = 0x08;     // RO
inline constexpr uint32_t kRegIntms = 0x0C;  // RW1S
inline constexpr uint32_t kRegIntmc = 0x10;  // RW1C
inline constexpr uint32_t kRegCc = 0x14;
inline constexpr uint32_t kRegCsts = 0x1C;   // RO
inline constexpr uint32_t kRegNssr = 0x20;
inline constexpr uint32_t kRegAqa = 0x24;
inline constexpr uint32_t kRegAsq = 0x28;    // 8 bytes
inline constexpr uint32_t kRegAcq = 0x30;    // 8 bytes
inline constexpr uint32_t kRegCmbloc = 0x38;
inline constexpr uint32_t kRegCmbsz = 0x3C;
inline constexpr uint32_t kRegCmbmsc = 0x50;  // 8 bytes (NVMe 1.4+, when CAP.CMBS)
inline constexpr uint32_t kRegCmbsts = 0x58;
inline constexpr uint32_t kDoorbellBase = 0x1000;

// Offset of the SQ tail (is_cq=false) or CQ head (is_cq=true) doorbell of qid.
constexpr uint32_t DoorbellOffset(uint16_t qid, bool is_cq, uint32_t dstrd = 0) {
  return kDoorbellBase + (2u * qid + (is_cq ? 1u : 0u)) * (4u << dstrd);
}

// Controller Capabilities.
struct Cap {
  uint64_t raw = 0;
  NVMUX_SPEC_FIELD(uint16_t, mqes, 0, 16)   // maximum queue entries, 0's based
  NVMUX_SPEC_FIELD(uint8_t, cqr, 16, 1)     // contiguous queues required
  NVMUX_SPEC_FIELD(uint8_t, ams, 17, 2)     // arbitration mechanisms supported
  NVMUX_SPEC_FIELD(uint8_t, to, 24, 8)      // timeout, 500 ms units
  NVMUX_SPEC_FIELD(uint8_t, dstrd, 32, 4)   // doorbell stride
  NVMUX_SPEC_FIELD(uint8_t, nssrs, 36, 1)   // NVM subsystem reset supported
  NVMUX_SPEC_FIELD(uint8_t, css, 37, 8)     // command sets supported
  NVMUX_SPEC_FIELD(uint8_t, bps, 45, 1)     // boot partition support
  NVMUX_SPEC_FIELD(uint8_t, mpsmin, 48, 4)  // 2^(12 + mpsmin)
  NVMUX_SPEC_FIELD(uint8_t, mpsmax, 52, 4)
  NVMUX_SPEC_FIELD(uint8_t, pmrs, 56, 1)
  NVMUX_SPEC_FIELD(uint8_t, cmbs, 57, 1)
};
static_assert(sizeof(Cap) == 8);
inline constexpr uint8_t kCapCssNvm = 0x01;  // CAP.CSS bit 0: NVM command set

// Version.
struct Vs {
  uint32_t raw = 0;
  NVMUX_SPEC_FIELD(uint8_t, ter, 0, 8)
  NVMUX_SPEC_FIELD(uint8_t, mnr, 8, 8)
  NVMUX_SPEC_FIELD(uint16_t, mjr, 16, 16)
};
static_assert(sizeof(Vs) == 4);
inline constexpr uint32_t kVersion1_4 = 0x00010400;

// Controller Configuration.
struct Cc {
  uint32_t raw = 0;
  NVMUX_SPEC_FIELD(uint8_t, en, 0, 1)
  NVMUX_SPEC_FIELD(uint8_t, css, 4, 3)
  NVMUX_SPEC_FIELD(uint8_t, mps, 7, 4)      // page size 2^(12 + mps)
  NVMUX_SPEC_FIELD(uint8_t, ams, 11, 3)
  NVMUX_SPEC_FIELD(uint8_t, shn, 14, 2)     // shutdown notification
  NVMUX_SPEC_FIELD(uint8_t, iosqes, 16, 4)  // log2 of I/O SQ entry size
  NVMUX_SPEC_FIELD(uint8_t, iocqes, 20, 4)  // log2 of I/O CQ entry size
};
static_assert(sizeof(Cc) == 4);
inline constexpr uint8_t kCcCssNvm = 0;
inline constexpr uint8_t kCcShnNone = 0;
inline constexpr uint8_t kCcShnNormal = 1;
inline constexpr uint8_t kCcShnAbrupt = 2;

// Controller Status.
struct Csts {
  uint32_t raw = 0;
  NVMUX_SPEC_FIELD(uint8_t, rdy, 0, 1)
  NVMUX_SPEC_FIELD(uint8_t, cfs, 1, 1)
  NVMUX_SPEC_FIELD(uint8_t, shst, 2, 2)
  NVMUX_SPEC_FIELD(uint8_t, nssro, 4, 1)
  NVMUX_SPEC_FIELD(uint8_t, pp, 5, 1)
};
static_assert(sizeof(Csts) == 4);
inline constexpr uint8_t kShstNormal = 0;
inline constexpr uint8_t kShstOccurring = 1;
inline constexpr uint8_t kShstComplete = 2;

// Admin Queue Attributes (both sizes 0's based).
struct Aqa {
  uint32_t raw = 0;
  NVMUX_SPEC_FIELD(uint16_t, asqs, 0, 12)
  NVMUX_SPEC_FIELD(uint16_t, acqs, 16, 12)
};
static_assert(sizeof(Aqa) == 4);

}  // namespace nvmux::spec
