#include "nvmux/namespace.h"

#include <cstring>

namespace nvmux {

Namespace::Namespace(uint32_t nsid, const spec::IdentifyNamespace& data, const spec::IdentifyController& ctrlr)
    : nsid_(nsid), data_(data) {
  const spec::LbaFormat& f = data.lbaf[data.flbas & 0xF];
  sector_size_ = 1u << f.lbads;
  md_size_ = f.ms;
  extended_ = (data.flbas & spec::kFlbasExtended) != 0;
  supports_compare_ = (ctrlr.oncs & spec::kOncsCompare) != 0;
  supports_write_uncorrectable_ = (ctrlr.oncs & spec::kOncsWriteUncorrectable) != 0;
  supports_dsm_ = (ctrlr.oncs & spec::kOncsDsm) != 0;
  supports_write_zeroes_ = (ctrlr.oncs & spec::kOncsWriteZeroes) != 0;
  supports_reservations_ = (ctrlr.oncs & spec::kOncsReservations) != 0 && data.rescap != 0;
  supports_verify_ = (ctrlr.oncs & spec::kOncsVerify) != 0;
  supports_copy_ = (ctrlr.oncs & spec::kOncsCopy) != 0;
  // Flush is mandatory; it matters (and is only meaningful) with a volatile write cache.
  supports_flush_ = true;
  std::memcpy(nguid_.data(), data.nguid, nguid_.size());
  std::memcpy(eui64_.data(), data.eui64, eui64_.size());
}

}  // namespace nvmux
