// NVMe completion status codes (NVMe base specification 1.4 section 4.6.1).
//
// A completion's Status Field is SCT (type) / SC (code) plus More and Do Not
// Retry. CompletionStatus is the value the emulator builds and the driver
// reports; ToStatusField() packs it into CQE bits 15:1 (the phase tag is
// added by whoever posts the entry).
//
// Thread safety: values only.
#pragma once

#include <cstdint>

namespace nvmux::spec {

// Status Code Type.
namespace sct {
inline constexpr uint8_t kGeneric = 0;
inline constexpr uint8_t kCommandSpecific = 1;
inline constexpr uint8_t kMediaError = 2;
inline constexpr uint8_t kPathRelated = 3;
}  // namespace sct

// Generic Command Status (SCT 0).
namespace sc {
inline constexpr uint8_t kSuccess = 0x00;
inline constexpr uint8_t kInvalidOpcode = 0x01;
inline constexpr uint8_t kInvalidField = 0x02;
inline constexpr uint8_t kCommandIdConflict = 0x03;
inline constexpr uint8_t kDataTransferError = 0x04;
inline constexpr uint8_t kAbortedPowerLoss = 0x05;
inline constexpr uint8_t kInternalError = 0x06;
inline constexpr uint8_t kAbortRequested = 0x07;
inline constexpr uint8_t kAbortedSqDeletion = 0x08;
inline constexpr uint8_t kAbortedFailedFused = 0x09;
inline constexpr uint8_t kAbortedMissingFused = 0x0A;
inline constexpr uint8_t kInvalidNamespaceOrFormat = 0x0B;
inline constexpr uint8_t kCommandSequenceError = 0x0C;
inline constexpr uint8_t kInvalidSglSegmentDescriptor = 0x0D;
inline constexpr uint8_t kInvalidNumberOfSglDescriptors = 0x0E;
inline constexpr uint8_t kDataSglLengthInvalid = 0x0F;
inline constexpr uint8_t kMetadataSglLengthInvalid = 0x10;
inline constexpr uint8_t kSglDescriptorTypeInvalid = 0x11;
inline constexpr uint8_t kInvalidUseOfCmb = 0x12;
inline constexpr uint8_t kPrpOffsetInvalid = 0x13;
inline constexpr uint8_t kKeepAliveTimerExpired = 0x19;
inline constexpr uint8_t kKeepAliveTimeoutInvalid = 0x1A;
// Generic, NVM command set range.
inline constexpr uint8_t kLbaOutOfRange = 0x80;
inline constexpr uint8_t kCapacityExceeded = 0x81;
inline constexpr uint8_t kNamespaceNotReady = 0x82;
inline constexpr uint8_t kReservationConflict = 0x83;
inline constexpr uint8_t kFormatInProgress = 0x84;

// Command Specific Status (SCT 1).
inline constexpr uint8_t kCompletionQueueInvalid = 0x00;
inline constexpr uint8_t kInvalidQueueIdentifier = 0x01;
inline constexpr uint8_t kInvalidQueueSize = 0x02;
inline constexpr uint8_t kAbortCommandLimitExceeded = 0x03;
inline constexpr uint8_t kAsyncEventRequestLimitExceeded = 0x05;
inline constexpr uint8_t kInvalidFirmwareSlot = 0x06;
inline constexpr uint8_t kInvalidFirmwareImage = 0x07;
inline constexpr uint8_t kInvalidInterruptVector = 0x08;
inline constexpr uint8_t kInvalidLogPage = 0x09;
inline constexpr uint8_t kInvalidFormat = 0x0A;
inline constexpr uint8_t kInvalidQueueDeletion = 0x0C;
inline constexpr uint8_t kFeatureIdNotSaveable = 0x0D;
inline constexpr uint8_t kFeatureNotChangeable = 0x0E;
inline constexpr uint8_t kFeatureNotNamespaceSpecific = 0x0F;
inline constexpr uint8_t kNamespaceInsufficientCapacity = 0x15;
inline constexpr uint8_t kNamespaceIdentifierUnavailable = 0x16;
inline constexpr uint8_t kNamespaceAlreadyAttached = 0x18;
inline constexpr uint8_t kNamespaceIsPrivate = 0x19;
inline constexpr uint8_t kNamespaceNotAttached = 0x1A;
inline constexpr uint8_t kThinProvisioningNotSupported = 0x1B;
inline constexpr uint8_t kControllerListInvalid = 0x1C;
// Command Specific, NVM command set range.
inline constexpr uint8_t kConflictingAttributes = 0x80;
inline constexpr uint8_t kInvalidProtectionInformation = 0x81;
inline constexpr uint8_t kWriteToReadOnlyRange = 0x82;
inline constexpr uint8_t kCommandSizeLimitExceeded = 0x83;

// Media and Data Integrity Errors (SCT 2).
inline constexpr uint8_t kWriteFault = 0x80;
inline constexpr uint8_t kUnrecoveredReadError = 0x81;
inline constexpr uint8_t kEndToEndGuardCheckError = 0x82;
inline constexpr uint8_t kEndToEndApplicationTagCheckError = 0x83;
inline constexpr uint8_t kEndToEndReferenceTagCheckError = 0x84;
inline constexpr uint8_t kCompareFailure = 0x85;
inline constexpr uint8_t kAccessDenied = 0x86;
inline constexpr uint8_t kDeallocatedOrUnwrittenBlock = 0x87;
}  // namespace sc

struct CompletionStatus {
  uint8_t sct = sct::kGeneric;
  uint8_t sc = sc::kSuccess;
  bool dnr = false;

  constexpr bool ok() const { return sct == sct::kGeneric && sc == sc::kSuccess; }
  friend constexpr bool operator==(const CompletionStatus&, const CompletionStatus&) = default;
};

inline constexpr CompletionStatus kSuccess{};

// Status with Do Not Retry set (the checklist's "+D").
constexpr CompletionStatus Dnr(uint8_t type, uint8_t code) { return {type, code, true}; }
// Status with Do Not Retry clear.
constexpr CompletionStatus Retry(uint8_t type, uint8_t code) { return {type, code, false}; }

// CQE DW3 bits 31:17 image (phase bit excluded), i.e. Cqe::status >> 1.
constexpr uint16_t ToStatusField(CompletionStatus s) {
  return static_cast<uint16_t>((s.sc & 0xFFu) | ((s.sct & 0x7u) << 8) | (s.dnr ? 1u << 14 : 0u));
}

}  // namespace nvmux::spec
