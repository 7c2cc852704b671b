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
  // Device address of DMA memory: VA itself (IOVA = VA, the usual mode: in
  // every process of a group), or, after EnablePhysical, the physical
  // address recorded for its 2 MiB page. REQUIRES: Contains(va, 1).
  static uint64_t Iova(const void* va) {
    uintptr_t a = reinterpret_cast<uintptr_t>(va);
    const int64_t* delta = delta_.load(std::memory_order_relaxed);
    if (delta == nullptr || a < phys_base_ || a - phys_base_ >= kWindowBytes) return a;
    return a + static_cast<uint64_t>(delta[(a - phys_base_) / kPageBytes]);
  }
  // How many of the `length` bytes from `va` on are contiguous in IOVA
  // (all of them with IOVA = VA; up to the next 2 MiB page whose physical
  // address does not follow otherwise). REQUIRES: Contains(va, length).
  static uint64_t ContiguousBytes(const void* va, uint64_t length);

  // IOVA = PA (a controller bound to uio_pci_generic; shm/eal.h): from now
  // on Iova() translates by the table SetIova fills, for the window at
  // `base`. Once per process, before memory is added. Not thread-safe
  // against Iova() (call it during Env::Init).
  static void EnablePhysical(uintptr_t base);
  static bool Physical() { return delta_.load(std::memory_order_relaxed) != nullptr; }
  // [va, va + length) (whole 2 MiB pages, one hugepage each) starts at
  // device address `iova`. REQUIRES: Physical().
  static void SetIova(uintptr_t va, uint64_t iova, size_t length);

  uintptr_t base() const { return base_; }

 private:
  static constexpr uint64_t kWords = kWindowBytes / kPageBytes / 64;
  uintptr_t base_;
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
  // IOVA - VA per 2 MiB page of the window (IOVA = PA only); process-wide,
  // never freed (Iova is static and may run until exit).
  static std::atomic<int64_t*> delta_;
  static uintptr_t phys_base_;
};

}  // namespace nvmux
