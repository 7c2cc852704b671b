#include "prp.h"

#include <string>

#include "shm/base/format.h"

namespace nvmux {

uint32_t PrpListEntriesFor(uint32_t pages, uint32_t page_size) {
  if (pages <= 2) return 0;
  uint32_t data = pages - 1;  // the first page is PRP1
  uint32_t per_page = page_size / 8;
  // Each list page but the last gives its final slot to the chain pointer.
  uint32_t list_pages = data <= per_page ? 1 : 1 + (data - per_page + (per_page - 1) - 1) / (per_page - 1);
  return data + (list_pages - 1);
}

Result<Prps> BuildPrps(std::span<const IovaSegment> segments, PrpList list, uint32_t page_size) {
  if (page_size < 4096 || (page_size & (page_size - 1)) != 0)
    return Fail(EINVAL, "page size " + std::to_string(page_size) + " is not a power of two >= 4096");
  const uint64_t mask = page_size - 1;
  uint64_t total = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    const IovaSegment& s = segments[i];
    if (s.length == 0) return Fail(EINVAL, "segment " + std::to_string(i) + " is empty");
    if (i > 0 && (s.iova & mask) != 0)
      return Fail(EINVAL, "segment " + std::to_string(i) + " starts at " + Hex(s.iova) +
                              ", not on a page boundary: PRPs cannot describe it (use SGLs)");
    if (i + 1 < segments.size() && ((s.iova + s.length) & mask) != 0)
      return Fail(EINVAL, "segment " + std::to_string(i) + " ends at " + Hex(s.iova + s.length) +
                              ", not on a page boundary: PRPs cannot describe it (use SGLs)");
    total += s.length;
  }
  if (total == 0) return Fail(EINVAL, "empty transfer: nothing to describe with PRPs");
  if ((segments[0].iova & 3) != 0)
    return Fail(EINVAL, "buffer address " + Hex(segments[0].iova) + " is not dword (4-byte) aligned");

  Prps out;
  out.prp1 = segments[0].iova;
  // Page-start addresses after the first page, in order.
  uint64_t pages_after_first = 0;
  auto for_each_page = [&](auto&& fn) {
    bool first = true;
    for (const IovaSegment& s : segments) {
      uint64_t page = s.iova & ~mask;
      uint64_t end = s.iova + s.length;
      for (; page < end; page += page_size) {
        if (first) {
          first = false;
          continue;
        }
        fn(page);
      }
    }
  };
  for_each_page([&](uint64_t) { pages_after_first++; });
  if (pages_after_first == 0) return out;
  if (pages_after_first == 1) {
    for_each_page([&](uint64_t page) { out.prp2 = page; });
    return out;
  }
  uint32_t need = PrpListEntriesFor(static_cast<uint32_t>(pages_after_first + 1), page_size);
  if ((list.iova & mask) != 0)
    return Fail(EINVAL, "PRP list at " + Hex(list.iova) + " is not page-aligned");
  if (need > list.entries.size())
    return Fail(EINVAL, "transfer of " + std::to_string(total) + " bytes needs " + std::to_string(need) +
                            " PRP list entries; the request has room for " + std::to_string(list.entries.size()));
  const uint32_t per_page = page_size / 8;
  uint32_t slot = 0;
  uint64_t remaining = pages_after_first;
  for_each_page([&](uint64_t page) {
    // The last slot of a full list page chains to the next page when more follow.
    if (slot % per_page == per_page - 1 && remaining > 1) {
      list.entries[slot] = list.iova + static_cast<uint64_t>(slot + 1) * 8;
      ++slot;
    }
    list.entries[slot++] = page;
    --remaining;
  });
  out.prp2 = list.iova;
  out.list_entries = slot;
  return out;
}

}  // namespace nvmux
