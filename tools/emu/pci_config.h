// PciConfig: the PCI configuration space of the emulated controller
// (4 KiB: type 0 header, MSI-X and PCI Express capabilities), plus the MSI-X
// table (BAR4) and pending-bit array (BAR5) storage.
//
// Writable: Command (bits accepted by kCommandWritable: memory space, bus
// master, INTx disable — the 0x404 hosts write), Status RW1C bits ignored,
// BAR sizing (write all-ones, read the size mask), Interrupt Line, MSI-X
// Message Control (enable, function mask), PCIe Device Control (with
// Initiate FLR). Everything else reads as built and ignores writes.
//
// Thread safety: none; the vfio-user server thread owns it.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace nvmux::emu {

class PciConfig {
 public:
  static constexpr uint32_t kSize = 4096;
  static constexpr uint16_t kCommandWritable = 0x0547;
  static constexpr uint8_t kMsixCapOffset = 0x40;
  static constexpr uint8_t kPcieCapOffset = 0x50;

  // bar_sizes[i]: size of BAR i (0 = absent); BAR0 is 64-bit (uses BAR1).
  PciConfig(std::array<uint32_t, 6> bar_sizes, uint32_t msix_vectors);

  // REQUIRES: offset + out.size() <= kSize.
  void Read(uint32_t offset, std::span<uint8_t> out) const;
  // Returns true if the write initiated a Function Level Reset (PCIe Device
  // Control bit 15); the caller resets the function. The bit reads as 0.
  [[nodiscard]] bool Write(uint32_t offset, std::span<const uint8_t> data);

  uint16_t command() const;
  bool msix_enabled() const;

 private:
  uint32_t Get32(uint32_t offset) const;
  void Put8(uint32_t offset, uint8_t v) { space_[offset] = v; }
  void Put16(uint32_t offset, uint16_t v);
  void Put32(uint32_t offset, uint32_t v);
  // Returns true on an FLR request.
  bool WriteDword(uint32_t offset, uint32_t value, uint32_t byte_mask);

  std::array<uint8_t, kSize> space_{};
  std::array<uint32_t, 6> bar_sizes_;
};

}  // namespace nvmux::emu
