// MsixTable: the MSI-X table (BAR4) and Pending Bit Array (BAR5) of the
// emulated function. The table lives in a memfd the client may mmap (the
// region info offers it, as BAR0's doorbell page), so a host can mask and
// unmask a vector with a store, as on a PCIe device; region reads and
// writes reach the same memory.
//
// Mask semantics (PCI, per vector: Vector Control bit 0): a masked vector
// sends no message; the function sets its pending bit instead, and sends
// the message once the vector is unmasked (Controller::Poll looks) if a CQ
// on it still holds entries the host has not consumed, as QEMU's NVMe
// device asserts only then (a hybrid host that took them while it spun is
// not woken for nothing). Every
// vector starts masked; registering an eventfd for it
// (VFIO_USER_DEVICE_SET_IRQS, ACTION_TRIGGER) unmasks it, as vfio-pci
// enables a vector its user gives a trigger: hosts that never touch the
// table (QEMU, SPDK) see every registered vector unmasked.
// The Function Mask bit of the capability is not modelled.
//
// Ordering with the host (its re-check after unmasking): the controller
// writes a completion, then a sequentially consistent fence, then reads
// the mask; the host stores the unmask, fences, then reads the CQ. One of
// the two sees the other's store.
//
// Errors: Create returns memfd_create/ftruncate/mmap's errno.
// Thread safety: Masked() from the controller thread while the client
// writes the mapping; Read/Write/SetMasked under the controller's mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "shm/base/result.h"
#include "shm/base/unique_fd.h"

namespace nvmux::emu {

class MsixTable {
 public:
  static constexpr uint32_t kTableBytes = 0x1000 * 8;  // BAR4: up to 2048 vectors of 16 bytes
  static constexpr uint32_t kPbaBytes = 0x1000;        // BAR5

  [[nodiscard]] static Result<std::unique_ptr<MsixTable>> Create(uint32_t vectors);
  ~MsixTable();
  MsixTable(const MsixTable&) = delete;
  MsixTable& operator=(const MsixTable&) = delete;

  int fd() const { return fd_.get(); }
  uint32_t vectors() const { return vectors_; }
  bool Masked(uint16_t vector) const;
  void SetMasked(uint16_t vector, bool masked);
  // Every vector masked, nothing pending (the function's reset state).
  void Reset();
  bool Pending(uint16_t vector) const;
  void SetPending(uint16_t vector, bool pending);
  // Region accesses (REGION_READ/WRITE of BAR4 and BAR5; PBA writes are ignored).
  void ReadTable(uint32_t offset, std::span<uint8_t> out) const;
  void WriteTable(uint32_t offset, std::span<const uint8_t> in);
  void ReadPba(uint32_t offset, std::span<uint8_t> out) const;

 private:
  MsixTable(UniqueFd fd, uint8_t* table, uint32_t vectors) : fd_(std::move(fd)), table_(table), vectors_(vectors) {}
  volatile uint32_t* Control(uint16_t vector) const;

  UniqueFd fd_;
  uint8_t* table_;
  uint32_t vectors_;
  uint8_t pba_[kPbaBytes] = {};
};

}  // namespace nvmux::emu
