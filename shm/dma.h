// DMA memory: zeroed, aligned allocations with their IOVA, each recorded in
// the group's DMA table against the process slot that allocated it, so that
// what a dead process allocated is freed by whoever reaps it.
//
// DmaBackend is where the bytes come from: DPDK's hugepage heap in a group
// (eal.h: RteDmaBackend; IOVA = VA with --iova-mode=va), a plain heap in unit
// tests. DmaTableState lives in the group segment; DmaAllocator is the
// per-process view.
//
// Intent is recorded before every change (kAllocating / kFreeing) so that a
// holder of the group lock that dies mid-change is repaired conservatively:
// memory whose fate is unknown is leaked and logged, never freed twice.
//
// Thread safety: Allocate/Free take the group lock; DmaBuffer is move-only and
// frees on destruction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include "nvmux/dma_buffer.h"
#include "shm/base/result.h"
#include "shm/robust_mutex.h"

namespace nvmux::shm {

constexpr uint32_t kMaxDmaRecords = 8192;
// Owner of memory that belongs to the group rather than to one process (a
// controller's admin queue): reaping never frees it; its holder frees it, or
// it ends with the group. A primary that takes a group over adopts it.
constexpr uint32_t kGroupOwner = 0xFFFFFFFFu;
// Owner of a dead process's memory that a device may still write into (the
// rings of an I/O queue whose deletion the device did not confirm): reaping
// never frees it; the reaper releases it once the device confirmed the
// deletion or a controller reset deleted every queue.
constexpr uint32_t kQuarantineOwner = 0xFFFFFFFEu;
// Owner of the rest of dead process `slot`'s memory while one of its queues
// is quarantined: commands still on such a queue may write into their data
// buffers, wherever they are. Released as a whole once no queue id of
// `slot` is quarantined on any controller (primary/reap_queues.h).
constexpr uint32_t kQuarantineSlotBase = 0xFFFF0000u;
constexpr uint32_t QuarantineOwnerOf(uint32_t slot) { return kQuarantineSlotBase | (slot & 0xFFFFu); }

using DmaOwner = nvmux::DmaOwner;

enum class DmaRecordState : uint32_t { kFree = 0, kAllocating = 1, kLive = 2, kFreeing = 3 };

struct DmaRecord {
  uint32_t state;       // DmaRecordState
  uint32_t owner_slot;  // process-table slot of the allocator
  uint64_t iova;        // the backend's VirtToIova of the range; 0 until the backend returned memory
  uint64_t size;
  char tag[16];
};

struct DmaTableState {
  uint32_t capacity;
  uint32_t reserved;
  uint64_t leaked_bytes;  // unknown fate after a death mid-change
  DmaRecord records[kMaxDmaRecords];
};
static_assert(std::is_standard_layout_v<DmaTableState>);
static_assert(std::is_trivially_copyable_v<DmaTableState>);

class DmaBackend {
 public:
  virtual ~DmaBackend() = default;
  // Zeroed memory, `align` a power of two. Returns nullptr when out of memory.
  virtual void* Allocate(size_t size, size_t align, std::string_view tag) = 0;
  virtual void Free(void* addr) = 0;
  // The address the group's DMA table records `addr` by (DmaRecord::iova):
  // the device address with IOVA = VA. Must be linear over the backend's
  // memory (the pool allocates first fit in this space).
  virtual uint64_t VirtToIova(const void* addr) const = 0;
  // Address of memory this backend allocated, from its VirtToIova; nullptr if unknown.
  virtual void* IovaToVirt(uint64_t iova) const = 0;
  // The device address of `addr` (DmaBuffer::iova()): VirtToIova, unless
  // the backend's table addresses are not device addresses (a group pool
  // with IOVA = PA, dma_pool.h).
  virtual uint64_t DeviceAddress(const void* addr) const { return VirtToIova(addr); }
  // Free hugepage/heap bytes, for error messages.
  virtual size_t FreeBytes() const = 0;
  // What to do when Allocate returned nullptr, for error messages: which
  // limit was reached and the option or script that raises it.
  virtual std::string ExhaustedHint() const { return "reserve more hugepages with scripts/hugepages.sh"; }
};

// Frees every live allocation owned by `slot` (a dead process); returns how
// many. Idempotent. REQUIRES: the group lock is held (a reap hook).
uint64_t FreeDmaOwnedBy(DmaTableState& table, DmaBackend& backend, uint32_t slot);
// Resolves records left mid-change by a lock holder that died: memory whose
// fate is unknown is counted as leaked, never freed twice. REQUIRES: the
// group lock is held (the lock's repair callback, before any Guard exists).
void RepairDmaTable(DmaTableState& table);

// One allocation (public: nvmux/dma_buffer.h). Move-only; frees itself on
// destruction through its DmaAllocator.
using DmaBuffer = nvmux::DmaBuffer;

class DmaAllocator {
 public:
  static void InitState(DmaTableState& state, uint32_t capacity = kMaxDmaRecords);

