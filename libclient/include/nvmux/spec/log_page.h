// Log pages (NVMe base specification 1.4 section 5.14.1) and asynchronous
// event completion fields (section 5.2).
//
// Thread safety: values only.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nvmux::spec {

// Log page identifiers.
namespace lid {
inline constexpr uint8_t kErrorInformation = 0x01;
inline constexpr uint8_t kSmartHealth = 0x02;
inline constexpr uint8_t kFirmwareSlot = 0x03;
inline constexpr uint8_t kChangedNamespaceList = 0x04;
inline constexpr uint8_t kCommandsSupportedAndEffects = 0x05;
}  // namespace lid

struct ErrorInformationEntry {
  uint64_t error_count = 0;
  uint16_t sqid = 0;
  uint16_t cid = 0;
  uint16_t status = 0;  // bit 0 phase tag, bits 15:1 status field
  uint16_t parm_error_location = 0;
  uint64_t lba = 0;
  uint32_t nsid = 0;
  uint8_t vs = 0;
  uint8_t trtype = 0;
  uint8_t rsvd30[2] = {};
  uint64_t csi = 0;
  uint16_t trtype_spec = 0;
  uint8_t rsvd42[22] = {};
};
static_assert(sizeof(ErrorInformationEntry) == 64);

// SMART / Health Information. Composite temperature is at byte 1, so the
// 16-bit fields that are not naturally aligned are byte arrays (little
// endian); 128-bit counters are byte arrays too.
struct SmartHealthLog {
  uint8_t critical_warning;
  uint8_t composite_temperature[2];  // kelvin
  uint8_t avail_spare;
  uint8_t avail_spare_threshold;
  uint8_t percentage_used;
  uint8_t endurance_group_critical_warning;
  uint8_t rsvd7[25];
  uint8_t data_units_read[16];  // thousands of 512-byte units
  uint8_t data_units_written[16];
  uint8_t host_read_commands[16];
  uint8_t host_write_commands[16];
  uint8_t controller_busy_time[16];
  uint8_t power_cycles[16];
  uint8_t power_on_hours[16];
  uint8_t unsafe_shutdowns[16];
  uint8_t media_errors[16];
  uint8_t num_err_log_entries[16];
  uint32_t warning_temp_time;
  uint32_t critical_comp_time;
  uint16_t temp_sensor[8];
  uint32_t thm_temp1_trans_count;
  uint32_t thm_temp2_trans_count;
  uint32_t thm_temp1_total_time;
  uint32_t thm_temp2_total_time;
  uint8_t rsvd232[280];
};
static_assert(sizeof(SmartHealthLog) == 512);
static_assert(offsetof(SmartHealthLog, data_units_read) == 32);
static_assert(offsetof(SmartHealthLog, warning_temp_time) == 192);

struct FirmwareSlotLog {
  uint8_t afi;  // bits 2:0 active slot
  uint8_t rsvd1[7];
  char frs[7][8];
  uint8_t rsvd64[448];
};
static_assert(sizeof(FirmwareSlotLog) == 512);

// Changed Namespace List: up to 1024 NSIDs; first entry FFFFFFFFh if more changed.
struct ChangedNamespaceList {
  uint32_t nsid[1024];
};
static_assert(sizeof(ChangedNamespaceList) == 4096);

// Commands Supported and Effects: one dword per opcode.
struct CommandsSupportedAndEffectsLog {
  uint32_t acs[256];
  uint32_t iocs[256];
  uint8_t rsvd2048[2048];
};
static_assert(sizeof(CommandsSupportedAndEffectsLog) == 4096);
inline constexpr uint32_t kEffectCsupp = 1u << 0;  // command supported
inline constexpr uint32_t kEffectLbcc = 1u << 1;   // logical block content change
inline constexpr uint32_t kEffectNcc = 1u << 2;    // namespace capability change
inline constexpr uint32_t kEffectNic = 1u << 3;    // namespace inventory change
inline constexpr uint32_t kEffectCcc = 1u << 4;    // controller capability change

// Asynchronous event types and information (AER completion DW0: type bits
// 2:0, info bits 15:8, log page bits 23:16).
namespace aer {
inline constexpr uint8_t kTypeError = 0;
inline constexpr uint8_t kTypeSmart = 1;
inline constexpr uint8_t kTypeNotice = 2;
inline constexpr uint8_t kInfoErrorInvalidDoorbell = 0;
inline constexpr uint8_t kInfoErrorInvalidDoorbellValue = 1;
inline constexpr uint8_t kInfoNoticeNsAttrChanged = 0;

constexpr uint32_t Dw0(uint8_t type, uint8_t info, uint8_t log_page) {
  return (type & 0x7u) | (static_cast<uint32_t>(info) << 8) | (static_cast<uint32_t>(log_page) << 16);
}
}  // namespace aer

}  // namespace nvmux::spec
