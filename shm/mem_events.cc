#include "shm/mem_events.h"

#include <rte_errno.h>
#include <rte_eal_memconfig.h>
#include <rte_memory.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <vector>

#include "shm/base/log.h"
#include "shm/dpdk_lock_doctor.h"

namespace nvmux::shm {
namespace {

struct Subscriber {
  uint64_t id;
  MemEventFn fn;
};

// Lock order: DPDK's memory hotplug lock, then this mutex. Event callbacks
// arrive with the hotplug lock held; Subscribe takes it first too;
// unsubscribing takes only this mutex.
std::mutex g_mutex;
std::vector<Subscriber> g_subscribers;
uint64_t g_next_id = 1;
bool g_registered = false;

MemSegment Describe(const rte_memseg* ms, uintptr_t va, size_t length) {
  MemSegment s;
  s.va = va;
  s.length = length;
  s.iova = ms->iova + (va - reinterpret_cast<uintptr_t>(ms->addr));
  int fd = rte_memseg_get_fd_thread_unsafe(ms);
  if (fd >= 0) {
    s.fd = fd;
    size_t offset = 0;
    if (rte_memseg_get_fd_offset_thread_unsafe(ms, &offset) == 0)
      s.fd_offset = offset + (va - reinterpret_cast<uintptr_t>(ms->addr));
  }
  return s;
}

// Splits [addr, addr + len) into its memsegs (called with the hotplug lock held).
std::vector<MemSegment> SegmentsOf(const void* addr, size_t len) {
  std::vector<MemSegment> out;
  uintptr_t va = reinterpret_cast<uintptr_t>(addr);
  uintptr_t end = va + len;
  while (va < end) {
    rte_memseg_list* msl = rte_mem_virt2memseg_list(reinterpret_cast<void*>(va));
    const rte_memseg* ms = rte_mem_virt2memseg(reinterpret_cast<void*>(va), msl);
    if (ms == nullptr || msl == nullptr) break;
    uintptr_t seg_end = reinterpret_cast<uintptr_t>(ms->addr) + ms->len;
    size_t n = std::min(end, seg_end) - va;
    out.push_back(Describe(ms, va, n));
    va += n;
  }
  return out;
}

void OnEvent(rte_mem_event type, const void* addr, size_t len, void*) {
  // DPDK calls this with its hotplug lock held; subscribers may block in a
  // DMA_MAP for seconds: the lock doctor must see that a live process holds it.
  DpdkSection holding;
  std::vector<MemSegment> segments = SegmentsOf(addr, len);
  std::lock_guard<std::mutex> guard(g_mutex);
  for (Subscriber& s : g_subscribers) s.fn(type == RTE_MEM_EVENT_ALLOC, segments);
}

int CollectOne(const rte_memseg_list*, const rte_memseg* ms, void* arg) {
  static_cast<std::vector<MemSegment>*>(arg)->push_back(Describe(ms, reinterpret_cast<uintptr_t>(ms->addr), ms->len));
  return 0;
}

}  // namespace

MemEventSubscription::~MemEventSubscription() {
  // Not under DPDK's hotplug lock: a process killed inside DPDK's memory
  // code can leave it held for good (it is not robust), and leaving must
  // never hang. Our mutex alone orders this against a running callback.
  std::lock_guard<std::mutex> guard(g_mutex);
  std::erase_if(g_subscribers, [this](const Subscriber& s) { return s.id == id_; });
}

Result<std::unique_ptr<MemEventSubscription>> SubscribeMemEvents(MemEventFn fn) {
  // Register DPDK's callback once per process, outside the hotplug lock
  // (registration takes it itself).
  {
    std::lock_guard<std::mutex> guard(g_mutex);
    if (!g_registered) {
      if (rte_mem_event_callback_register("nvmux-mem-events", OnEvent, nullptr) != 0 && rte_errno != EEXIST)
        return Fail(rte_errno == ENOTSUP ? ENOTSUP : rte_errno,
                    std::string("cannot follow DPDK memory events: ") + rte_strerror(rte_errno));
      g_registered = true;
    }
  }
  rte_mcfg_mem_read_lock();
  std::optional<DpdkSection> holding(std::in_place);  // held now: subscribers may block in a DMA_MAP
  std::vector<MemSegment> existing;
  rte_memseg_walk_thread_unsafe(CollectOne, &existing);
  uint64_t id;
  {
    std::lock_guard<std::mutex> guard(g_mutex);
    id = g_next_id++;
    if (!existing.empty()) fn(true, existing);
    g_subscribers.push_back({id, std::move(fn)});
  }
  holding.reset();
  rte_mcfg_mem_read_unlock();
  return std::unique_ptr<MemEventSubscription>(new MemEventSubscription(id));
}

}  // namespace nvmux::shm
