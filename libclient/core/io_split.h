// Splitting an I/O into child commands that each respect the controller's
// maximum transfer size (MDTS) and never cross the namespace's optimal I/O
// boundary (NOIOB), as SPDK's driver does for striped devices.
//
// No allocation: children are written into caller-provided storage.
//
// Thread safety: pure function.
#pragma once

#include <cstdint>
#include <span>

namespace nvmux {

struct IoChunk {
  uint64_t lba;
  uint32_t nlb;          // blocks in this child (1-based count)
  uint64_t byte_offset;  // offset of this child's data in the parent's buffer
};

// Returns how many children the I/O needs; fills the first min(n, out.size()).
// `max_transfer_bytes` 0 = unlimited; `noiob_blocks` 0 = no boundary.
// REQUIRES: nlb >= 1, block_bytes >= 1, max_transfer_bytes is 0 or >= block_bytes.
size_t SplitIo(uint64_t lba, uint32_t nlb, uint32_t block_bytes, uint32_t max_transfer_bytes, uint32_t noiob_blocks,
               std::span<IoChunk> out);

}  // namespace nvmux
