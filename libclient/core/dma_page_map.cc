#include "libclient/core/dma_page_map.h"

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

void DmaPageMap::Add(uintptr_t va, size_t length) {
  ForPages(base_, va, length, [this](uint64_t p) { words_[p / 64].fetch_or(1ull << (p % 64), std::memory_order_release); });
}

void DmaPageMap::Remove(uintptr_t va, size_t length) {
  ForPages(base_, va, length,
           [this](uint64_t p) { words_[p / 64].fetch_and(~(1ull << (p % 64)), std::memory_order_release); });
}

}  // namespace nvmux
