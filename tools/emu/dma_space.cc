#include "tools/emu/dma_space.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <string>

namespace nvmux::emu {

Status DmaSpace::CheckNew(uint64_t fd_offset, uint64_t iova, uint64_t size) const {
  auto describe = [&] {
    return "DMA map iova " + std::to_string(iova) + " size " + std::to_string(size);
  };
  if (size == 0 || (iova % kPageSize) != 0 || (size % kPageSize) != 0 || (fd_offset % kPageSize) != 0) {
    return Fail(EINVAL, describe() + ": iova, size and offset must be non-zero multiples of 4096");
  }
  if (iova + size < iova || fd_offset + size < fd_offset) return Fail(EINVAL, describe() + ": overflows");
  if (maps_.size() >= max_maps_) return Fail(ENOSPC, describe() + ": too many DMA mappings");
  // Overlap: the first mapping at or after iova, and the one before it.
  auto next = maps_.lower_bound(iova);
  if (next != maps_.end() && next->first < iova + size) return Fail(EEXIST, describe() + ": overlaps a mapping");
  if (next != maps_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.size > iova) return Fail(EEXIST, describe() + ": overlaps a mapping");
  }
  return Ok();
}

Status DmaSpace::MapFdless(uint64_t iova, uint64_t size, bool readable, bool writable) {
  NVMUX_TRY(CheckNew(0, iova, size));
  maps_.emplace(iova, Mapping{size, nullptr, readable, writable});
  ++fdless_count_;
  return Ok();
}

bool DmaSpace::TouchesFdless(uint64_t iova, uint64_t len) const {
  if (fdless_count_ == 0 || len == 0) return false;
  const uint64_t end = iova + len < iova ? UINT64_MAX : iova + len;
  auto it = maps_.upper_bound(iova);
  if (it != maps_.begin()) --it;
  for (; it != maps_.end() && it->first < end; ++it) {
    if (it->second.local == nullptr && it->first + it->second.size > iova) return true;
  }
  return false;
}

Status DmaSpace::Map(int fd, uint64_t fd_offset, uint64_t iova, uint64_t size, bool readable, bool writable) {
  auto describe = [&] {
    return "DMA map iova " + std::to_string(iova) + " size " + std::to_string(size);
  };
  NVMUX_TRY(CheckNew(fd_offset, iova, size));
  // A mapping past the end of a file would SIGBUS on access: refuse it.
  struct stat st{};
  if (::fstat(fd, &st) != 0) return ErrnoError(describe() + ": fstat");
  if (S_ISREG(st.st_mode) && fd_offset + size > static_cast<uint64_t>(st.st_size)) {
    return Fail(EINVAL, describe() + ": offset " + std::to_string(fd_offset) + " + size is beyond the file (" +
                            std::to_string(st.st_size) + " bytes)");
  }
  int prot = (readable ? PROT_READ : 0) | (writable ? PROT_WRITE : 0);
  if (prot == 0) prot = PROT_READ;
  void* p = ::mmap(nullptr, size, prot, MAP_SHARED, fd, static_cast<off_t>(fd_offset));
  if (p == MAP_FAILED) return ErrnoError(describe() + ": mmap");
  maps_.emplace(iova, Mapping{size, static_cast<uint8_t*>(p), readable, writable});
  return Ok();
}

Status DmaSpace::Unmap(uint64_t iova, uint64_t size) {
  auto it = maps_.find(iova);
  if (it == maps_.end() || it->second.size != size) {
    return Fail(ENOENT, "DMA unmap iova " + std::to_string(iova) + " size " + std::to_string(size) +
                            ": no mapping with exactly that range");
  }
  if (it->second.local != nullptr) {
    ::munmap(it->second.local, it->second.size);
  } else {
    --fdless_count_;
  }
  maps_.erase(it);
  return Ok();
}

void DmaSpace::UnmapAll() {
  for (auto& [iova, m] : maps_) {
    if (m.local != nullptr) ::munmap(m.local, m.size);
  }
  maps_.clear();
  fdless_count_ = 0;
}

uint8_t* DmaSpace::Translate(uint64_t iova, uint64_t len, bool for_write) const {
  if (len == 0 || iova + len < iova) return nullptr;
  auto it = maps_.upper_bound(iova);
  if (it == maps_.begin()) return nullptr;
  --it;
  const Mapping& m = it->second;
  uint64_t off = iova - it->first;
  if (off >= m.size || m.size - off < len) return nullptr;
  if (for_write ? !m.writable : !m.readable) return nullptr;
  if (m.local == nullptr) return nullptr;  // fd-less: reachable only by message
  return m.local + off;
}

bool DmaSpace::Covered(uint64_t iova, uint64_t len, bool for_write, bool allow_fdless) const {
  if (len == 0 || iova + len < iova) return false;
  auto it = maps_.upper_bound(iova);
  if (it == maps_.begin()) return false;
  --it;
  for (uint64_t at = iova; at < iova + len; ++it) {
    if (it == maps_.end() || it->first > at) return false;  // a hole
    const Mapping& m = it->second;
    if (at - it->first >= m.size) return false;
    if (for_write ? !m.writable : !m.readable) return false;
    if (m.local == nullptr && !allow_fdless) return false;  // fd-less
    at = it->first + m.size;
  }
  return true;
}

}  // namespace nvmux::emu
