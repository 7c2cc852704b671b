#include "shm/dma.h"

#include <atomic>
#include <cstring>

#include "shm/base/log.h"
#include "shm/base/test_point.h"

namespace nvmux::shm {
namespace {

void SetState(DmaRecord& r, DmaRecordState s) {
  std::atomic_ref<uint32_t>(r.state).store(static_cast<uint32_t>(s), std::memory_order_release);
}
DmaRecordState GetState(const DmaRecord& r) {
  return static_cast<DmaRecordState>(
      std::atomic_ref<uint32_t>(const_cast<uint32_t&>(r.state)).load(std::memory_order_acquire));
}

}  // namespace

void DmaAllocator::InitState(DmaTableState& state, uint32_t capacity) {
  std::memset(&state, 0, sizeof(state));
  state.capacity = capacity < kMaxDmaRecords ? capacity : kMaxDmaRecords;
}

Result<DmaBuffer> DmaAllocator::Allocate(size_t size, size_t align, std::string_view tag, DmaOwner owner) {
  if (size == 0) return Fail(EINVAL, "DMA allocation of 0 bytes: size must be at least 1");
  if (align == 0 || (align & (align - 1)) != 0)
    return Fail(EINVAL, "DMA alignment " + std::to_string(align) + " is not a power of two");
  auto guard = lock_.Lock();
  if (!guard) return guard.error();
  uint32_t index = state_.capacity;
  for (uint32_t i = 0; i < state_.capacity; ++i) {
    if (GetState(state_.records[i]) == DmaRecordState::kFree) {
      index = i;
      break;
    }
  }
  if (index == state_.capacity)
    return Fail(EAGAIN, "the group's DMA allocation table is full (" + std::to_string(state_.capacity) +
                            " allocations live)");
  DmaRecord& r = state_.records[index];
  r.owner_slot = owner == DmaOwner::kGroup ? kGroupOwner : self_slot_;
  r.iova = 0;
  r.size = size;
  size_t n = tag.size() < sizeof(r.tag) - 1 ? tag.size() : sizeof(r.tag) - 1;
  std::memcpy(r.tag, tag.data(), n);
  r.tag[n] = '\0';
  SetState(r, DmaRecordState::kAllocating);  // intent
  NVMUX_TEST_POINT("dma.allocate.intent");
  void* addr = backend_.Allocate(size, align, tag);
  if (addr == nullptr) {
    SetState(r, DmaRecordState::kFree);
    return Fail(ENOMEM, "cannot allocate " + std::to_string(size) + " bytes of DMA memory (about " +
                            std::to_string(backend_.FreeBytes() / (1024 * 1024)) +
                            " MiB free): " + backend_.ExhaustedHint());
  }
  r.iova = backend_.VirtToIova(addr);
  SetState(r, DmaRecordState::kLive);
  DmaBuffer buf;
  buf.owner_ = this;
  buf.addr_ = addr;
  buf.iova_ = backend_.DeviceAddress(addr);
  buf.size_ = size;
  buf.record_ = index;
  buf.owner_slot_ = r.owner_slot;
  return buf;
}

Result<DmaBuffer> DmaAllocator::Adopt(uint64_t iova) {
  auto guard = lock_.Lock();
  if (!guard) return guard.error();
  for (uint32_t i = 0; i < state_.capacity; ++i) {
    DmaRecord& r = state_.records[i];
    if (GetState(r) != DmaRecordState::kLive || r.owner_slot != kGroupOwner || r.iova != iova) continue;
    DmaBuffer buf;
    buf.owner_ = this;
    buf.addr_ = backend_.IovaToVirt(iova);
    buf.size_ = r.size;
    buf.record_ = i;
    buf.owner_slot_ = kGroupOwner;
    if (buf.addr_ == nullptr) break;
    buf.iova_ = backend_.DeviceAddress(buf.addr_);
    return buf;
  }
  return Fail(ENOENT, "no group-owned DMA allocation at IOVA " + std::to_string(iova));
}

namespace {

void FreeRecord(DmaBackend& backend, DmaRecord& r) {
  SetState(r, DmaRecordState::kFreeing);  // intent: a death from here on leaks, never double-frees
  NVMUX_TEST_POINT("dma.free.intent");
  void* addr = backend.IovaToVirt(r.iova);
  if (addr != nullptr) backend.Free(addr);
  r.iova = 0;
  SetState(r, DmaRecordState::kFree);
}

}  // namespace

void DmaAllocator::Release(DmaBuffer& buffer) {
  auto guard = lock_.Lock();
  if (!guard) {
    NVMUX_LOG(kError, "leaking %zu bytes of DMA memory: %s", buffer.size_, guard.error().ToString().c_str());
  } else {
    DmaRecord& r = state_.records[buffer.record_];
    // Only our own, still-live record: never one that a reaper freed and
    // another process has since reused.
    if (GetState(r) == DmaRecordState::kLive && r.owner_slot == buffer.owner_slot_ &&
        r.iova == backend_.VirtToIova(buffer.addr_))
      FreeRecord(backend_, r);
  }
  buffer.owner_ = nullptr;
  buffer.addr_ = nullptr;
}

uint64_t FreeDmaOwnedBy(DmaTableState& table, DmaBackend& backend, uint32_t slot) {
  uint64_t freed = 0;
  for (uint32_t i = 0; i < table.capacity; ++i) {
    DmaRecord& r = table.records[i];
    if (r.owner_slot == slot && GetState(r) == DmaRecordState::kLive) {
      FreeRecord(backend, r);
      ++freed;
    }
  }
  return freed;
}

uint64_t DmaAllocator::FreeAllOwnedBy(uint32_t slot) { return FreeDmaOwnedBy(state_, backend_, slot); }

namespace {

bool Contains(const DmaRecord& r, uint64_t iova) {
  return GetState(r) == DmaRecordState::kLive && r.iova != 0 && iova >= r.iova && iova - r.iova < r.size;
}

}  // namespace

Result<bool> DmaAllocator::Quarantine(uint64_t iova, uint32_t slot) {
  auto guard = lock_.Lock();
  if (!guard) return guard.error();
  for (uint32_t i = 0; i < state_.capacity; ++i) {
    DmaRecord& r = state_.records[i];
    if (!Contains(r, iova)) continue;
    if (r.owner_slot == kQuarantineOwner) return true;
    if (r.owner_slot != slot) continue;
    // One store: the record is the dead slot's or the quarantine's, never neither.
    std::atomic_ref<uint32_t>(r.owner_slot).store(kQuarantineOwner, std::memory_order_release);
    return true;
  }
  return false;
}

Result<bool> DmaAllocator::ReleaseQuarantined(uint64_t iova) {
  auto guard = lock_.Lock();
  if (!guard) return guard.error();
  for (uint32_t i = 0; i < state_.capacity; ++i) {
    DmaRecord& r = state_.records[i];
    if (r.owner_slot != kQuarantineOwner || !Contains(r, iova)) continue;
    FreeRecord(backend_, r);
    return true;
  }
  return false;
}

Result<uint64_t> DmaAllocator::QuarantineAllOf(uint32_t slot) {
  auto guard = lock_.Lock();
  if (!guard) return guard.error();
  uint64_t moved = 0;
  for (uint32_t i = 0; i < state_.capacity; ++i) {
    DmaRecord& r = state_.records[i];
    if (GetState(r) != DmaRecordState::kLive || r.owner_slot != slot) continue;
    std::atomic_ref<uint32_t>(r.owner_slot).store(QuarantineOwnerOf(slot), std::memory_order_release);
    ++moved;
  }
  return moved;
}

Result<uint64_t> DmaAllocator::ReleaseQuarantinedOf(uint32_t slot) {
  auto guard = lock_.Lock();
  if (!guard) return guard.error();
  uint64_t freed = 0;
  for (uint32_t i = 0; i < state_.capacity; ++i) {
    DmaRecord& r = state_.records[i];
    if (GetState(r) != DmaRecordState::kLive || r.owner_slot != QuarantineOwnerOf(slot)) continue;
    FreeRecord(backend_, r);
    ++freed;
  }
  return freed;
}

void RepairDmaTable(DmaTableState& table) {
  for (uint32_t i = 0; i < table.capacity; ++i) {
    DmaRecord& r = table.records[i];
    switch (GetState(r)) {
      case DmaRecordState::kFree:
      case DmaRecordState::kLive:
        break;
      case DmaRecordState::kAllocating:
        // The backend may have returned memory the dead holder never recorded.
        NVMUX_LOG(kWarning, "DMA record %u (%s): holder died mid-allocation; up to %llu bytes may leak", i, r.tag,
                  static_cast<unsigned long long>(r.size));
        table.leaked_bytes += r.size;
        SetState(r, DmaRecordState::kFree);
        break;
      case DmaRecordState::kFreeing:
        if (r.iova != 0) {
          NVMUX_LOG(kWarning, "DMA record %u (%s): holder died mid-free; leaking %llu bytes rather than risk a "
                    "double free", i, r.tag, static_cast<unsigned long long>(r.size));
          table.leaked_bytes += r.size;
        }
        SetState(r, DmaRecordState::kFree);
        break;
    }
  }
}

void DmaAllocator::RepairAfterOwnerDeath() { RepairDmaTable(state_); }

DmaAllocator::Usage DmaAllocator::UsageOf(uint32_t slot) const {
  Usage u{0, 0};
  for (uint32_t i = 0; i < state_.capacity; ++i) {
    const DmaRecord& r = state_.records[i];
    if (r.owner_slot == slot && GetState(r) == DmaRecordState::kLive) {
      u.allocations++;
      u.bytes += r.size;
    }
  }
  return u;
}

DmaAllocator::Usage DmaAllocator::TotalUsage() const {
  Usage u{0, 0};
  for (uint32_t i = 0; i < state_.capacity; ++i) {
    const DmaRecord& r = state_.records[i];
    if (GetState(r) == DmaRecordState::kLive) {
      u.allocations++;
      u.bytes += r.size;
    }
  }
  return u;
}

}  // namespace nvmux::shm

namespace nvmux {

DmaBuffer& DmaBuffer::operator=(DmaBuffer&& other) noexcept {
  if (this != &other) {
    if (owner_ != nullptr) owner_->Release(*this);
    owner_ = std::exchange(other.owner_, nullptr);
    addr_ = std::exchange(other.addr_, nullptr);
    iova_ = other.iova_;
    size_ = other.size_;
    record_ = other.record_;
    owner_slot_ = other.owner_slot_;
  }
  return *this;
}

DmaBuffer::~DmaBuffer() {
  if (owner_ != nullptr) owner_->Release(*this);
}

}  // namespace nvmux
