#include "tools/emu/sgl.h"

#include <cstring>

#include "tools/emu/fdless_staging.h"

namespace nvmux::emu {

using spec::CompletionStatus;
using spec::Dnr;
using spec::SglDescriptor;
namespace sc = spec::sc;
namespace sgl = spec::sgl;

namespace {

constexpr CompletionStatus Generic(uint8_t code) { return Dnr(spec::sct::kGeneric, code); }

}  // namespace

CompletionStatus MapSgl(const DmaSpace& dma, const SglDescriptor& sgl1, uint64_t len, bool device_writes,
                        HostBuffer& out) {
  out.Clear();
  uint64_t mapped = 0;
  uint32_t seen = 0;
  // Consumes one data block; false with a status on error.
  auto data_block = [&](const SglDescriptor& d, CompletionStatus& status) {
    if (d.length == 0) return true;
    if (mapped + d.length > len) {
      status = Generic(sc::kDataSglLengthInvalid);  // describes more than the command moves
      return false;
    }
    if (!AddDmaRange(dma, d.address, d.length, device_writes, out)) {
      status = {spec::sct::kGeneric, sc::kDataTransferError, false};
      return false;
    }
    mapped += d.length;
    return true;
  };
  auto type_ok = [](const SglDescriptor& d) {
    return d.subtype() == sgl::kSubtypeAddress &&
           (d.type() == sgl::kDataBlock || d.type() == sgl::kSegment || d.type() == sgl::kLastSegment);
  };

  CompletionStatus status = spec::kSuccess;
  if (!type_ok(sgl1)) return Generic(sc::kSglDescriptorTypeInvalid);
  if (sgl1.type() == sgl::kDataBlock) {
    if (!data_block(sgl1, status)) return status;
  } else {
    SglDescriptor segment = sgl1;
    for (;;) {
      if (segment.length == 0 || segment.length % sizeof(SglDescriptor) != 0) {
        return Generic(sc::kInvalidSglSegmentDescriptor);
      }
      const uint32_t count = segment.length / static_cast<uint32_t>(sizeof(SglDescriptor));
      seen += count;
      if (seen > kMaxSglDescriptors) return Generic(sc::kInvalidNumberOfSglDescriptors);
      const uint8_t* list = dma.Translate(segment.address, segment.length, false);
      if (list == nullptr && dma.staging() != nullptr) list = dma.staging()->List(dma, segment.address, segment.length);
      if (list == nullptr) return {spec::sct::kGeneric, sc::kDataTransferError, false};
      const bool last_segment = segment.type() == sgl::kLastSegment;
      bool chained = false;
      for (uint32_t i = 0; i < count; ++i) {
        SglDescriptor d;
        std::memcpy(&d, list + i * sizeof(SglDescriptor), sizeof(d));
        if (!type_ok(d)) return Generic(sc::kSglDescriptorTypeInvalid);
        if (d.type() == sgl::kDataBlock) {
          if (!data_block(d, status)) return status;
          continue;
        }
        // A segment descriptor: only as the last entry of a non-last segment.
        if (last_segment || i != count - 1) return Generic(sc::kInvalidNumberOfSglDescriptors);
        segment = d;
        chained = true;
      }
      if (!chained) {
        // A (non-last) Segment must end in a segment descriptor.
        if (!last_segment) return Generic(sc::kInvalidNumberOfSglDescriptors);
        break;
      }
    }
  }
  if (mapped != len) return Generic(sc::kDataSglLengthInvalid);
  return spec::kSuccess;
}

}  // namespace nvmux::emu
