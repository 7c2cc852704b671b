// DmaBuffer: memory a device can reach (DMA), as the API hands it out
// (Env::AllocDma). data() for the CPU, iova() for the device (the address
// of data()'s first byte; with IOVA = physical addresses, a controller bound
// to uio_pci_generic, the bytes are contiguous for the device only up to
// the end of their 2 MiB hugepage: the driver's I/O path splits buffers
// there, a caller building its own commands must too). Zeroed when
// allocated; move-only; freed on destruction (or, if this process dies
// first, by the group's reaper).
//
// DmaOwner says who the memory belongs to: the allocating process
// (kProcess, the default: freed when the process dies), or the group
// (kGroup: state the whole group needs, which outlives its allocator's
// death and which a primary that takes the group over adopts).
//
// Thread safety: a value owned by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nvmux {

namespace shm {
class DmaAllocator;
}  // namespace shm

enum class DmaOwner { kProcess, kGroup };

class DmaBuffer {
 public:
  DmaBuffer() = default;
  DmaBuffer(DmaBuffer&& other) noexcept { *this = static_cast<DmaBuffer&&>(other); }
  DmaBuffer& operator=(DmaBuffer&& other) noexcept;
  DmaBuffer(const DmaBuffer&) = delete;
  DmaBuffer& operator=(const DmaBuffer&) = delete;
  ~DmaBuffer();

  void* data() const { return addr_; }
  uint64_t iova() const { return iova_; }
  size_t size() const { return size_; }
  explicit operator bool() const { return addr_ != nullptr; }

 private:
  friend class shm::DmaAllocator;
  shm::DmaAllocator* owner_ = nullptr;
  void* addr_ = nullptr;
  uint64_t iova_ = 0;
  size_t size_ = 0;
  uint32_t record_ = 0;
  uint32_t owner_slot_ = 0;  // the record's owner: a process slot, or the group
};

}  // namespace nvmux
