// PRP building (NVMe base spec 4.1.1, "Physical Region Page Entry and List").
//
// A data buffer is described by IOVA segments. PRP rules: the first entry may
// start at any dword-aligned offset; every later page starts page-aligned;
// only the last segment may end short of a page boundary. Up to two pages fit
// in PRP1/PRP2; beyond that PRP2 points to a list, whose pages chain through
// their last entry when one page of entries is not enough.
//
// No allocation: the caller supplies the list memory (page-aligned, its IOVA
// known) from the request's preallocated tracker.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <span>

#include "shm/base/result.h"

namespace nvmux {

struct IovaSegment {
  uint64_t iova;
  uint64_t length;
};

struct PrpList {
  std::span<uint64_t> entries;  // CPU view of the list pages, page-aligned
  uint64_t iova;                // device address of entries[0]
};

struct Prps {
  uint64_t prp1 = 0;
  uint64_t prp2 = 0;
  uint32_t list_entries = 0;  // entries written, chain pointers included
};

// Errors (EINVAL, each naming the value): empty transfer; first address not
// dword aligned; a later segment not starting, or an earlier one not ending, on
// a page boundary (the buffer cannot be described by PRPs: use SGLs); list
// memory too small or not page-aligned; page size not a power of two >= 4096.
Result<Prps> BuildPrps(std::span<const IovaSegment> segments, PrpList list, uint32_t page_size = 4096);

// Number of list entries BuildPrps needs for `pages` data pages (0 when they
// fit in PRP1/PRP2), chain pointers included: what a tracker must hold for MDTS.
uint32_t PrpListEntriesFor(uint32_t pages, uint32_t page_size = 4096);

}  // namespace nvmux
