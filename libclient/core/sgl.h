// SGL building (NVMe base spec 4.1.2 / 4.3, "Scatter Gather List").
//
// A data buffer is described by IOVA segments, each becoming one SGL Data
// Block descriptor. Unlike PRPs, SGLs put no alignment rule on where segments
// start or end, so any scatter list can be described (a controller reporting
// SGLS bits 1:0 = 10b still wants dword alignment and granularity; that is the
// caller's check, as is SGLS bit 0 saying SGLs are supported at all).
//
// Layout produced:
//  - one segment: SGL1 (the command's DPTR) is that Data Block descriptor and
//    no list memory is used;
//  - several segments that fit in one chunk: SGL1 is a Last Segment
//    descriptor pointing to the chunk of Data Block descriptors;
//  - more: the list memory is cut into chunks of `chunk_entries` descriptors
//    (chunk k starts at entries[k * chunk_entries]). Every chunk but the last
//    holds chunk_entries - 1 Data Block descriptors and ends with a pointer to
//    the next chunk whose length is that chunk's size in bytes: a Last Segment
//    descriptor when the next chunk is the final one, a Segment descriptor
//    otherwise (spec: only the last descriptor of a segment may be a Segment
//    or Last Segment descriptor, and the last segment holds none). SGL1 is
//    then a Segment descriptor pointing to chunk 0.
//
// No allocation: the caller supplies the list memory (qword-aligned, its IOVA
// known) from the request's preallocated tracker, and it must stay mapped and
// unchanged until the command completes.
//
// Descriptors are written in host byte order: nvmux runs on little-endian
// hosts, which is the byte order NVMe structures use.
//
// Thread safety: pure functions; concurrent calls on distinct list memory are
// safe. They never block.
#pragma once

#include <cstdint>
#include <span>

#include "prp.h"  // IovaSegment
#include "nvmux/spec/command.h"
#include "shm/base/result.h"

namespace nvmux {

// Descriptors per chunk when the list memory is 4 KiB pages that need not be
// contiguous on the device side (4096 / 16).
inline constexpr uint32_t kSglDescriptorsPerPage = 256;

struct SglList {
  std::span<spec::SglDescriptor> entries;  // CPU view of the list memory
  uint64_t iova = 0;                       // device address of entries[0]; qword aligned
  uint32_t chunk_entries = kSglDescriptorsPerPage;  // descriptors per SGL segment, >= 2
};

struct Sgl {
  spec::SglDescriptor dptr;   // SGL1: the 16 bytes for Sqe::prp1/prp2
  uint32_t list_entries = 0;  // list descriptors written, chain pointers included
};

// Describes `segments` as an SGL, writing list descriptors into `list` when
// more than one segment is given. Entries past `list_entries` are untouched.
// Errors (EINVAL, each naming the value):
//  - empty transfer (no segments);
//  - a zero-length segment (named by index);
//  - a segment longer than 4 GiB - 1 bytes (a descriptor length is 32 bits);
//  - more segments than the list can describe (the message says how many
//    segments and entries it allows);
//  - list chunk_entries below 2 or above 2^28 - 1 (a segment's byte length must
//    fit in 32 bits), or a list IOVA that is not qword aligned (only checked
//    when the list is used).
[[nodiscard]] Result<Sgl> BuildSgl(std::span<const IovaSegment> segments, SglList list);

// List entries BuildSgl writes for `segments` Data Block descriptors with
// `chunk_entries` per chunk (0 for a single segment), chain pointers included:
// what a tracker must hold. REQUIRES: chunk_entries >= 2.
uint64_t SglListEntriesFor(uint64_t segments, uint32_t chunk_entries = kSglDescriptorsPerPage);

// Most segments a list of `list_entries` descriptors in chunks of
// `chunk_entries` can describe (at least 1: a single segment needs no list).
// REQUIRES: chunk_entries >= 2.
uint64_t SglMaxSegments(uint64_t list_entries, uint32_t chunk_entries = kSglDescriptorsPerPage);

// Sets PSDT = 01b (SGL for data, MPTR a contiguous metadata buffer) and DPTR =
// sgl.dptr. Leaves MPTR as the caller set it.
void SetDataSgl(spec::Sqe& sqe, const Sgl& sgl);

// A metadata SGL for PSDT = 10b: MPTR holds the address of an SGL segment of
// exactly one descriptor, which is the metadata's SGL1 (base spec, Common
// Command Format, MPTR). That descriptor goes in entries[0] of the list;
// further chunks, if several segments are given, follow it from entries[1]
// with the same chunking as BuildSgl.
struct MetadataSgl {
  uint64_t mptr = 0;          // IOVA of the one-descriptor segment: the list's entries[0]
  uint32_t list_entries = 0;  // descriptors written, the first one included
};

// Describes the metadata buffer `segments` for PSDT = 10b.
// Errors: those of BuildSgl (counted on the list after entries[0]), and EINVAL
// if the list has no entries at all.
[[nodiscard]] Result<MetadataSgl> BuildMetadataSgl(std::span<const IovaSegment> segments, SglList list);

// Sets PSDT = 10b (SGLs for data and metadata), DPTR = data.dptr and MPTR =
// metadata.mptr.
void SetDataAndMetadataSgl(spec::Sqe& sqe, const Sgl& data, const MetadataSgl& metadata);

}  // namespace nvmux
