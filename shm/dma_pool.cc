#include "shm/dma_pool.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <utility>
#include <vector>

namespace nvmux::shm {
namespace {

// Ranges some record names (live, or being freed by a holder that may die).
std::vector<std::pair<uint64_t, uint64_t>> UsedRanges(const DmaTableState& table) {
  std::vector<std::pair<uint64_t, uint64_t>> used;
  for (uint32_t i = 0; i < table.capacity; ++i) {
    const DmaRecord& r = table.records[i];
    uint32_t state = std::atomic_ref<uint32_t>(const_cast<uint32_t&>(r.state)).load(std::memory_order_acquire);
    if (state != static_cast<uint32_t>(DmaRecordState::kFree) && r.iova != 0) used.emplace_back(r.iova, r.size);
  }
  std::sort(used.begin(), used.end());
  return used;
}

}  // namespace

void* PoolDmaBackend::Allocate(size_t size, size_t align, std::string_view) {
  uint64_t cursor = iova_;
  auto fits = [&](uint64_t start, uint64_t end) {
    uint64_t at = (start + align - 1) / align * align;
    return at + size <= end ? at : 0;
  };
  for (const auto& [iova, len] : UsedRanges(table_)) {
    if (iova >= cursor) {
      if (uint64_t at = fits(cursor, iova)) {
        void* p = base_ + (at - iova_);
        std::memset(p, 0, size);
        return p;
      }
    }
    cursor = std::max(cursor, iova + len);
  }
  if (uint64_t at = fits(cursor, iova_ + size_)) {
    void* p = base_ + (at - iova_);
    std::memset(p, 0, size);
    return p;
  }
  return nullptr;
}

size_t PoolDmaBackend::FreeBytes() const {
  uint64_t used = 0;
  for (const auto& range : UsedRanges(table_)) used += range.second;
  return used >= size_ ? 0 : size_ - used;
}

}  // namespace nvmux::shm
