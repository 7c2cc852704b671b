#include "libclient/vfiouser/dma_regions.h"

#include <algorithm>

namespace nvmux::vfiouser {

std::vector<DmaRegion> CoalesceSegments(std::span<const shm::MemSegment> segments) {
  std::vector<DmaRegion> sorted;
  sorted.reserve(segments.size());
  for (const shm::MemSegment& s : segments) sorted.push_back({s.iova, s.length, s.fd, s.fd_offset});
  std::sort(sorted.begin(), sorted.end(), [](const DmaRegion& a, const DmaRegion& b) { return a.iova < b.iova; });
  std::vector<DmaRegion> out;
  for (const DmaRegion& r : sorted) {
    if (!out.empty()) {
      DmaRegion& last = out.back();
      if (r.fd >= 0 && r.fd == last.fd && r.iova == last.iova + last.length &&
          r.fd_offset == last.fd_offset + last.length) {
        last.length += r.length;
        continue;
      }
    }
    out.push_back(r);
  }
  return out;
}

std::vector<DmaRegionMap::Cut> DmaRegionMap::Remove(uint64_t iova, uint64_t length) {
  std::vector<Cut> cuts;
  const uint64_t end = iova + length;
  auto it = regions_.upper_bound(iova);
  if (it != regions_.begin()) --it;
  while (it != regions_.end() && it->first < end) {
    const DmaRegion r = it->second;
    if (r.iova + r.length <= iova) {
      ++it;
      continue;
    }
    Cut cut{r, {}};
    if (r.iova < iova) cut.keep.push_back({r.iova, iova - r.iova, r.fd, r.fd_offset});
    if (r.iova + r.length > end)
      cut.keep.push_back({end, r.iova + r.length - end, r.fd, r.fd_offset + (end - r.iova)});
    cuts.push_back(std::move(cut));
    it = regions_.erase(it);
  }
  return cuts;
}

}  // namespace nvmux::vfiouser
