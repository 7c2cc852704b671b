#include "io_split.h"

#include <algorithm>
#include <string>

namespace nvmux {
namespace {

// Cuts [lba, lba + nlb) into children of at most max_blocks blocks that never
// cross a multiple of noiob_blocks. `stride` is the data buffer bytes per block
// and `separate_ms` the separate metadata bytes per block (0 when none).
size_t Split(uint64_t lba, uint32_t nlb, uint64_t stride, uint64_t separate_ms, uint64_t max_blocks,
             uint32_t noiob_blocks, std::span<IoChunk> out) {
  size_t n = 0;
  uint64_t done = 0;
  while (done < nlb) {
    uint64_t here = lba + done;
    uint64_t len = std::min<uint64_t>(nlb - done, max_blocks);
    if (noiob_blocks != 0) len = std::min<uint64_t>(len, BlocksToBoundary(here, noiob_blocks));
    if (n < out.size())
      out[n] = IoChunk{here, static_cast<uint32_t>(len), done * stride, len * stride, done * separate_ms,
                       len * separate_ms};
    ++n;
    done += len;
  }
  return n;
}

}  // namespace

size_t SplitIo(uint64_t lba, uint32_t nlb, uint32_t block_bytes, uint32_t max_transfer_bytes, uint32_t noiob_blocks,
               std::span<IoChunk> out) {
  const uint64_t max_blocks = max_transfer_bytes == 0 ? UINT32_MAX : max_transfer_bytes / block_bytes;
  return Split(lba, nlb, block_bytes, 0, max_blocks, noiob_blocks, out);
}

Result<size_t> SplitIoWithMetadata(uint64_t lba, uint32_t nlb, const BlockLayout& layout, const SplitLimits& limits,
                                   std::span<IoChunk> out) {
  if (nlb == 0) return Fail(EINVAL, "I/O of 0 blocks at LBA " + std::to_string(lba) + ": nothing to split");
  if (layout.block_bytes == 0) return Fail(EINVAL, "block size 0: the LBA format must have a data size");
  // MDTS counts metadata only when it is interleaved with the data (extended
  // LBA); a separate metadata buffer is outside the data transfer.
  const uint64_t stride = uint64_t{layout.block_bytes} + (layout.extended ? layout.metadata_bytes : 0);
  const uint64_t separate_ms = layout.extended ? 0 : layout.metadata_bytes;
  uint64_t max_blocks = kMaxBlocksPerCommand;
  if (limits.max_transfer_bytes != 0) {
    if (limits.max_transfer_bytes < stride)
      return Fail(EINVAL, "maximum transfer of " + std::to_string(limits.max_transfer_bytes) +
                              " bytes is smaller than one block of " + std::to_string(stride) +
                              " bytes (data plus interleaved metadata)");
    max_blocks = std::min<uint64_t>(max_blocks, limits.max_transfer_bytes / stride);
  }
  return Split(lba, nlb, stride, separate_ms, max_blocks, limits.noiob_blocks, out);
}

size_t SliceSegments(std::span<const IovaSegment> in, uint64_t offset, uint64_t length, std::span<IovaSegment> out) {
  size_t n = 0;
  for (const IovaSegment& s : in) {
    if (length == 0) break;
    if (offset >= s.length) {  // the range starts past this segment (or it is empty)
      offset -= s.length;
      continue;
    }
    uint64_t take = std::min(s.length - offset, length);
    if (n < out.size()) out[n] = IovaSegment{s.iova + offset, take};
    ++n;
    length -= take;
    offset = 0;
  }
  return n;
}

}  // namespace nvmux
