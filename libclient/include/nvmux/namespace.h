// Namespace: one active namespace of a controller, as its Identify Namespace
// data describes it (refreshed when the controller reports a change).
//
// Thread safety: read-only between refreshes; a refresh (namespace-changed
// event, Controller::RefreshNamespaces) happens on the admin-polling thread.
// Ownership: owned by its Controller; valid until the controller is detached
// or the namespace disappears in a refresh.
#pragma once

#include <array>
#include <cstdint>

#include "nvmux/spec/identify.h"

namespace nvmux {

enum class PiType : uint8_t { kNone = 0, kType1 = 1, kType2 = 2, kType3 = 3 };

class Namespace {
 public:
  Namespace(uint32_t nsid, const spec::IdentifyNamespace& data, const spec::IdentifyController& ctrlr);

  uint32_t id() const { return nsid_; }
  const spec::IdentifyNamespace& data() const { return data_; }

  uint64_t num_sectors() const { return data_.nsze; }
  uint64_t size_bytes() const { return data_.nsze * sector_size_; }
  uint32_t sector_size() const { return sector_size_; }
  // Sector plus metadata when the metadata is interleaved (extended LBA).
  uint32_t extended_sector_size() const { return extended_ ? sector_size_ + md_size_ : sector_size_; }
  uint32_t md_size() const { return md_size_; }
  bool extended_lba() const { return extended_; }
  PiType pi_type() const { return static_cast<PiType>(data_.dps & 0x7); }
  // Optimal I/O boundary in sectors (0: none); requests are split at it.
  uint32_t optimal_io_boundary() const { return data_.noiob; }

  // Commands the controller offers for it (from ONCS/VWC).
  bool supports_deallocate() const { return supports_dsm_; }
  bool supports_write_zeroes() const { return supports_write_zeroes_; }
  bool supports_compare() const { return supports_compare_; }
  bool supports_write_uncorrectable() const { return supports_write_uncorrectable_; }
  bool supports_reservations() const { return supports_reservations_; }
  bool supports_copy() const { return supports_copy_; }
  bool supports_verify() const { return supports_verify_; }
  bool supports_flush() const { return supports_flush_; }

  const std::array<uint8_t, 16>& nguid() const { return nguid_; }
  const std::array<uint8_t, 8>& eui64() const { return eui64_; }
  // From the Namespace Identification Descriptor list (CNS 03h), when the
  // controller reported one; all zero otherwise.
  const std::array<uint8_t, 16>& uuid() const { return uuid_; }
  void set_uuid(const std::array<uint8_t, 16>& uuid) { uuid_ = uuid; }

 private:
  uint32_t nsid_;
  spec::IdentifyNamespace data_;
  uint32_t sector_size_ = 512;
  uint32_t md_size_ = 0;
  bool extended_ = false;
  bool supports_dsm_ = false, supports_write_zeroes_ = false, supports_compare_ = false,
       supports_write_uncorrectable_ = false, supports_reservations_ = false, supports_copy_ = false,
       supports_verify_ = false, supports_flush_ = false;
  std::array<uint8_t, 16> nguid_{};
  std::array<uint8_t, 8> eui64_{};
  std::array<uint8_t, 16> uuid_{};
};

}  // namespace nvmux
