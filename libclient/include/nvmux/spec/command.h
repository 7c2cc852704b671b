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

inline constexpr uint8_t kPsdtSglMptrContiguous = 1;  // SGL for data, MPTR a contiguous buffer
inline constexpr uint8_t kPsdtSglMptrSgl = 2;         // SGL for data and metadata

// SGL descriptor (NVMe base specification 1.4 section 4.4), 16 bytes.
// Byte 15: descriptor type in bits 7:4, subtype in bits 3:0.
struct SglDescriptor {
  uint64_t address = 0;
  uint32_t length = 0;
  uint8_t rsvd12[3] = {};
  uint8_t type_subtype = 0;

  constexpr uint8_t type() const { return static_cast<uint8_t>(type_subtype >> 4); }
  constexpr uint8_t subtype() const { return static_cast<uint8_t>(type_subtype & 0xF); }
};
static_assert(sizeof(SglDescriptor) == 16);

namespace sgl {
inline constexpr uint8_t kDataBlock = 0x0;
inline constexpr uint8_t kBitBucket = 0x1;
inline constexpr uint8_t kSegment = 0x2;
inline constexpr uint8_t kLastSegment = 0x3;
inline constexpr uint8_t kKeyedDataBlock = 0x4;
inline constexpr uint8_t kTransportDataBlock = 0x5;
inline constexpr uint8_t kSubtypeAddress = 0x0;
constexpr uint8_t TypeByte(uint8_t type, uint8_t subtype = kSubtypeAddress) {
  return static_cast<uint8_t>((type << 4) | (subtype & 0xF));
}
}  // namespace sgl

// Copy source range, descriptor format 0 (32 bytes).
struct CopySourceRange {
  uint8_t rsvd0[8] = {};
  uint64_t slba = 0;
  uint16_t nlb = 0;  // 0's based
  uint8_t rsvd18[6] = {};
  uint32_t eilbrt = 0;
  uint16_t elbat = 0;
  uint16_t elbatm = 0;
};
static_assert(sizeof(CopySourceRange) == 32);

// Reservations (NVMe base specification 1.4 sections 6.11-6.14, 8.8).
namespace resv {
// Reservation types (RTYPE).
inline constexpr uint8_t kWriteExclusive = 1;
inline constexpr uint8_t kExclusiveAccess = 2;
inline constexpr uint8_t kWriteExclusiveRegistrantsOnly = 3;
inline constexpr uint8_t kExclusiveAccessRegistrantsOnly = 4;
inline constexpr uint8_t kWriteExclusiveAllRegistrants = 5;
inline constexpr uint8_t kExclusiveAccessAllRegistrants = 6;
// Register action (RREGA), Acquire action (RACQA), Release action (RRELA).
inline constexpr uint8_t kRegister = 0;
inline constexpr uint8_t kUnregister = 1;
inline constexpr uint8_t kReplace = 2;
inline constexpr uint8_t kAcquire = 0;
inline constexpr uint8_t kPreempt = 1;
inline constexpr uint8_t kPreemptAndAbort = 2;
inline constexpr uint8_t kRelease = 0;
inline constexpr uint8_t kClear = 1;
}  // namespace resv

// Reservation Register data.
struct ReservationRegisterData {
  uint64_t crkey = 0;
  uint64_t nrkey = 0;
};
static_assert(sizeof(ReservationRegisterData) == 16);

// Reservation Acquire data (Release uses only crkey).
struct ReservationAcquireData {
  uint64_t crkey = 0;
  uint64_t prkey = 0;
};
static_assert(sizeof(ReservationAcquireData) == 16);

// Reservation Status data structure header (EDS = 0) and one registered
// controller entry.
struct ReservationStatusHeader {
  uint32_t gen = 0;
  uint8_t rtype = 0;
  uint8_t regctl[2] = {};  // number of registered controllers (unaligned u16)
  uint8_t rsvd7[2] = {};
  uint8_t ptpls = 0;
  uint8_t rsvd10[14] = {};
};
static_assert(sizeof(ReservationStatusHeader) == 24);

struct RegisteredController {
  uint16_t cntlid = 0;
  uint8_t rcsts = 0;  // bit 0: holds the reservation
  uint8_t rsvd3[5] = {};
  uint64_t hostid = 0;
  uint64_t rkey = 0;
};
static_assert(sizeof(RegisteredController) == 24);

// Dataset Management range (16 bytes) and its CDW11 attribute bits.
struct DsmRange {
  uint32_t cattr = 0;
  uint32_t nlb = 0;  // 1's based
  uint64_t slba = 0;
};
static_assert(sizeof(DsmRange) == 16);
inline constexpr uint32_t kDsmAttrDeallocate = 1u << 2;

}  // namespace nvmux::spec
