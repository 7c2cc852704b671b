#include "tools/manage/manage_status.h"

#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>

#include "libclient/shared/shared_registry.h"
#include "shm/dma_pool.h"
#include "shm/eal.h"
#include "shm/group.h"
#include "tools/manage/manage_args.h"
#include "tools/manage/manage_output.h"

namespace nvmux::manage {
namespace {

constexpr auto kControllerLockWait = std::chrono::milliseconds(200);

const char* StateName(shm::GroupProbe::State s) {
  switch (s) {
    case shm::GroupProbe::State::kAbsent: return "absent";
    case shm::GroupProbe::State::kLive: return "live";
    case shm::GroupProbe::State::kStale: return "stale (its processes are dead)";
    case shm::GroupProbe::State::kUnknown: return "unknown";
  }
  return "?";
}

// The copy of one controller's shared state, and whether it was taken under
// its lock. The copy lives on the heap (~170 KiB).
struct Copied {
  std::unique_ptr<SharedController> c;
  bool locked = false;
};

Copied CopyController(SharedController& shared) {
  Copied out{std::make_unique<SharedController>(), false};
  // The repair when the previous holder died: the driver's repair
  // (QueueRing::Resync) writes both doorbells from the shared positions. We
  // have no doorbell mapping, so we make the positions say "not yet
  // written"; the next process to submit (RingSq) or poll (RingCq, every
  // poll) writes them. Nothing else needs repair here: queue ids and DMA
  // records are written intent-first, and the admin queue's recorded step
  // (submit_cid, poll_pending) is settled by the driver's next locker.
  shm::RobustLock lock(shared.lock, [&shared]() -> Status {
    shared.admin_ring.ForceDoorbells();
    return Ok();
  });
  auto guard = lock.Lock(kControllerLockWait);
  out.locked = guard.has_value();
  // Without the lock (a live process held it too long, or it is
  // unrecoverable) the copy may be torn between fields: the report says so.
  std::memcpy(static_cast<void*>(out.c.get()), &shared, sizeof shared);
  return out;
}

StatusOwner OwnerOf(const std::vector<shm::ProcessInfo>& procs, uint32_t slot, uint32_t generation) {
  for (const shm::ProcessInfo& p : procs)
    if (p.slot == slot && p.generation == generation) return {slot, p.id.pid, p.name};
  return {slot, 0, "(exited)"};
}

}  // namespace

StatusController DescribeController(const SharedController& c, bool locked, const std::vector<shm::ProcessInfo>& procs,
                                    std::vector<StatusProcess>& processes) {
  StatusController s;
  s.index = c.index;
  s.trid = TrimField(c.trid);
  s.transport = TrimField(c.transport_name);
  s.model = TrimField(c.ctrlr.mn);
  s.serial = TrimField(c.ctrlr.sn);
  s.firmware = TrimField(c.ctrlr.fr);
  s.cntlid = c.ctrlr.cntlid;
  s.failed = c.failed != 0;
  s.removed = c.removed != 0;
  s.csts = c.csts;
  s.locked = locked;
  for (uint32_t i = 0; i < std::min(c.num_namespaces, kMaxSharedNamespaces); ++i) {
    const spec::IdentifyNamespace& ns = c.namespaces[i];
    const spec::LbaFormat& f = ns.lbaf[ns.flbas & 0xF];
    s.namespaces.push_back({c.nsids[i], ns.nsze, ns.ncap, ns.nuse, f.lbads < 32 ? 1u << f.lbads : 0u, f.ms});
  }
  auto process_of = [&](uint32_t slot) -> StatusProcess* {
    for (StatusProcess& p : processes)
      if (p.slot == slot) return &p;
    return nullptr;
  };
  for (uint32_t q = 1; q < kMaxSharedQids; ++q) {
    const SharedQid& id = c.qids[q];
    if (id.state != static_cast<uint32_t>(QidState::kInUse)) continue;
    StatusOwner owner = OwnerOf(procs, id.owner_slot, id.owner_generation);
    s.io_queues.push_back({static_cast<uint16_t>(q), owner, id.on_device != 0});
    if (StatusProcess* p = process_of(id.owner_slot); p != nullptr && owner.pid != 0) p->qpairs++;
  }
  s.admin_submitted = c.admin_submitted;
  s.admin_completed = c.admin_completed;
  s.admin_routed = c.admin_routed;
  s.aens = c.aens;
  s.orphaned = c.orphaned;
  s.aers_outstanding = c.aers_outstanding;
  for (uint32_t cid = 0; cid < std::min(c.admin_entries, kMaxSharedAdminEntries); ++cid) {
    const SharedAdminTracker& t = c.trackers[cid];
    if (t.state != static_cast<uint32_t>(TrackerState::kInFlight)) continue;
    s.admin_in_flight++;
    if (t.owner_slot == kAerOwner) continue;
    if (StatusProcess* p = process_of(t.owner_slot);
        p != nullptr && OwnerOf(procs, t.owner_slot, t.owner_generation).pid != 0)
      p->admin_outstanding++;
  }
  for (uint32_t slot = 0; slot < shm::kMaxProcesses; ++slot) {
    const Mailbox& m = c.mailboxes[slot];
    if (m.generation == 0) continue;
    s.mailboxes.push_back({OwnerOf(procs, slot, m.generation), m.tail - m.head, m.dropped});
  }
  return s;
}

namespace {

// A live group with its primary: joins it and reads everything.
int ShowLive(int id, int primary_pid, bool json) {
  shm::GroupOptions o;
  o.group_id = id;
  o.name = "nvmux-manage";
  auto group = shm::Group::Open(o);
  if (!group) {
    // What the lock file tells anyone who may read it, then why no more.
    std::printf("group %d: live, primary pid %d; details not readable by this process\n", id, primary_pid);
    std::cerr << "nvmux-manage: " << group.error().ToString() << "\n";
    return 1;
  }
  StatusReport r;
  r.group = id;
  r.primary_pid = primary_pid;
  auto dma = (*group)->dma().TotalUsage();
  r.dma_allocations = dma.allocations;
  r.dma_bytes = dma.bytes;
  r.max_processes = (*group)->processes().capacity();
  if (auto table = FindControllerTable(**group); table) r.max_controllers = ControllerTableCapacity(**table);
  size_t pool_bytes = 0;
  if (shm::LookupMemzone(shm::kDmaPoolZone, pool_bytes)) r.dma_pool_bytes = pool_bytes;
  std::vector<shm::ProcessInfo> procs = (*group)->processes().Snapshot();
  for (const shm::ProcessInfo& p : procs)
    r.processes.push_back(
        {p.slot, p.id.pid, shm::ToString(p.role), p.name, p.cores.Empty() ? "any" : p.cores.ToListString(), 0, 0});
  // No table yet (ENOENT) is a primary without controllers: nothing to list.
  if (auto published = PublishedControllers(**group); published) {
    for (SharedController* c : *published) {
      Copied copy = CopyController(*c);
      r.controllers.push_back(DescribeController(*copy.c, copy.locked, procs, r.processes));
    }
  } else if (published.error().code != ENOENT) {
    std::cerr << "nvmux-manage: group " << id << ": reading its controllers: " << published.error().message << "\n";
  }
  for (const shm::ReapRecord& rec : (*group)->processes().ReapHistory())
    r.reaped.push_back({rec.pid, rec.slot, TrimField(rec.name), rec.released_items, rec.reaped_realtime_ns});
  std::fputs((json ? StatusJson(r) : StatusText(r)).c_str(), stdout);
  return 0;
}

}  // namespace

int ShowStatus(int id, bool json) {
  auto probe = shm::ProbeGroup(id);
  if (!probe) {
    std::cerr << "nvmux-manage: " << probe.error().message << "\n";
    return 2;
  }
  if (probe->state == shm::GroupProbe::State::kUnknown) {
    // Never guessed: a group this user cannot read may well be alive.
    if (json)
      std::printf("{\"group\": %d, \"state\": \"unknown\", \"where\": %s, \"reason\": %s}\n", id,
                  JsonQuote(probe->where).c_str(), JsonQuote(probe->reason).c_str());
    else
      std::printf("group %d: cannot tell whether it is live: %s\n", id, probe->reason.c_str());
    return 1;
  }
  if (probe->state == shm::GroupProbe::State::kLive && !probe->primary) {
    // Orphaned: the primary died; its secondaries keep running.
    int pid = probe->member.value_or(0);
    if (json)
      std::printf("{\"group\": %d, \"state\": \"orphaned\", \"attached_pid\": %d}\n", id, pid);
    else
      std::printf(
          "group %d: primary not running; process %d (and maybe others) still attached and working; "
          "restart `nvmuxd -i %d` once they have exited\n",
          id, pid, id);
    return 1;
  }
  if (probe->state != shm::GroupProbe::State::kLive) {
    if (json) {
      std::printf("{\"group\": %d, \"state\": \"%s\", \"files\": %zu, \"where\": %s}\n", id,
                  probe->state == shm::GroupProbe::State::kAbsent ? "absent" : "stale", probe->files.size(),
                  JsonQuote(probe->where).c_str());
    } else {
      std::printf("group %d: %s (looked in %s)", id, StateName(probe->state), probe->where.c_str());
      if (probe->state == shm::GroupProbe::State::kStale)
        std::printf("; %s left: run `nvmux-manage cleanup -i %d --yes`", shm::SummariseFiles(probe->files).c_str(), id);
      std::printf("\n");
    }
    return probe->state == shm::GroupProbe::State::kAbsent ? 1 : 0;
  }
  return ShowLive(id, *probe->primary, json);
}

int Cleanup(int id, bool yes) {
  auto probe = shm::ProbeGroup(id);
  if (!probe) {
    std::cerr << "nvmux-manage: " << probe.error().message << "\n";
    return 2;
  }
  // Only a stale group has something to remove; a live one is refused by
  // CleanStaleGroup (naming its process) and an absent one has nothing.
  if (probe->state == shm::GroupProbe::State::kStale) {
    std::string what = "remove group " + std::to_string(id) + "'s " + shm::SummariseFiles(probe->files);
    if (int code = Confirm("cleanup", what, yes); code != 0) return code;
  }
  auto removed = shm::CleanStaleGroup(id);
  if (!removed) {
    std::cerr << "nvmux-manage: cannot clean group " << id << ": " << removed.error().message << "\n";
    return 1;
  }
  if (removed->empty())
    std::printf("group %d: nothing to clean (looked in %s)\n", id, probe->where.c_str());
  else
    std::printf("group %d: removed %s\n", id, shm::SummariseFiles(*removed).c_str());
  return 0;
}

}  // namespace nvmux::manage
