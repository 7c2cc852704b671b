// Feature identifiers and Get/Set Features fields (NVMe base specification
// 1.4 section 5.21.1).
//
// Thread safety: values only.
#pragma once

#include <cstdint>

namespace nvmux::spec {

namespace fid {
inline constexpr uint8_t kArbitration = 0x01;
inline constexpr uint8_t kPowerManagement = 0x02;
inline constexpr uint8_t kLbaRangeType = 0x03;
inline constexpr uint8_t kTemperatureThreshold = 0x04;
inline constexpr uint8_t kErrorRecovery = 0x05;
inline constexpr uint8_t kVolatileWriteCache = 0x06;
inline constexpr uint8_t kNumberOfQueues = 0x07;
inline constexpr uint8_t kInterruptCoalescing = 0x08;
inline constexpr uint8_t kInterruptVectorConfig = 0x09;
inline constexpr uint8_t kWriteAtomicityNormal = 0x0A;
inline constexpr uint8_t kAsyncEventConfig = 0x0B;
inline constexpr uint8_t kAutonomousPowerStateTransition = 0x0C;
inline constexpr uint8_t kHostMemoryBuffer = 0x0D;
inline constexpr uint8_t kTimestamp = 0x0E;
inline constexpr uint8_t kKeepAliveTimer = 0x0F;
inline constexpr uint8_t kHostBehaviorSupport = 0x16;
inline constexpr uint8_t kHostIdentifier = 0x81;
inline constexpr uint8_t kReservationNotificationMask = 0x82;
inline constexpr uint8_t kReservationPersistence = 0x83;
}  // namespace fid

// Get Features CDW10 bits 10:8 (SEL).
namespace sel {
inline constexpr uint8_t kCurrent = 0;
inline constexpr uint8_t kDefault = 1;
inline constexpr uint8_t kSaved = 2;
inline constexpr uint8_t kSupportedCapabilities = 3;
}  // namespace sel

// Capabilities returned for SEL=3 in DW0.
inline constexpr uint32_t kFeatureCapSaveable = 1u << 0;
inline constexpr uint32_t kFeatureCapNsSpecific = 1u << 1;
inline constexpr uint32_t kFeatureCapChangeable = 1u << 2;

// Interrupt Vector Configuration (09h) CDW11 / DW0: IV in bits 15:0,
// Coalescing Disable in bit 16.
inline constexpr uint32_t kIvConfigCd = 1u << 16;

// Host Behavior Support (16h): a 512-byte data structure; byte 0 is ACRE
// (Advanced Command Retry Enable, 0 or 1), the rest reserved in NVMe 1.4.
inline constexpr uint32_t kHostBehaviorSupportBytes = 512;

}  // namespace nvmux::spec
