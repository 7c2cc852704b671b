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
  // EINVAL for unsupported formats, ENOMEM if the backing cannot be made.
  [[nodiscard]] static Result<std::unique_ptr<Namespace>> Create(uint32_t nsid, const NamespaceOptions& options,
                                                                 BackingKind backing);

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

  // Uncorrectable ranges (Write Uncorrectable). REQUIRES: nlb >= 1.
  bool AnyUncorrectable(uint64_t slba, uint64_t nlb) const;
  void MarkUncorrectable(uint64_t slba, uint64_t nlb);
  void ClearUncorrectable(uint64_t slba, uint64_t nlb);

  // Fills an Identify Namespace page (the caller zeroes it first).
  void FillIdentify(spec::IdentifyNamespace& id) const;
  // Fills the CNS 03h descriptor list (4096 bytes, zeroed by the caller).
  void FillDescriptors(uint8_t* page) const;

 private:
  Namespace(uint32_t nsid, const NamespaceOptions& options, std::unique_ptr<Backing> backing);

  uint32_t nsid_;
  NamespaceOptions options_;
  uint64_t nsze_;
  std::unique_ptr<Backing> backing_;
  std::map<uint64_t, uint64_t> uncorrectable_;  // start -> end (exclusive), disjoint
};

// The LBA formats every namespace offers, in FLBAS index order.
inline constexpr spec::LbaFormat kLbaFormats[] = {
    {0, 9, 0}, {8, 9, 0}, {16, 9, 0}, {64, 9, 0}, {0, 12, 0}, {8, 12, 0}, {16, 12, 0}, {64, 12, 0},
};
inline constexpr uint8_t kNumLbaFormats = 8;

// Index into kLbaFormats, or -1.
int FindLbaFormat(uint32_t block_size, uint16_t metadata_size);

}  // namespace nvmux::emu
