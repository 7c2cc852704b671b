#include "tools/emu/prp.h"

#include <algorithm>
#include <cstring>

#include "tools/emu/fdless_staging.h"

namespace nvmux::emu {

using spec::CompletionStatus;
using spec::Dnr;

void HostBuffer::Add(uint8_t* ptr, uint64_t len) {
  if (!segments_.empty() && segments_.back().ptr + segments_.back().len == ptr) {
    segments_.back().len += len;
  } else {
    segments_.push_back({ptr, len});
  }
  size_ += len;
}

void HostBuffer::CopyOut(uint64_t offset, std::span<uint8_t> out) const {
  size_t done = 0;
  for (const Segment& s : segments_) {
    if (done == out.size()) break;
    if (offset >= s.len) {
      offset -= s.len;
      continue;
    }
    size_t n = static_cast<size_t>(std::min<uint64_t>(s.len - offset, out.size() - done));
    std::memcpy(out.data() + done, s.ptr + offset, n);
    done += n;
    offset = 0;
  }
}

void HostBuffer::CopyIn(uint64_t offset, std::span<const uint8_t> data) {
  size_t done = 0;
  for (const Segment& s : segments_) {
    if (done == data.size()) break;
    if (offset >= s.len) {
      offset -= s.len;
      continue;
    }
    size_t n = static_cast<size_t>(std::min<uint64_t>(s.len - offset, data.size() - done));
    std::memcpy(s.ptr + offset, data.data() + done, n);
    done += n;
    offset = 0;
  }
}

void HostBuffer::ZeroFrom(uint64_t offset) {
  for (const Segment& s : segments_) {
    if (offset >= s.len) {
      offset -= s.len;
      continue;
    }
    std::memset(s.ptr + offset, 0, static_cast<size_t>(s.len - offset));
    offset = 0;
  }
}

namespace {

constexpr CompletionStatus kPrpOffsetInvalid = Dnr(spec::sct::kGeneric, spec::sc::kPrpOffsetInvalid);
constexpr CompletionStatus kDataTransferError = {spec::sct::kGeneric, spec::sc::kDataTransferError, false};

}  // namespace

bool AddDmaRange(const DmaSpace& dma, uint64_t iova, uint64_t len, bool device_writes, HostBuffer& out) {
  if (dma.TranslateEach(iova, len, device_writes, [&](uint8_t* p, uint64_t n) { out.Add(p, n); })) return true;
  // Not all in shared memory: maybe (partly) in fd-less regions.
  FdlessStaging* staging = dma.staging();
  return staging != nullptr && staging->Add(dma, iova, len, device_writes, out);
}

CompletionStatus MapContiguous(const DmaSpace& dma, uint64_t iova, uint64_t len, bool device_writes,
                               HostBuffer& out) {
  out.Clear();
  if (len == 0) return spec::kSuccess;
  if (!AddDmaRange(dma, iova, len, device_writes, out)) return kDataTransferError;
  return spec::kSuccess;
}

CompletionStatus MapPrps(const DmaSpace& dma, uint64_t prp1, uint64_t prp2, uint64_t len, uint64_t page_size,
                         bool device_writes, HostBuffer& out) {
  out.Clear();
  if (len == 0) return spec::kSuccess;
  const uint64_t mask = page_size - 1;
  auto add = [&](uint64_t iova, uint64_t n) { return AddDmaRange(dma, iova, n, device_writes, out); };
  if ((prp1 & 0x3) != 0) return kPrpOffsetInvalid;
  uint64_t first = std::min(len, page_size - (prp1 & mask));
  if (!add(prp1, first)) return kDataTransferError;
  uint64_t remaining = len - first;
  if (remaining == 0) return spec::kSuccess;
  if (remaining <= page_size) {
    if ((prp2 & mask) != 0) return kPrpOffsetInvalid;
    if (!add(prp2, remaining)) return kDataTransferError;
    return spec::kSuccess;
  }
  // PRP2 points to a PRP list.
  uint64_t list = prp2;
  if ((list & 0x7) != 0) return kPrpOffsetInvalid;
  while (remaining > 0) {
    const uint64_t slots = (page_size - (list & mask)) / 8;
    const uint64_t pages_left = (remaining + page_size - 1) / page_size;
    // Entries to read from this list page: the data pages it can hold, plus
    // the chain pointer in its last slot if more pages remain than slots.
    const uint64_t used = std::min(slots, pages_left);
    const uint8_t* list_bytes = dma.Translate(list, used * 8, false);
    if (list_bytes == nullptr && dma.staging() != nullptr) list_bytes = dma.staging()->List(dma, list, used * 8);
    if (list_bytes == nullptr) return kDataTransferError;
    const auto* entries = reinterpret_cast<const uint64_t*>(list_bytes);
    for (uint64_t i = 0; i < used; ++i) {
      uint64_t entry;
      std::memcpy(&entry, entries + i, sizeof(entry));
      if (i == slots - 1 && remaining > page_size) {
        // Last slot of a full list page with more than one page to go: chain.
        if ((entry & mask) != 0) return kPrpOffsetInvalid;
        list = entry;
        break;
      }
      if ((entry & mask) != 0) return kPrpOffsetInvalid;
      uint64_t n = std::min(page_size, remaining);
      if (!add(entry, n)) return kDataTransferError;
      remaining -= n;
    }
  }
  return spec::kSuccess;
}

}  // namespace nvmux::emu
