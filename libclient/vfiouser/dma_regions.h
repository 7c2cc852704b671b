// DMA regions of a vfio-user device: the process's hugepage segments told to
// the server as few DMA_MAP regions as possible. Servers limit how many they
// hold (SPDK's target: 64, "hit max regions 64" in its log; a server may say
// its limit in VERSION's max_dma_maps), and a host with one region per 2 MiB
// page runs out after 128 MiB. Pages contiguous in IOVA
// and in one file's offsets (DPDK's --single-file-segments) become one region.
//
// A region is unmapped whole (DMA_UNMAP must name a mapped region exactly):
// freeing part of one means unmapping it and mapping the rest again.
//
// Thread safety: none (the transport calls it from its memory callback,
// which DPDK serialises).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "shm/mem_events.h"

namespace nvmux::vfiouser {

struct DmaRegion {
  uint64_t iova = 0;
  uint64_t length = 0;
  int fd = -1;
  uint64_t fd_offset = 0;
  bool operator==(const DmaRegion&) const = default;
};

// The segments (of one memory event) as regions: neighbours in IOVA order
// that continue each other in IOVA and in the same fd's offsets are merged.
std::vector<DmaRegion> CoalesceSegments(std::span<const shm::MemSegment> segments);

class DmaRegionMap {
 public:
  // Records a mapped region. REQUIRES: it overlaps no recorded one.
  void Insert(const DmaRegion& region) { regions_[region.iova] = region; }

  // A mapped region that [iova, iova + length) overlaps, and the parts of it
  // outside that range (to be mapped again once it is unmapped).
  struct Cut {
    DmaRegion region;
    std::vector<DmaRegion> keep;
  };
  // Forgets every recorded region the range overlaps and returns them, in
  // IOVA order, with what of each lies outside the range.
  std::vector<Cut> Remove(uint64_t iova, uint64_t length);

  size_t size() const { return regions_.size(); }

 private:
  std::map<uint64_t, DmaRegion> regions_;  // by IOVA
};

}  // namespace nvmux::vfiouser
