// Namespace: one emulated namespace — its LBA format, its backing store and
// the blocks marked uncorrectable by Write Uncorrectable.
//
// Layout of the backing: data of block b at b * block_size; metadata (if
// any) of block b at nsze * block_size + b * metadata_size, whatever the
// host-side format (extended or separate).
//
// Thread safety: none; the controller serialises access.
#pragma once

#include <cstdint>
#include <map>
#include <memory>

#include "nvmux/spec/identify.h"
#include "shm/base/result.h"
#include "tools/emu/backing.h"
#include "tools/emu/options.h"

namespace nvmux::emu {

class Namespace {
 public:
  // EINVAL for unsupported formats, ENOMEM or a file error (MakeBacking) if
  // the backing cannot be made. A file backing keeps what the file holds.
  [[nodiscard]] static Result<std::unique_ptr<Namespace>> Create(uint32_t nsid, const NamespaceOptions& options,
                                                                 const BackingSpec& backing);

  uint32_t nsid() const { return nsid_; }
  uint64_t nsze() const { return nsze_; }
  uint32_t block_size() const { return options_.block_size; }
  uint16_t metadata_size() const { return options_.metadata_size; }
  bool extended_lba() const { return options_.extended_lba; }
  // Host bytes per block in the data buffer (metadata included if extended).
  uint32_t host_block_size() const {
    return options_.block_size + (options_.extended_lba ? options_.metadata_size : 0u);
  }
  uint64_t DataOffset(uint64_t lba) const { return lba * options_.block_size; }
  uint64_t MetadataOffset(uint64_t lba) const { return nsze_ * options_.block_size + lba * options_.metadata_size; }
  Backing& backing() { return *backing_; }
  uint64_t capacity_bytes() const { return backing_->size(); }

  // Reservation state (one controller, so one host). rkey 0 and not
  // registered are distinct: registered says whether the host registered.
  struct Reservation {
    bool registered = false;
    uint64_t rkey = 0;
    uint8_t rtype = 0;  // 0: no reservation held
    uint32_t generation = 0;
  };
  Reservation& reservation() { return reservation_; }

  // Attached to the (only) controller: active. Namespaces made by Namespace
  // Management start detached.
  bool attached() const { return attached_; }
  void set_attached(bool attached) { attached_ = attached; }

  // Uncorrectable ranges (Write Uncorrectable). REQUIRES: nlb >= 1.
  bool AnyUncorrectable(uint64_t slba, uint64_t nlb) const;
  void MarkUncorrectable(uint64_t slba, uint64_t nlb);
  void ClearUncorrectable(uint64_t slba, uint64_t nlb);

  // Fills an Identify Namespace page (the caller zeroes it first).
  void FillIdentify(spec::IdentifyNamespace& id) const;
  // Identify Namespace for NSID FFFFFFFFh: the capabilities common to every
  // namespace (LBA formats, metadata, deallocation, reservations, Copy
  // limits); size, format in use and identifiers are per namespace and 0.
  static void FillCommonIdentify(spec::IdentifyNamespace& id);
  // Fills the CNS 03h descriptor list (4096 bytes, zeroed by the caller).
  void FillDescriptors(uint8_t* page) const;

 private:
  Namespace(uint32_t nsid, const NamespaceOptions& options, std::unique_ptr<Backing> backing);

  uint32_t nsid_;
  NamespaceOptions options_;
  uint64_t nsze_;
  std::unique_ptr<Backing> backing_;
  std::map<uint64_t, uint64_t> uncorrectable_;  // start -> end (exclusive), disjoint
  bool attached_ = true;
  Reservation reservation_;
};

// Copy limits reported in Identify Namespace (MSRC + 1, MSSRL, MCL), in blocks.
inline constexpr uint32_t kCopyMaxSourceRanges = 16;
inline constexpr uint32_t kCopyMaxSingleRange = 256;
inline constexpr uint32_t kCopyMaxLength = 1024;

// The LBA formats every namespace offers, in FLBAS index order.
inline constexpr spec::LbaFormat kLbaFormats[] = {
    {0, 9, 0}, {8, 9, 0}, {16, 9, 0}, {64, 9, 0}, {0, 12, 0}, {8, 12, 0}, {16, 12, 0}, {64, 12, 0},
};
inline constexpr uint8_t kNumLbaFormats = 8;

// Index into kLbaFormats, or -1.
int FindLbaFormat(uint32_t block_size, uint16_t metadata_size);

}  // namespace nvmux::emu
