#include "libclient/vfiouser/msix_mapping.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "libclient/vfiouser/protocol.h"

namespace nvmux::vfiouser {
namespace {

constexpr uint8_t kCapabilityMsix = 0x11;
constexpr uint32_t kConfigBytes = 256;

uint16_t At16(const std::vector<uint8_t>& c, uint32_t off) { return static_cast<uint16_t>(c[off] | (c[off + 1] << 8)); }

// The config space offset of the MSI-X capability, or 0.
uint32_t FindMsixCapability(const std::vector<uint8_t>& c) {
  if (c.size() < kConfigBytes) return 0;
  // Status bit 4: a capability list at 0x34.
  uint32_t cap = (At16(c, 0x06) & 0x10) != 0 ? c[0x34] & 0xFCu : 0;
  for (int hops = 0; cap != 0 && cap + 12 <= kConfigBytes && hops < 48; ++hops) {
    if (c[cap] == kCapabilityMsix) return cap;
    cap = c[cap + 1] & 0xFCu;
  }
  return 0;
}

}  // namespace

Status EnableMsix(Client& client) {
  auto config = client.ReadRegion(kPciConfigRegion, 0, kConfigBytes);
  if (!config) return config.error();
  const uint32_t cap = FindMsixCapability(*config);
  if (cap == 0) return Fail(ENOTSUP, "no MSI-X capability in config space");
  // Message Control: MSI-X Enable (bit 15) on, Function Mask (bit 14) off.
  const uint16_t control = static_cast<uint16_t>((At16(*config, cap + 2) | 0x8000u) & ~0x4000u);
  const uint8_t bytes[2] = {static_cast<uint8_t>(control & 0xFF), static_cast<uint8_t>(control >> 8)};
  return client.WriteRegion(kPciConfigRegion, cap + 2, bytes);
}

Result<MsixMapping> MsixMapping::Map(Client& client) {
  auto config = client.ReadRegion(kPciConfigRegion, 0, kConfigBytes);
  if (!config) return config.error();
  const std::vector<uint8_t>& c = *config;
  auto at32 = [&](uint32_t off) { return static_cast<uint32_t>(At16(c, off) | (uint32_t{At16(c, off + 2)} << 16)); };
  if (const uint32_t cap = FindMsixCapability(c); cap != 0) {
    const uint32_t vectors = (At16(c, cap + 2) & 0x7FFu) + 1;
    const uint32_t table = at32(cap + 4);
    const uint32_t bir = table & 0x7u;
    const uint64_t offset = table & ~0x7u;
    if (bir > 5) return Fail(ENOTSUP, "MSI-X table in BAR " + std::to_string(bir));
    auto region = client.GetRegionInfo(kPciBar0Region + bir);
    if (!region) return region.error();
    const uint64_t bytes = uint64_t{vectors} * 16;
    for (size_t i = 0; i < region->sparse_areas.size(); ++i) {
      const SparseMmapArea& a = region->sparse_areas[i];
      if (a.offset > offset || offset + bytes > a.offset + a.size) continue;
      auto area = client.MapSparseArea(*region, i);
      if (!area) return area.error();
      MsixMapping m;
      m.area_ = std::move(*area);
      m.fd_ = std::move(region->fd);
      m.file_offset_ = region->file_offset + a.offset;
      m.table_in_area_ = offset - a.offset;
      m.vectors_ = vectors;
      return m;
    }
    return Fail(ENOTSUP, "the MSI-X table (BAR " + std::to_string(bir) + " offset " + std::to_string(offset) +
                             ") is not mmap-able");
  }
  return Fail(ENOTSUP, "no MSI-X capability in config space");
}

Result<MsixMapping> MsixMapping::FromFd(UniqueFd fd, const MsixTableArea& a) {
  if (!fd.valid() || a.vectors == 0 || a.table_offset + uint64_t{a.vectors} * 16 > a.bytes)
    return Fail(EINVAL, "an MSI-X table of " + std::to_string(a.vectors) + " vectors at " +
                            std::to_string(a.table_offset) + " does not fit an area of " + std::to_string(a.bytes) +
                            " bytes");
  void* p = ::mmap(nullptr, a.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), static_cast<off_t>(a.file_offset));
  if (p == MAP_FAILED) return ErrnoError("mapping the MSI-X table");
  MsixMapping m;
  m.area_ = MappedArea(p, a.bytes);
  m.fd_ = std::move(fd);
  m.file_offset_ = a.file_offset;
  m.table_in_area_ = a.table_offset;
  m.vectors_ = a.vectors;
  return m;
}

volatile uint32_t* MsixMapping::ControlWord(uint16_t vector) const {
  if (!mapped() || vector >= vectors_) return nullptr;
  return reinterpret_cast<volatile uint32_t*>(area_.data() + table_in_area_ + size_t{vector} * 16 + 12);
}

}  // namespace nvmux::vfiouser
