#include "libclient/core/dma_page_map.h"

#include <cstdlib>

namespace nvmux {

DmaPageMap::DmaPageMap(uintptr_t base) : base_(base), words_(new std::atomic<uint64_t>[kWords]) {
  for (uint64_t i = 0; i < kWords; ++i) words_[i].store(0, std::memory_order_relaxed);
}

namespace {

template <typename Fn>
void ForPages(uintptr_t base, uintptr_t va, size_t length, Fn fn) {
  if (length == 0 || va < base || va - base + length > DmaPageMap::kWindowBytes) return;
  // Only whole pages: DPDK reports page-aligned segments.
  for (uint64_t p = (va - base) / DmaPageMap::kPageBytes; p <= (va - base + length - 1) / DmaPageMap::kPageBytes; ++p)
    fn(p);
}

}  // namespace

std::atomic<int64_t*> DmaPageMap::delta_{nullptr};
uintptr_t DmaPageMap::phys_base_ = 0;

void DmaPageMap::EnablePhysical(uintptr_t base) {
  if (Physical()) return;
  phys_base_ = base;
  // 4 MiB of address space; calloc's pages are touched only where memory lives.
  delta_.store(static_cast<int64_t*>(std::calloc(kWindowBytes / kPageBytes, sizeof(int64_t))),
               std::memory_order_release);
}

void DmaPageMap::SetIova(uintptr_t va, uint64_t iova, size_t length) {
  int64_t* delta = delta_.load(std::memory_order_acquire);
  if (delta == nullptr) return;
  ForPages(phys_base_, va, length, [&](uint64_t p) {
    uintptr_t page_va = phys_base_ + p * kPageBytes;
    delta[p] = static_cast<int64_t>(iova + (page_va - va) - page_va);
  });
}

uint64_t DmaPageMap::ContiguousBytes(const void* va, uint64_t length) {
  if (!Physical()) return length;
  uintptr_t a = reinterpret_cast<uintptr_t>(va);
  uint64_t run = kPageBytes - (a % kPageBytes);  // to the end of this 2 MiB page
  while (run < length) {
    const uint8_t* next = static_cast<const uint8_t*>(va) + run;
    if (Iova(next) != Iova(va) + run) return run;
    run += kPageBytes;
  }
  return length;
}

void DmaPageMap::Add(uintptr_t va, size_t length) {
  ForPages(base_, va, length, [this](uint64_t p) { words_[p / 64].fetch_or(1ull << (p % 64), std::memory_order_release); });
}

void DmaPageMap::Remove(uintptr_t va, size_t length) {
  ForPages(base_, va, length,
           [this](uint64_t p) { words_[p / 64].fetch_and(~(1ull << (p % 64)), std::memory_order_release); });
}

}  // namespace nvmux
