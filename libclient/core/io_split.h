// Splitting an I/O into child commands that each respect the controller's
// maximum transfer size (MDTS) and never cross the namespace's optimal I/O
// boundary (NOIOB), as SPDK's driver does for striped devices; and cutting the
// parent's scatter list into the children's.
//
// Metadata ("Metadata Region", NVMe base spec 1.4 section 8.2; MDTS in
// Identify Controller):
//  - separate buffer (FLBAS bit 4 = 0; MPTR a contiguous buffer, or an SGL
//    with PSDT 10b): each child also gets its metadata's offset and length in
//    the parent's metadata buffer; MDTS does not count these bytes.
//  - extended LBA (FLBAS bit 4 = 1): metadata is interleaved after each
//    block's data, so the data buffer stride is block_bytes + ms per block and
//    MDTS counts the interleaved bytes.
//
// No allocation: children and segments are written into caller-provided storage.
//
// Thread safety: pure functions; they never block.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "prp.h"  // IovaSegment
#include "shm/base/result.h"

namespace nvmux {

// Blocks from `lba` up to the next multiple of `noiob` (the optimal I/O
// boundary; REQUIRES: noiob != 0). A mask when noiob is a power of two, as it
// usually is, else a division (a 64-bit one is tens of cycles, on every I/O).
inline uint64_t BlocksToBoundary(uint64_t lba, uint32_t noiob) {
  return noiob - ((noiob & (noiob - 1)) == 0 ? lba & (noiob - 1) : lba % noiob);
}

struct IoChunk {
  uint64_t lba;
  uint32_t nlb;          // blocks in this child (1-based count)
  uint64_t byte_offset;  // offset of this child's data in the parent's buffer
  // Bytes of this child's data buffer: nlb * block_bytes, or nlb * (block_bytes
  // + ms) for an extended LBA format.
  uint64_t data_bytes = 0;
  // Offset and length of this child's metadata in the parent's separate
  // metadata buffer; both 0 without separate metadata (none, or extended LBA).
  uint64_t metadata_offset = 0;
  uint64_t metadata_bytes = 0;
};

// Returns how many children the I/O needs; fills the first min(n, out.size()).
// `max_transfer_bytes` 0 = unlimited; `noiob_blocks` 0 = no boundary. No
// metadata: children carry metadata_offset = metadata_bytes = 0.
// REQUIRES: nlb >= 1, block_bytes >= 1, max_transfer_bytes is 0 or >= block_bytes.
size_t SplitIo(uint64_t lba, uint32_t nlb, uint32_t block_bytes, uint32_t max_transfer_bytes, uint32_t noiob_blocks,
               std::span<IoChunk> out);

// A namespace's active LBA format, as far as buffer layout goes.
struct BlockLayout {
  uint32_t block_bytes = 512;   // LBA data size, 2^LBADS
  uint32_t metadata_bytes = 0;  // ms: metadata bytes per block, 0 for none
  bool extended = false;        // FLBAS bit 4: metadata interleaved with the data
};

struct SplitLimits {
  uint64_t max_transfer_bytes = 0;  // from MDTS; 0 = unlimited
  uint32_t noiob_blocks = 0;        // NOIOB; 0 = no boundary
};

// The NLB field is 16 bits, 0's based: no command moves more blocks.
inline constexpr uint32_t kMaxBlocksPerCommand = 65536;

// Like SplitIo, for a namespace with metadata; a child never exceeds
// kMaxBlocksPerCommand blocks. Returns how many children the I/O needs and
// fills the first min(n, out.size()).
// Errors (EINVAL, naming the value): nlb 0; block_bytes 0; a
// max_transfer_bytes smaller than one block (block_bytes, plus ms when
// extended).
[[nodiscard]] Result<size_t> SplitIoWithMetadata(uint64_t lba, uint32_t nlb, const BlockLayout& layout,
                                                 const SplitLimits& limits, std::span<IoChunk> out);

// Cuts the byte range [offset, offset + length) of the buffer described by
// `in` into segments: returns how many it needs and fills the first
// min(n, out.size()). Zero-length input segments are skipped; length 0 gives
// 0. Bytes past the end of `in` are not described, so a range reaching past
// it yields only the segments for the bytes that exist (callers check
// offset + length against the buffer's size).
size_t SliceSegments(std::span<const IovaSegment> in, uint64_t offset, uint64_t length, std::span<IovaSegment> out);

}  // namespace nvmux
