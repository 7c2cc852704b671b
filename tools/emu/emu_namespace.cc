#include "tools/emu/emu_namespace.h"

#include <cstring>

namespace nvmux::emu {

int FindLbaFormat(uint32_t block_size, uint16_t metadata_size) {
  for (int i = 0; i < kNumLbaFormats; ++i) {
    if ((1u << kLbaFormats[i].lbads) == block_size && kLbaFormats[i].ms == metadata_size) return i;
  }
  return -1;
}

Namespace::Namespace(uint32_t nsid, const NamespaceOptions& options, std::unique_ptr<Backing> backing)
    : nsid_(nsid), options_(options), nsze_(options.size_bytes / options.block_size), backing_(std::move(backing)) {}

Result<std::unique_ptr<Namespace>> Namespace::Create(uint32_t nsid, const NamespaceOptions& options,
                                                     const BackingSpec& kind) {
  if (FindLbaFormat(options.block_size, options.metadata_size) < 0) {
    return Fail(EINVAL, "namespace " + std::to_string(nsid) + ": no LBA format with " +
                            std::to_string(options.block_size) + "-byte blocks and " +
                            std::to_string(options.metadata_size) + " bytes of metadata");
  }
  if (options.size_bytes == 0 || options.size_bytes % options.block_size != 0) {
    return Fail(EINVAL, "namespace " + std::to_string(nsid) + ": size must be a multiple of the block size");
  }
  uint64_t blocks = options.size_bytes / options.block_size;
  auto backing = MakeBacking(kind, nsid, blocks * (options.block_size + options.metadata_size));
  if (!backing) return backing.error();
  return std::unique_ptr<Namespace>(new Namespace(nsid, options, std::move(*backing)));
}

bool Namespace::AnyUncorrectable(uint64_t slba, uint64_t nlb) const {
  if (uncorrectable_.empty()) return false;
  const uint64_t end = slba + nlb;
  auto it = uncorrectable_.upper_bound(slba);
  if (it != uncorrectable_.begin()) {
    auto prev = std::prev(it);
    if (prev->second > slba) return true;
  }
  return it != uncorrectable_.end() && it->first < end;
}

void Namespace::ClearUncorrectable(uint64_t slba, uint64_t nlb) {
  if (uncorrectable_.empty()) return;
  const uint64_t end = slba + nlb;
  auto it = uncorrectable_.upper_bound(slba);
  if (it != uncorrectable_.begin()) --it;
  while (it != uncorrectable_.end() && it->first < end) {
    uint64_t s = it->first;
    uint64_t e = it->second;
    if (e <= slba) {
      ++it;
      continue;
    }
    it = uncorrectable_.erase(it);
    if (s < slba) uncorrectable_[s] = slba;
    if (e > end) uncorrectable_[end] = e;
  }
}

void Namespace::MarkUncorrectable(uint64_t slba, uint64_t nlb) {
  ClearUncorrectable(slba, nlb);
  uncorrectable_[slba] = slba + nlb;
}

void Namespace::FillCommonIdentify(spec::IdentifyNamespace& id) {
  // Deallocated blocks read as zeroes.
  id.nsfeat = 0;
  id.dlfeat = spec::kDlfeatReadZeroes | spec::kDlfeatWriteZeroesDeallocates;
  id.nlbaf = kNumLbaFormats - 1;
  id.mc = spec::kMcExtended | spec::kMcSeparate;
  id.dpc = 0;  // no protection information
  id.nmic = 0;
  // Reservation types 1-6; no persist-through-power-loss.
  id.rescap = 0;
  for (uint8_t rtype = 1; rtype <= 6; ++rtype) id.rescap |= spec::RescapType(rtype);
  id.msrc = kCopyMaxSourceRanges - 1;  // 0's based
  id.mssrl = kCopyMaxSingleRange;
  id.mcl = kCopyMaxLength;
  for (int i = 0; i < kNumLbaFormats; ++i) id.lbaf[i] = kLbaFormats[i];
}

void Namespace::FillIdentify(spec::IdentifyNamespace& id) const {
  FillCommonIdentify(id);
  id.nsze = nsze_;
  id.ncap = nsze_;
  id.nuse = nsze_;
  id.flbas = static_cast<uint8_t>(FindLbaFormat(options_.block_size, options_.metadata_size));
  if (options_.extended_lba) id.flbas |= spec::kFlbasExtended;
  id.dps = 0;
  // Optimal I/O boundary of 128 KiB so the driver's boundary split is testable.
  id.noiob = static_cast<uint16_t>((128u * 1024) / options_.block_size);
  id.npwg = 0;
  id.npwa = 0;
  id.npdg = 0;
  id.npda = 0;
  id.nows = 0;
  // NGUID / EUI64: stable per namespace id.
  const uint8_t oui[3] = {0x4E, 0x56, 0x4D};
  std::memcpy(id.nguid, oui, 3);
  id.nguid[12] = static_cast<uint8_t>(nsid_ >> 24);
  id.nguid[13] = static_cast<uint8_t>(nsid_ >> 16);
  id.nguid[14] = static_cast<uint8_t>(nsid_ >> 8);
  id.nguid[15] = static_cast<uint8_t>(nsid_);
  std::memcpy(id.eui64, oui, 3);
  id.eui64[7] = static_cast<uint8_t>(nsid_);
}

void Namespace::FillDescriptors(uint8_t* page) const {
  spec::IdentifyNamespace id{};
  FillIdentify(id);
  size_t at = 0;
  auto add = [&](uint8_t type, const uint8_t* data, uint8_t len) {
    spec::NsIdDescriptorHeader h{type, len, {}};
    std::memcpy(page + at, &h, sizeof(h));
    std::memcpy(page + at + sizeof(h), data, len);
    at += sizeof(h) + len;
  };
  add(spec::kNidtEui64, id.eui64, 8);
  add(spec::kNidtNguid, id.nguid, 16);
  // UUID (version 4 layout bits set; the rest derived from the NGUID).
  uint8_t uuid[16];
  std::memcpy(uuid, id.nguid, 16);
  uuid[6] = static_cast<uint8_t>((uuid[6] & 0x0F) | 0x40);
  uuid[8] = static_cast<uint8_t>((uuid[8] & 0x3F) | 0x80);
  add(spec::kNidtUuid, uuid, 16);
  const uint8_t csi = 0;  // NVM command set
  add(spec::kNidtCsi, &csi, 1);
}

}  // namespace nvmux::emu
