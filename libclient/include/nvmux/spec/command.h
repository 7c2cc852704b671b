// NVMe submission and completion queue entries and opcodes
// (NVMe base specification 1.4 sections 4.2, 4.6, 5 and 6).
//
// Thread safety: values only.
#pragma once

#include <cstdint>

#include "nvmux/spec/bits.h"

namespace nvmux::spec {

// Submission Queue Entry, 64 bytes. Command Dword 0 is split into opc, the
// flags byte (FUSE bits 1:0, PSDT bits 7:6) and cid.
struct Sqe {
  uint8_t opc = 0;
  uint8_t flags = 0;
  uint16_t cid = 0;
  uint32_t nsid = 0;
  uint32_t cdw2 = 0;
  uint32_t cdw3 = 0;
  uint64_t mptr = 0;
  uint64_t prp1 = 0;  // DPTR bytes 0-7 (PRP entry 1 or first half of an SGL descriptor)
  uint64_t prp2 = 0;  // DPTR bytes 8-15
  uint32_t cdw10 = 0;
  uint32_t cdw11 = 0;
  uint32_t cdw12 = 0;
  uint32_t cdw13 = 0;
  uint32_t cdw14 = 0;
  uint32_t cdw15 = 0;

  constexpr uint8_t fuse() const { return GetBits<uint8_t>(flags, 0, 2); }
  constexpr uint8_t psdt() const { return GetBits<uint8_t>(flags, 6, 2); }
  constexpr void set_fuse(uint8_t v) { flags = SetBits<uint8_t>(flags, 0, 2, v); }
  constexpr void set_psdt(uint8_t v) { flags = SetBits<uint8_t>(flags, 6, 2, v); }
};
static_assert(sizeof(Sqe) == 64);

inline constexpr uint8_t kFuseNone = 0;
inline constexpr uint8_t kFuseFirst = 1;   // compare of compare-and-write
inline constexpr uint8_t kFuseSecond = 2;  // write of compare-and-write
inline constexpr uint8_t kPsdtPrp = 0;

// Completion Queue Entry, 16 bytes. status holds the phase tag in bit 0 and
// the Status Field in bits 15:1.
struct Cqe {
  uint32_t cdw0 = 0;
  uint32_t cdw1 = 0;
  uint16_t sqhd = 0;
  uint16_t sqid = 0;
  uint16_t cid = 0;
  uint16_t status = 0;

  constexpr uint8_t p() const { return GetBits<uint16_t>(status, 0, 1) != 0; }
  constexpr uint8_t sc() const { return static_cast<uint8_t>(GetBits<uint16_t>(status, 1, 8)); }
  constexpr uint8_t sct() const { return static_cast<uint8_t>(GetBits<uint16_t>(status, 9, 3)); }
  constexpr uint8_t crd() const { return static_cast<uint8_t>(GetBits<uint16_t>(status, 12, 2)); }
  constexpr bool m() const { return GetBits<uint16_t>(status, 14, 1) != 0; }
  constexpr bool dnr() const { return GetBits<uint16_t>(status, 15, 1) != 0; }
};
static_assert(sizeof(Cqe) == 16);

// Admin command opcodes.
namespace admin {
inline constexpr uint8_t kDeleteIoSq = 0x00;
inline constexpr uint8_t kCreateIoSq = 0x01;
inline constexpr uint8_t kGetLogPage = 0x02;
inline constexpr uint8_t kDeleteIoCq = 0x04;
inline constexpr uint8_t kCreateIoCq = 0x05;
inline constexpr uint8_t kIdentify = 0x06;
inline constexpr uint8_t kAbort = 0x08;
inline constexpr uint8_t kSetFeatures = 0x09;
inline constexpr uint8_t kGetFeatures = 0x0A;
inline constexpr uint8_t kAsyncEventRequest = 0x0C;
inline constexpr uint8_t kNamespaceManagement = 0x0D;
inline constexpr uint8_t kFirmwareCommit = 0x10;
inline constexpr uint8_t kFirmwareImageDownload = 0x11;
inline constexpr uint8_t kDeviceSelfTest = 0x14;
inline constexpr uint8_t kNamespaceAttachment = 0x15;
inline constexpr uint8_t kKeepAlive = 0x18;
inline constexpr uint8_t kDirectiveSend = 0x19;
inline constexpr uint8_t kDirectiveReceive = 0x1A;
inline constexpr uint8_t kDoorbellBufferConfig = 0x7C;
inline constexpr uint8_t kFormatNvm = 0x80;
inline constexpr uint8_t kSecuritySend = 0x81;
inline constexpr uint8_t kSecurityReceive = 0x82;
inline constexpr uint8_t kSanitize = 0x84;
}  // namespace admin

// NVM command set opcodes.
namespace nvm {
inline constexpr uint8_t kFlush = 0x00;
inline constexpr uint8_t kWrite = 0x01;
inline constexpr uint8_t kRead = 0x02;
inline constexpr uint8_t kWriteUncorrectable = 0x04;
inline constexpr uint8_t kCompare = 0x05;
inline constexpr uint8_t kWriteZeroes = 0x08;
inline constexpr uint8_t kDatasetManagement = 0x09;
inline constexpr uint8_t kVerify = 0x0C;
inline constexpr uint8_t kReservationRegister = 0x0D;
inline constexpr uint8_t kReservationReport = 0x0E;
inline constexpr uint8_t kReservationAcquire = 0x11;
inline constexpr uint8_t kReservationRelease = 0x15;
inline constexpr uint8_t kCopy = 0x19;
}  // namespace nvm

// Identify CNS values (CDW10 bits 7:0).
namespace cns {
inline constexpr uint8_t kNamespace = 0x00;
inline constexpr uint8_t kController = 0x01;
inline constexpr uint8_t kActiveNamespaceList = 0x02;
inline constexpr uint8_t kNamespaceIdDescriptors = 0x03;
inline constexpr uint8_t kAllocatedNamespaceList = 0x10;
inline constexpr uint8_t kAllocatedNamespace = 0x11;
inline constexpr uint8_t kAttachedControllerList = 0x12;
inline constexpr uint8_t kControllerList = 0x13;
}  // namespace cns

// Dataset Management range (16 bytes) and its CDW11 attribute bits.
struct DsmRange {
  uint32_t cattr = 0;
  uint32_t nlb = 0;  // 1's based
  uint64_t slba = 0;
};
static_assert(sizeof(DsmRange) == 16);
inline constexpr uint32_t kDsmAttrDeallocate = 1u << 2;

}  // namespace nvmux::spec
