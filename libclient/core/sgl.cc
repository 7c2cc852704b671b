#include "sgl.h"

#include <cstring>
#include <string>

#include "shm/base/format.h"

namespace nvmux {
namespace {

// A Segment / Last Segment descriptor's length is the segment's size in bytes,
// a 32-bit field: bounds the descriptors per chunk.
constexpr uint64_t kMaxChunkEntries = UINT32_MAX / sizeof(spec::SglDescriptor);

spec::SglDescriptor Descriptor(uint64_t address, uint64_t length, uint8_t type) {
  spec::SglDescriptor d;
  d.address = address;
  d.length = static_cast<uint32_t>(length);  // callers checked it fits
  d.type_subtype = spec::sgl::TypeByte(type);
  return d;
}

uint64_t EntriesFor(uint64_t segments, uint64_t chunk) {
  if (segments <= 1) return 0;
  if (segments <= chunk) return segments;
  // Every chunk but the last gives its final slot to the chain pointer; the
  // last chunk holds up to `chunk` Data Block descriptors.
  uint64_t chains = (segments - chunk + (chunk - 1) - 1) / (chunk - 1);
  return segments + chains;
}

}  // namespace

uint64_t SglListEntriesFor(uint64_t segments, uint32_t chunk_entries) {
  return EntriesFor(segments, chunk_entries);
}

uint64_t SglMaxSegments(uint64_t list_entries, uint32_t chunk_entries) {
  if (list_entries <= 1) return 1;
  // With k chain pointers the final chunk starts at k * chunk and the list
  // describes list_entries - k segments, so take the fewest chunks that reach
  // the end of the list: k = ceil(list_entries / chunk) - 1.
  uint64_t chains = (list_entries + chunk_entries - 1) / chunk_entries - 1;
  return list_entries - chains;
}

Result<Sgl> BuildSgl(std::span<const IovaSegment> segments, SglList list) {
  if (segments.empty()) return Fail(EINVAL, "empty transfer: no segments to describe with an SGL");
  for (size_t i = 0; i < segments.size(); ++i) {
    const IovaSegment& s = segments[i];
    if (s.length == 0) return Fail(EINVAL, "segment " + std::to_string(i) + " at " + Hex(s.iova) + " is empty");
    if (s.length > UINT32_MAX)
      return Fail(EINVAL, "segment " + std::to_string(i) + " is " + std::to_string(s.length) +
                              " bytes; an SGL Data Block descriptor holds at most 4294967295 (4 GiB - 1)");
  }
  Sgl out;
  if (segments.size() == 1) {
    // 4.3.2: a single Data Block descriptor in SGL1 describes the whole buffer.
    out.dptr = Descriptor(segments[0].iova, segments[0].length, spec::sgl::kDataBlock);
    return out;
  }

  const uint64_t chunk = list.chunk_entries;
  if (chunk < 2 || chunk > kMaxChunkEntries)
    return Fail(EINVAL, "SGL list chunk of " + std::to_string(chunk) + " descriptors; allowed 2 to " +
                            std::to_string(kMaxChunkEntries) + " (one data descriptor plus a chain pointer)");
  // 4.3: SGL segments are qword aligned.
  if ((list.iova & 7) != 0) return Fail(EINVAL, "SGL list at " + Hex(list.iova) + " is not qword (8-byte) aligned");
  const uint64_t n = segments.size();
  const uint64_t need = EntriesFor(n, chunk);
  if (need > list.entries.size())
    return Fail(EINVAL, std::to_string(n) + " segments need " + std::to_string(need) +
                            " SGL list entries in chunks of " + std::to_string(chunk) + "; the request has room for " +
                            std::to_string(list.entries.size()) + " entries, at most " +
                            std::to_string(SglMaxSegments(list.entries.size(), list.chunk_entries)) + " segments");

  constexpr uint64_t kBytes = sizeof(spec::SglDescriptor);
  // Points at the chunk starting at `start` holding `count` descriptors. A
  // chunk that ends with a chain pointer is a Segment; the final chunk, which
  // holds Data Block descriptors only, is the Last Segment.
  auto pointer_to = [&](uint64_t start, uint64_t remaining) {
    bool last = remaining <= chunk;
    uint64_t count = last ? remaining : chunk;
    return Descriptor(list.iova + start * kBytes, count * kBytes,
                      last ? spec::sgl::kLastSegment : spec::sgl::kSegment);
  };
  out.dptr = pointer_to(0, n);
  uint64_t start = 0;  // first slot of the current chunk
  size_t next = 0;     // next segment to describe
  while (true) {
    uint64_t remaining = n - next;
    if (remaining <= chunk) {
      for (uint64_t i = 0; i < remaining; ++i, ++next)
        list.entries[start + i] = Descriptor(segments[next].iova, segments[next].length, spec::sgl::kDataBlock);
      out.list_entries = static_cast<uint32_t>(start + remaining);
      return out;
    }
    for (uint64_t i = 0; i + 1 < chunk; ++i, ++next)
      list.entries[start + i] = Descriptor(segments[next].iova, segments[next].length, spec::sgl::kDataBlock);
    list.entries[start + chunk - 1] = pointer_to(start + chunk, n - next);
    start += chunk;
  }
}

void SetDataSgl(spec::Sqe& sqe, const Sgl& sgl) {
  sqe.set_psdt(spec::kPsdtSglMptrContiguous);
  // DPTR is the descriptor's 16 bytes as laid out in memory (little-endian host).
  uint64_t words[2];
  static_assert(sizeof(words) == sizeof(spec::SglDescriptor));
  std::memcpy(words, &sgl.dptr, sizeof(words));
  sqe.prp1 = words[0];
  sqe.prp2 = words[1];
}

Result<MetadataSgl> BuildMetadataSgl(std::span<const IovaSegment> segments, SglList list) {
  if (list.entries.empty())
    return Fail(EINVAL, "metadata SGL list has no entries; PSDT 10b needs one for the descriptor MPTR points to");
  // MPTR must be qword aligned when it holds an SGL segment address.
  if ((list.iova & 7) != 0)
    return Fail(EINVAL, "metadata SGL list at " + Hex(list.iova) + " is not qword (8-byte) aligned");
  SglList rest{list.entries.subspan(1), list.iova + sizeof(spec::SglDescriptor), list.chunk_entries};
  auto sgl = BuildSgl(segments, rest);
  if (!sgl) return sgl.error();
  list.entries[0] = sgl->dptr;
  return MetadataSgl{list.iova, sgl->list_entries + 1};
}

void SetDataAndMetadataSgl(spec::Sqe& sqe, const Sgl& data, const MetadataSgl& metadata) {
  SetDataSgl(sqe, data);
  sqe.set_psdt(spec::kPsdtSglMptrSgl);
  sqe.mptr = metadata.mptr;
}

}  // namespace nvmux
