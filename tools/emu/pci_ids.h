// PCI identity of the emulated controller (shared by config space and
// Identify Controller).
#pragma once

#include <cstdint>

namespace nvmux::emu {

// 0x1b36 is the Red Hat/QEMU vendor id and 0x0010 QEMU's NVMe device id:
// drivers (Linux, SPDK) already know this pair as a generic emulated NVMe
// controller. See README "decide" choices.
inline constexpr uint16_t kPciVendorId = 0x1b36;
inline constexpr uint16_t kPciDeviceId = 0x0010;
inline constexpr uint16_t kPciSubsystemVendorId = 0x1b36;
inline constexpr uint16_t kPciSubsystemId = 0x0000;

}  // namespace nvmux::emu
