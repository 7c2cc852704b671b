#include "tools/emu/pci_config.h"

#include <cstring>

#include "tools/emu/pci_ids.h"

namespace nvmux::emu {

namespace {
constexpr uint32_t kRegCommand = 0x04;
constexpr uint32_t kRegBar0 = 0x10;
constexpr uint32_t kRegInterruptLine = 0x3C;
constexpr uint32_t kBarMem64 = 0x4;  // memory BAR, 64-bit type
}  // namespace

void PciConfig::Put16(uint32_t offset, uint16_t v) { std::memcpy(&space_[offset], &v, 2); }
void PciConfig::Put32(uint32_t offset, uint32_t v) { std::memcpy(&space_[offset], &v, 4); }
uint32_t PciConfig::Get32(uint32_t offset) const {
  uint32_t v;
  std::memcpy(&v, &space_[offset], 4);
  return v;
}

PciConfig::PciConfig(std::array<uint32_t, 6> bar_sizes, uint32_t msix_vectors) : bar_sizes_(bar_sizes) {
  Put16(0x00, kPciVendorId);
  Put16(0x02, kPciDeviceId);
  Put16(0x06, 0x0010);  // status: capabilities list
  Put8(0x08, 0x02);     // revision
  Put8(0x09, 0x02);     // programming interface: NVM Express
  Put8(0x0A, 0x08);     // subclass: non-volatile memory controller
  Put8(0x0B, 0x01);     // class: mass storage
  Put8(0x0E, 0x00);     // header type 0
  Put32(kRegBar0, kBarMem64);
  Put16(0x2C, kPciSubsystemVendorId);
  Put16(0x2E, kPciSubsystemId);
  Put8(0x34, kMsixCapOffset);  // capabilities pointer
  Put8(0x3D, 0x01);            // interrupt pin INTA

  // MSI-X: table in BAR4 at 0, PBA in BAR5 at 0.
  Put8(kMsixCapOffset, 0x11);
  Put8(kMsixCapOffset + 1, kPcieCapOffset);
  Put16(kMsixCapOffset + 2, static_cast<uint16_t>(msix_vectors - 1));
  Put32(kMsixCapOffset + 4, 4);  // BIR 4, offset 0
  Put32(kMsixCapOffset + 8, 5);  // BIR 5, offset 0

  // PCI Express capability v2, endpoint, no further capabilities.
  Put8(kPcieCapOffset, 0x10);
  Put8(kPcieCapOffset + 1, 0);
  Put16(kPcieCapOffset + 2, 0x0002);          // version 2, device/port type 0 (endpoint)
  Put32(kPcieCapOffset + 4, 0x10008000 | 1);  // DevCap: FLR capable, role-based errors, 256 B payload
  Put32(kPcieCapOffset + 0x0C, 0x00400041);   // LinkCap: x4 link, 2.5 GT/s
  Put16(kPcieCapOffset + 0x12, 0x0041);       // LinkStatus: x4, 2.5 GT/s
}

void PciConfig::Read(uint32_t offset, std::span<uint8_t> out) const {
  std::memcpy(out.data(), &space_[offset], out.size());
}

bool PciConfig::Write(uint32_t offset, std::span<const uint8_t> data) {
  // Apply per dword with a byte-enable mask so any width and alignment works.
  bool flr = false;
  uint32_t pos = 0;
  while (pos < data.size()) {
    uint32_t at = offset + pos;
    uint32_t dword = at & ~3u;
    uint32_t value = 0;
    uint32_t mask = 0;
    for (uint32_t b = at & 3; b < 4 && pos < data.size(); ++b, ++pos) {
      value |= static_cast<uint32_t>(data[pos]) << (8 * b);
      mask |= 0xFFu << (8 * b);
    }
    flr |= WriteDword(dword, value, mask);
  }
  return flr;
}

bool PciConfig::WriteDword(uint32_t offset, uint32_t value, uint32_t byte_mask) {
  uint32_t old = Get32(offset);
  auto merge = [&](uint32_t writable) {
    uint32_t w = writable & byte_mask;
    Put32(offset, (old & ~w) | (value & w));
  };
  if (offset == kRegCommand) {
    merge(kCommandWritable);  // status half (RW1C) ignored
  } else if (offset >= kRegBar0 && offset < kRegBar0 + 24) {
    const uint32_t index = (offset - kRegBar0) / 4;
    if (index == 1) {
      merge(0xFFFFFFFFu);  // upper half of 64-bit BAR0: any address
    } else if (bar_sizes_[index] != 0) {
      const uint32_t type_bits = index == 0 ? kBarMem64 : 0;
      uint32_t addr_mask = ~(bar_sizes_[index] - 1);
      uint32_t w = addr_mask & byte_mask;
      Put32(offset, ((old & ~w) | (value & w) | type_bits) & (addr_mask | type_bits));
    }
  } else if (offset == kRegInterruptLine) {
    merge(0x000000FFu);
  } else if (offset == kMsixCapOffset) {
    merge(0xC0000000u);  // Message Control: MSI-X enable, function mask
  } else if (offset == kPcieCapOffset + 8u) {
    // Device Control (low half; Device Status RW1C ignored). Bit 15 starts an
    // FLR and reads back as 0.
    const bool flr = (byte_mask & 0xFF00u) != 0 && (value & (1u << 15)) != 0;
    merge(0x00007FFFu);
    // The function's MSI-X state resets with it: Enable and Function Mask
    // clear (its driver enables MSI-X again, as Linux restores it).
    if (flr) space_[kMsixCapOffset + 3] &= 0x3F;
    return flr;
  }
  return false;
}

uint16_t PciConfig::command() const {
  uint16_t v;
  std::memcpy(&v, &space_[kRegCommand], 2);
  return v;
}

bool PciConfig::msix_enabled() const { return (space_[kMsixCapOffset + 3] & 0x80) != 0; }

}  // namespace nvmux::emu
