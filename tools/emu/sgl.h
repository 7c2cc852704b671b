// SGL walking: turns an I/O command's SGL (PSDT 01b) into host buffer
// segments (NVMe base specification 1.4 section 4.4).
//
// Supported descriptors: Data Block, Segment, Last Segment (subtype 0,
// address). Rules and statuses, checked in walk order:
//  - a Segment / Last Segment with length 0 or not a multiple of 16 -> 0/0D
//    Invalid SGL Segment Descriptor (+D);
//  - a Segment / Last Segment descriptor anywhere but the last slot of a
//    segment, or inside a Last Segment, or more than kMaxDescriptors
//    descriptors -> 0/0E Invalid Number of SGL Descriptors (+D);
//  - any other type (bit bucket, keyed, transport) or a non-zero subtype ->
//    0/11 SGL Descriptor Type Invalid (+D);
//  - data blocks describing fewer or more bytes than the command moves ->
//    0/0F Data SGL Length Invalid (+D);
//  - memory not DMA-mapped with the needed access -> 0/04 Data Transfer Error.
//
// Thread safety: none; callers hold the controller lock.
#pragma once

#include <cstdint>

#include "nvmux/spec/command.h"
#include "nvmux/spec/status.h"
#include "tools/emu/dma_space.h"
#include "tools/emu/prp.h"

namespace nvmux::emu {

inline constexpr uint32_t kMaxSglDescriptors = 4096;

// Maps `len` bytes described by sgl1 (the SQE's DPTR) into out (cleared first).
spec::CompletionStatus MapSgl(const DmaSpace& dma, const spec::SglDescriptor& sgl1, uint64_t len,
                              bool device_writes, HostBuffer& out);

}  // namespace nvmux::emu