  // All references must outlive the allocator; `self_slot` is this process's slot.
  DmaAllocator(DmaTableState& state, RobustLock& lock, DmaBackend& backend, uint32_t self_slot)
      : state_(state), lock_(lock), backend_(backend), self_slot_(self_slot) {}

  // Errors: EINVAL (size 0, alignment not a power of two; names the value),
  // ENOMEM (backend exhausted: names the size and free bytes), EAGAIN (the
  // record table is full), lock errors.
  // With DmaOwner::kGroup the memory survives this process's death (see
  // kGroupOwner); destroying the buffer still frees it.
  Result<DmaBuffer> Allocate(size_t size, size_t align, std::string_view tag, DmaOwner owner = DmaOwner::kProcess);
  // A handle on a live group-owned allocation at `iova` (the table's
  // address, VirtToIova; made by a primary that died): destroying it frees
  // the memory. Errors: ENOENT (no such
  // group-owned allocation), lock errors.
  Result<DmaBuffer> Adopt(uint64_t iova);

  // Frees every allocation owned by `slot` (a dead process). Idempotent.
  // REQUIRES: the group lock is held (runs from a reap hook).
  uint64_t FreeAllOwnedBy(uint32_t slot);
  // The live allocation of `slot` that contains `iova` becomes
  // kQuarantineOwner's (a device may still write into it): reaping `slot`
  // no longer frees it. Returns true if such an allocation was found (or is
  // quarantined already). Takes the group lock. Errors: lock errors.
  Result<bool> Quarantine(uint64_t iova, uint32_t slot);
  // Frees the quarantined allocation that contains `iova`; returns whether
  // one was found. Takes the group lock. Errors: lock errors.
  Result<bool> ReleaseQuarantined(uint64_t iova);
  // Every live allocation `slot` owns becomes QuarantineOwnerOf(slot)'s:
  // reaping `slot` no longer frees it. Returns how many moved. Takes the
  // group lock. Errors: lock errors.
  Result<uint64_t> QuarantineAllOf(uint32_t slot);
  // Frees every allocation QuarantineAllOf(slot) kept. Returns how many.
  // Takes the group lock. Errors: lock errors.
  Result<uint64_t> ReleaseQuarantinedOf(uint32_t slot);
  // Repairs records left mid-change by a lock holder that died.
  // REQUIRES: the group lock is held (runs from the lock's repair callback).
  void RepairAfterOwnerDeath();

  struct Usage {
    uint32_t allocations;
    uint64_t bytes;
  };
  // Live allocations of one slot, or of everyone (scans the table).
  Usage UsageOf(uint32_t slot) const;
  Usage TotalUsage() const;
  uint64_t LeakedBytes() const { return state_.leaked_bytes; }
  DmaBackend& backend() { return backend_; }

 private:
  friend nvmux::DmaBuffer;
  void Release(DmaBuffer& buffer);

  DmaTableState& state_;
  RobustLock& lock_;
  DmaBackend& backend_;
  uint32_t self_slot_;
};


}  // namespace nvmux::shm
