// DmaPageMap: which virtual addresses are DMA memory, at 2 MiB granularity,
// and their device addresses. The submission path asks it, in a few
// nanoseconds, whether a caller's buffer may be handed to the device: a
// buffer outside DMA memory is refused with EINVAL before anything reaches
// the device.
//
// DPDK maps its hugepage memory in one window starting at the group's base
// virtual address (--base-virtaddr) with IOVA = VA; the map is a bitmap over
// that window (kWindowBytes). The environment fills it from memory events
// (shm/mem_events.h).
//
// Thread safety: Add/Remove and Contains may run concurrently (atomic
// words); a buffer being freed while a request uses it is the caller's bug.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace nvmux {

class DmaPageMap {
 public:
  static constexpr uint64_t kPageBytes = 2u << 20;
  static constexpr uint64_t kWindowBytes = 1ull << 40;  // 1 TiB of VA from the base

  explicit DmaPageMap(uintptr_t base = 0x200000000000ull);

  void Add(uintptr_t va, size_t length);
  void Remove(uintptr_t va, size_t length);

  // True when every byte of [va, va + length) is DMA memory.
  bool Contains(const void* va, size_t length) const {
    uintptr_t start = reinterpret_cast<uintptr_t>(va);
    if (length == 0 || start < base_ || start - base_ + length > kWindowBytes) return false;
    uint64_t first = (start - base_) / kPageBytes;
    uint64_t last = (start - base_ + length - 1) / kPageBytes;
    for (uint64_t p = first; p <= last; ++p)
      if (!(words_[p / 64].load(std::memory_order_relaxed) & (1ull << (p % 64)))) return false;
    return true;
  }
  // Device address of DMA memory (IOVA = VA in every process of a group).
  // REQUIRES: Contains(va, 1).
  static uint64_t Iova(const void* va) { return reinterpret_cast<uintptr_t>(va); }

  uintptr_t base() const { return base_; }

 private:
  static constexpr uint64_t kWords = kWindowBytes / kPageBytes / 64;
  uintptr_t base_;
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
};

}  // namespace nvmux
