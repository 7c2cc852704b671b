#include "tools/emu/fdless_staging.h"

#include <utility>

namespace nvmux::emu {

const FdlessStaging::Range* FdlessStaging::Fetched(uint64_t iova, uint64_t len) const {
  for (const Range& r : fetched_) {
    if (iova >= r.iova && iova - r.iova <= r.bytes.size() && r.bytes.size() - (iova - r.iova) >= len) return &r;
  }
  return nullptr;
}

void FdlessStaging::Missing(uint64_t iova, uint64_t len) {
  for (const Range& r : missing_) {
    if (r.iova == iova && r.bytes.size() == len) return;  // already asked for
  }
  missing_.push_back({iova, std::vector<uint8_t>(static_cast<size_t>(len)), false});
}

bool FdlessStaging::Add(const DmaSpace& dma, uint64_t iova, uint64_t len, bool device_writes, HostBuffer& out) {
  bool ok = true;
  const bool covered = dma.ForEachPiece(iova, len, device_writes, [&](uint64_t at, uint8_t* local, uint64_t n) {
    if (!ok) return;
    if (local != nullptr) {
      out.Add(local, n);
    } else if (device_writes) {
      writes_.push_back({at, std::vector<uint8_t>(static_cast<size_t>(n)), false});
      out.Add(writes_.back().bytes.data(), n);  // the vector's buffer stays put when writes_ grows
    } else if (const Range* r = Fetched(at, n)) {
      if (r->failed) {
        ok = false;
      } else {
        out.Add(const_cast<uint8_t*>(r->bytes.data()) + (at - r->iova), n);
      }
    } else {
      Missing(at, n);
    }
  });
  return covered && ok;
}

const uint8_t* FdlessStaging::List(const DmaSpace& dma, uint64_t iova, uint64_t len) {
  if (const Range* r = Fetched(iova, len)) return r->failed ? nullptr : r->bytes.data() + (iova - r->iova);
  // A list touching fd-less memory is fetched whole by message (the client
  // serves any of its memory); one merely split across fd mappings stays
  // a Data Transfer Error, as before.
  if (dma.TouchesFdless(iova, len) && dma.ForEachPiece(iova, len, false, [](uint64_t, uint8_t*, uint64_t) {})) Missing(iova, len);
  return nullptr;
}

void FdlessStaging::PutFetched(std::vector<Range> ranges) {
  for (Range& r : ranges) fetched_.push_back(std::move(r));
}

}  // namespace nvmux::emu
