#include "nvmux/env.h"

#include <algorithm>
#include <bit>

#include "libclient/core/dma_page_map.h"
#include "nvmux/transport_id.h"
#include "nvmux/version.h"
#include "libclient/shared/shared_registry.h"
#include "shm/eal.h"
#include "shm/group.h"
#include "shm/group_access.h"
#include "shm/mem_events.h"
#include "shm/segment.h"

namespace nvmux {

VersionInfo Version() {
  return VersionInfo{NVMUX_VERSION_MAJOR, NVMUX_VERSION_MINOR, NVMUX_VERSION_PATCH, shm::kAbiVersion,
                     NVMUX_VERSION_STRING};
}

const char* ToString(Role role) {
  switch (role) {
    case Role::kStandalone: return "standalone";
    case Role::kPrimary: return "primary";
    case Role::kSecondary: return "secondary";
  }
  return "?";
}

Result<std::unique_ptr<Env>> Env::Init(const EnvOptions& options) {
  // Checked before anything starts: a bad entry is the caller's error.
  std::vector<std::string> pci_allowed;
  for (const std::string& entry : options.pci_allowed) {
    // The transport id parser owns the address syntax (one entry: no blanks).
    auto trid = TransportId::Parse("trtype:pcie traddr:" + entry);
    if (!trid || entry.empty() || entry.find_first_of(" \t\n") != std::string::npos)
      return Fail(EINVAL, "EnvOptions::pci_allowed entry '" + entry + "' is not a PCI address (expected "
                              "DDDD:BB:DD.F or BB:DD.F, e.g. 0000:04:00.0)");
    pci_allowed.push_back(trid->traddr);
  }
  shm::GroupOptions g;
  g.group_id = options.group_id;
  g.create = options.primary;
  g.name = options.name;
  g.mem_mb = options.mem_mb;
  g.max_processes = options.max_processes;
  g.dma_pool_mb = options.dma_pool_mb;
  if (options.primary) {
    if (options.max_controllers < 1 || options.max_controllers > kMaxSharedControllers)
      return Fail(EINVAL, "bad --max-controllers " + std::to_string(options.max_controllers) + ": allowed 1.." +
                              std::to_string(kMaxSharedControllers));
    if (options.dma_pool_mb < 2 || options.dma_pool_mb > 65536)
      return Fail(EINVAL, "bad --dma-pool-mb " + std::to_string(options.dma_pool_mb) + ": allowed 2..65536");
    if (!options.access_group.empty()) {
      auto gid = shm::LookupUnixGroup(options.access_group);
      if (!gid) return Fail(gid.error().code, "--access-group: " + gid.error().message);
      g.access_gid = *gid;
    }
    // The controller registry exists before the segment is published.
    uint32_t max_controllers = options.max_controllers;
    g.construct_tables = [max_controllers](shm::Segment& segment, const shm::Segment::Guard& guard) {
      return ConstructControllerTable(segment, guard, max_controllers);
    };
  }
  if (options.primary && !options.group_id)
    return Fail(EINVAL, "a primary needs a group id (-i N); without one the process runs standalone");
  if (!options.core_mask.empty()) {
    auto cores = shm::CoreSet::Parse(options.core_mask);
    if (!cores) return cores.error();
    g.cores = *cores;
  }
  std::unique_ptr<Env> env(new Env());
  env->name_ = options.name;
  env->pci_allowed_ = std::move(pci_allowed);
  auto group = shm::Group::Open(g);
  if (!group) return group.error();
  env->group_ = std::move(*group);
  env->pages_ = std::make_unique<DmaPageMap>();
  DmaPageMap* pages = env->pages_.get();
  // IOVA = PA (uio_pci_generic): the driver translates by page (dma_page_map.h).
  if (shm::IovaIsPhysical()) DmaPageMap::EnablePhysical(pages->base());
  auto sub = shm::SubscribeMemEvents([pages](bool added, std::span<const shm::MemSegment> segments) {
    for (const shm::MemSegment& s : segments) {
      if (added) {
        if (DmaPageMap::Physical()) DmaPageMap::SetIova(s.va, s.iova, s.length);
        pages->Add(s.va, s.length);
      } else
        pages->Remove(s.va, s.length);
    }
  });
  if (!sub) return sub.error();
  env->page_events_ = std::move(*sub);
  return env;
}

Env::~Env() {
  page_events_.reset();
  group_.reset();
}

Role Env::role() const {
  switch (group_->role()) {
    case shm::ProcessRole::kPrimary: return Role::kPrimary;
    case shm::ProcessRole::kSecondary: return Role::kSecondary;
    case shm::ProcessRole::kStandalone: return Role::kStandalone;
  }
  return Role::kStandalone;
}

std::optional<int> Env::group_id() const {
  if (group_->id() < 0) return std::nullopt;
  return group_->id();
}

Result<DmaBuffer> Env::AllocDma(size_t size, size_t align, std::string_view tag, DmaOwner owner) {
  if (size == 0) return Fail(EINVAL, "DMA allocation of 0 bytes");
  if (align < 4 || (align & (align - 1)) != 0)
    return Fail(EINVAL, "DMA alignment " + std::to_string(align) + " must be a power of two >= 4");
  // IOVA = PA: physical addresses are contiguous within a hugepage only, and
  // queues and PRP lists must be contiguous: a buffer of up to 2 MiB is
  // aligned to its size rounded up to a power of two, so it never crosses a
  // 2 MiB page. (Data buffers may still cross; the I/O path splits them.)
  if (DmaPageMap::Physical() && size <= DmaPageMap::kPageBytes) align = std::max(align, std::bit_ceil(size));
  return group_->dma().Allocate(size, align, tag, owner);
}

bool Env::IsDmaMemory(const void* data, size_t length) const { return pages_->Contains(data, length); }

}  // namespace nvmux
