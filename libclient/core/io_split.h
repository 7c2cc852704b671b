// Splitting an I/O into child commands: each at most the controller's
// maximum transfer size (MDTS), none across the namespace's optimal I/O
// boundary (NOIOB), as SPDK's driver does for striped devices. The queue
// pair splits in SubmitLbaIo (qpair_commands.cc); what it needs is here.
//
// Thread safety: pure functions; they never block.
#pragma once

#include <cstdint>

namespace nvmux {

// Blocks from `lba` up to the next multiple of `noiob` (the optimal I/O
// boundary; REQUIRES: noiob != 0). A mask when noiob is a power of two, as it
// usually is, else a division (a 64-bit one is tens of cycles, on every I/O).
inline uint64_t BlocksToBoundary(uint64_t lba, uint32_t noiob) {
  return noiob - ((noiob & (noiob - 1)) == 0 ? lba & (noiob - 1) : lba % noiob);
}

}  // namespace nvmux
