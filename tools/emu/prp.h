// PRP walking: turns a command's PRP1/PRP2 into host buffer segments
// (NVMe base specification 1.4 section 4.3).
//
// Rules enforced: PRP1 is dword aligned and may carry an offset; a PRP2 used
// as the second page pointer is page aligned; a PRP2 used as a list pointer
// is qword aligned; every list entry is page aligned; the last entry of a
// list page chains to the next list page (page aligned) when more than one
// page remains. A violation is 0/13 PRP Offset Invalid (+D); an address not
// covered by a DMA mapping with the needed access is 0/04 Data Transfer Error.
//
// Thread safety: none; callers hold the controller lock (the pointers stay
// valid only while no DMA_UNMAP can run).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "nvmux/spec/status.h"
#include "tools/emu/dma_space.h"

namespace nvmux::emu {

// Host memory of one data transfer, as local pointers. Reused across
// commands (Clear keeps the capacity).
class HostBuffer {
 public:
  void Clear() {
    segments_.clear();
    size_ = 0;
  }
  void Add(uint8_t* ptr, uint64_t len);
  uint64_t size() const { return size_; }

  // Copies host bytes [offset, offset + out.size()) into out.
  // REQUIRES: offset + out.size() <= size().
  void CopyOut(uint64_t offset, std::span<uint8_t> out) const;
  // Copies data into host bytes [offset, offset + data.size()).
  void CopyIn(uint64_t offset, std::span<const uint8_t> data);
  // Zero-fills host bytes [offset, size()).
  void ZeroFrom(uint64_t offset);

 private:
  struct Segment {
    uint8_t* ptr;
    uint64_t len;
  };
  std::vector<Segment> segments_;
  uint64_t size_ = 0;
};

// Maps `len` bytes described by prp1/prp2 into out (cleared first).
// device_writes: the device will write the buffer (a read command).
// Appends the host memory of [iova, iova + len) to out, across DMA
// mappings that meet in IOVA space; false (out unchanged) if any byte is
// unmapped or lacks the access.
bool AddDmaRange(const DmaSpace& dma, uint64_t iova, uint64_t len, bool device_writes, HostBuffer& out);

spec::CompletionStatus MapPrps(const DmaSpace& dma, uint64_t prp1, uint64_t prp2, uint64_t len,
                               uint64_t page_size, bool device_writes, HostBuffer& out);

// Maps a contiguous buffer (metadata pointer) into out (cleared first).
spec::CompletionStatus MapContiguous(const DmaSpace& dma, uint64_t iova, uint64_t len, bool device_writes,
                                     HostBuffer& out);

}  // namespace nvmux::emu
