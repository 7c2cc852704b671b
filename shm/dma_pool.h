// PoolDmaBackend: DMA memory for a group, carved from one memzone the
// primary reserves at start (DmaPoolZone) instead of DPDK's heap.
//
// Why: DPDK's heap and memory-hotplug locks are plain spinlocks and rwlocks
// in shared memory; a secondary killed with kill -9 inside rte_malloc or
// rte_free leaves them held and every later allocation in the group hangs.
// The pool has no lock of its own: its state is the group's DMA table
// (shm/dma.h), changed only under the group's robust lock with intent
// recorded, so a holder's death is repaired like any other. A range is in
// use while a record names it (iova != 0); allocation is first fit over the
// gaps between records (the table holds at most kMaxDmaRecords).
//
// The table records each range by its group address: its virtual address,
// the same in every process of the group (--base-virtaddr). With IOVA = VA
// that is the device address too. With IOVA = PA (uio_pci_generic) the
// pool's hugepages need not be physically contiguous, so the table cannot
// use a device address (the first-fit search needs one linear space);
// DeviceAddress then translates page by page (the `device_address`
// function, DPDK's rte_mem_virt2iova in a group).
//
// Thread safety: Allocate/Free are called by DmaAllocator under the group
// lock. Ownership: borrows the pool memory and the table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <utility>

#include "shm/dma.h"

namespace nvmux::shm {

inline constexpr char kDmaPoolZone[] = "nvmux.dma_pool";
inline constexpr size_t kDefaultDmaPoolMb = 128;

class PoolDmaBackend final : public DmaBackend {
 public:
  // `base` (CPU) maps `size` bytes, recorded in the table from address
  // `iova` on (a group passes `base` itself). `device_address` gives the
  // device address of a byte of the pool when that is not its table
  // address (IOVA = PA); empty: the table address is the device address.
  PoolDmaBackend(void* base, uint64_t iova, size_t size, const DmaTableState& table,
                 std::function<uint64_t(const void*)> device_address = {})
      : base_(static_cast<uint8_t*>(base)), iova_(iova), size_(size), table_(table),
        device_address_(std::move(device_address)) {}

  void* Allocate(size_t size, size_t align, std::string_view tag) override;
  void Free(void*) override {}  // the record going free releases the range
  uint64_t VirtToIova(const void* addr) const override {
    return iova_ + static_cast<uint64_t>(static_cast<const uint8_t*>(addr) - base_);
  }
  void* IovaToVirt(uint64_t iova) const override {
    return iova >= iova_ && iova < iova_ + size_ ? base_ + (iova - iova_) : nullptr;
  }
  uint64_t DeviceAddress(const void* addr) const override {
    return device_address_ ? device_address_(addr) : VirtToIova(addr);
  }
  size_t FreeBytes() const override;
  std::string ExhaustedHint() const override {
    return "the group's DMA pool of " + std::to_string(size_ >> 20) +
           " MiB (nvmuxd --dma-pool-mb) is used up: free DMA buffers, or restart nvmuxd with a larger --dma-pool-mb";
  }

 private:
  uint8_t* base_;
  uint64_t iova_;
  size_t size_;
  const DmaTableState& table_;
  std::function<uint64_t(const void*)> device_address_;
};

}  // namespace nvmux::shm
