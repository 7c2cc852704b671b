// DmaSpace: the client memory the device may access, by IOVA.
//
// Each DMA_MAP becomes a local MAP_SHARED mapping of the client's fd;
// Translate() turns an IOVA range into a local pointer only if the whole
// range lies in one mapping with the needed access; TranslateEach() also
// follows a range across mappings that meet in IOVA space, as an IOMMU
// would (data buffers may span a host's separate registrations). Mappings
// never overlap.
//
// Fd-less regions (MapFdless): the vfio-user spec lets a client register
// memory it cannot share (QEMU: the BIOS ROM) without an fd; a server may
// then reach it only with VFIO_USER_DMA_READ/WRITE messages to the client.
// Such a region is recorded (it counts against the mapping limit, takes
// part in overlap checks and must be unmapped exactly like any other), but
// Translate/TranslateEach never resolve into it: a queue placed there is a
// fatal controller error (CSTS.CFS), as for unmapped memory. Command data
// there is reached through staging() (fdless_staging.h), which the PRP and
// SGL walks consult only after a translation failed.
//
// Errors: Map returns EINVAL (zero size, unaligned, overflow, range beyond
// the file, unknown flags), EEXIST (overlaps a mapping), ENOSPC (too many
// mappings) or the mmap errno; Unmap returns ENOENT unless (iova, size)
// names exactly one mapping.
// Thread safety: none; the controller serialises map changes with accesses.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>

#include "shm/base/result.h"

namespace nvmux::emu {

class FdlessStaging;

class DmaSpace {
 public:
  static constexpr uint64_t kPageSize = 4096;

  explicit DmaSpace(uint32_t max_maps = 1024) : max_maps_(max_maps) {}
  ~DmaSpace() { UnmapAll(); }
  DmaSpace(const DmaSpace&) = delete;
  DmaSpace& operator=(const DmaSpace&) = delete;

  // Maps [fd_offset, fd_offset + size) of fd at iova. The fd is not kept.
  [[nodiscard]] Status Map(int fd, uint64_t fd_offset, uint64_t iova, uint64_t size, bool readable,
                           bool writable);
  // Records [iova, iova + size) as an fd-less region (same checks as Map).
  [[nodiscard]] Status MapFdless(uint64_t iova, uint64_t size, bool readable, bool writable);
  // Whether any byte of [iova, iova + len) lies in an fd-less region.
  bool TouchesFdless(uint64_t iova, uint64_t len) const;
  [[nodiscard]] Status Unmap(uint64_t iova, uint64_t size);
  void UnmapAll();

  // Local pointer for [iova, iova + len), or nullptr. len 0 is nullptr.
  uint8_t* Translate(uint64_t iova, uint64_t len, bool for_write) const;
  // Calls add(pointer, length) for each piece of [iova, iova + len), in
  // order, one per mapping it crosses, if every byte is mapped with the
  // needed access; otherwise calls nothing and returns false. len 0: false.
  template <class Add>
  bool TranslateEach(uint64_t iova, uint64_t len, bool for_write, Add&& add) const {
    if (uint8_t* p = Translate(iova, len, for_write)) {  // the usual case: one mapping, one lookup
      add(p, len);
      return true;
    }
    if (!Covered(iova, len, for_write)) return false;
    while (len > 0) {
      auto it = std::prev(maps_.upper_bound(iova));
      const uint64_t off = iova - it->first, n = std::min(len, it->second.size - off);
      add(it->second.local + off, n);
      iova += n;
      len -= n;
    }
    return true;
  }

  // Like TranslateEach, but fd-less regions count as mapped: calls
  // add(iova, local, n) per piece, local == nullptr for a piece of an
  // fd-less region. false (nothing called) unless every byte is mapped
  // with the access. len 0: false.
  template <class Add>
  bool ForEachPiece(uint64_t iova, uint64_t len, bool for_write, Add&& add) const {
    if (!Covered(iova, len, for_write, /*allow_fdless=*/true)) return false;
    while (len > 0) {
      auto it = std::prev(maps_.upper_bound(iova));
      const uint64_t off = iova - it->first, n = std::min(len, it->second.size - off);
      add(iova, it->second.local == nullptr ? nullptr : it->second.local + off, n);
      iova += n;
      len -= n;
    }
    return true;
  }

  // Where command data in fd-less regions is staged (null: nowhere, such
  // data is a Data Transfer Error). Set by the owner; not owned.
  FdlessStaging* staging() const { return staging_; }
  void set_staging(FdlessStaging* staging) { staging_ = staging; }

  size_t count() const { return maps_.size(); }
  size_t fdless_count() const { return fdless_count_; }

 private:
  struct Mapping {
    uint64_t size;
    uint8_t* local;  // nullptr: an fd-less region
    bool readable;
    bool writable;
  };
  // Whether every byte of [iova, iova + len) is mapped with the access.
  // allow_fdless: fd-less regions count too.
  bool Covered(uint64_t iova, uint64_t len, bool for_write, bool allow_fdless = false) const;
  // The Map/MapFdless argument and overlap checks.
  [[nodiscard]] Status CheckNew(uint64_t fd_offset, uint64_t iova, uint64_t size) const;
  size_t fdless_count_ = 0;
  uint32_t max_maps_;
  FdlessStaging* staging_ = nullptr;
  std::map<uint64_t, Mapping> maps_;  // iova -> mapping
};

}  // namespace nvmux::emu
