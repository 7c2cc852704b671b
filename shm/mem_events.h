// Memory events: the hugepage memory of this process's DPDK environment, as
// segments with the fd and offset that back them, and a subscription to
// every later change. Transports that must tell a device about memory
// (vfio-user DMA_MAP) and the driver's DMA page map subscribe here; this is
// the one place that walks DPDK's memseg lists.
//
// Subscribe() first reports every segment that exists (added = true), then
// each allocation (after it happened) and each free (before the pages go).
// Callbacks run in whichever thread of the process changed memory — for a
// DPDK primary that includes the thread serving a secondary's allocation
// request — with DPDK's memory hotplug lock held: they must not allocate or
// free DPDK memory.
//
// Thread safety: Subscribe and the subscription's destructor from any thread.
// Ownership: the subscription unregisters on destruction.
// REQUIRES: EAL is up (shm/eal.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "shm/base/result.h"

namespace nvmux::shm {

struct MemSegment {
  uintptr_t va = 0;
  uint64_t iova = 0;
  size_t length = 0;
  int fd = -1;            // -1 when DPDK keeps no fd for it (then it cannot be shared by fd)
  uint64_t fd_offset = 0;
};

using MemEventFn = std::function<void(bool added, std::span<const MemSegment> segments)>;

class MemEventSubscription {
 public:
  ~MemEventSubscription();
  MemEventSubscription(const MemEventSubscription&) = delete;
  MemEventSubscription& operator=(const MemEventSubscription&) = delete;

 private:
  friend Result<std::unique_ptr<MemEventSubscription>> SubscribeMemEvents(MemEventFn fn);
  explicit MemEventSubscription(uint64_t id) : id_(id) {}
  uint64_t id_;
};

// Errors: ENOTSUP if DPDK cannot report memory events (legacy memory),
// EAL's own failure to register its callback otherwise.
[[nodiscard]] Result<std::unique_ptr<MemEventSubscription>> SubscribeMemEvents(MemEventFn fn);

}  // namespace nvmux::shm
