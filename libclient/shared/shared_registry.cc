#include "libclient/shared/shared_registry.h"

#include <algorithm>

#include <atomic>
#include <cstring>

#include "shm/base/log.h"

namespace nvmux {
namespace {

uint32_t Load(uint32_t& v) { return std::atomic_ref<uint32_t>(v).load(std::memory_order_acquire); }

// A retired entry is still in use while a live process has its admin mailbox
// registered there (SharedAdminQueue registers it for the lifetime of the
// process's Controller). Mailboxes of dead processes are not forgotten on a
// retired entry (the reaper's hook went with the controller), so the slot's
// current generation and liveness decide.
bool RetiredEntryInUse(shm::Group& group, SharedController& c) {
  std::vector<shm::ProcessInfo> live = group.processes().Snapshot();
  for (uint32_t slot = 0; slot < shm::kMaxProcesses; ++slot) {
    uint32_t generation = c.mailboxes[slot].generation;
    if (generation == 0) continue;
    for (const shm::ProcessInfo& p : live)
      if (p.slot == slot && p.generation == generation && p.state == shm::SlotState::kActive &&
          group.processes().IsAlive(slot))
        return true;
  }
  return false;
}

}  // namespace

Status ConstructControllerTable(shm::Segment& segment, const shm::Segment::Guard& guard, uint32_t capacity) {
  auto table = segment.Construct<SharedControllerTable>(guard, kSharedControllersName);
  if (!table) return table.error();
  // `reserved` holds the capacity (0, in tables of earlier primaries, means all).
  (*table)->reserved = std::clamp(capacity, 1u, kMaxSharedControllers);
  return Ok();
}

uint32_t ControllerTableCapacity(const SharedControllerTable& table) {
  return table.reserved == 0 ? kMaxSharedControllers : std::min(table.reserved, kMaxSharedControllers);
}

Result<SharedControllerTable*> FindControllerTable(shm::Group& group) {
  auto guard = group.lock().Lock();
  if (!guard) return guard.error();
  auto found = group.segment().Find<SharedControllerTable>(*guard, kSharedControllersName);
  if (!found)
    return Fail(ENOENT, "group " + std::to_string(group.id()) + " has no controller table: start nvmuxd -i " +
                            std::to_string(group.id()) + " with -r TRID");
  return *found;
}

namespace {

// What an entry leaves to whoever reuses it (see Reservation): the
// quarantined rings of its queue ids and, when its reserver died before
// publishing, that reserver's group-owned admin queue and shadow doorbell
// pages (nobody else frees those; a retired entry's were freed by the
// Controller that owned them, and their IOVAs may belong to others now).
void CollectStale(SharedController& c, bool dead_reserver, Reservation& r) {
  if (dead_reserver)
    for (uint64_t iova : {c.admin_sq_iova, c.shadow_doorbell_iova})
      if (iova != 0) r.stale_group_iovas.push_back(iova);
  for (uint32_t q = 1; q < kMaxSharedQids; ++q) {
    const SharedQid& id = c.qids[q];
    if (id.state != static_cast<uint32_t>(QidState::kQuarantined)) continue;
    for (uint64_t iova : {id.sq_iova, id.cq_iova})
      if (iova != 0) r.stale_quarantined_iovas.push_back(iova);
  }
}

bool ReserverAlive(shm::Group& group, const SharedController& c) {
  if (c.reserver_slot >= shm::kMaxProcesses || !group.processes().IsAlive(c.reserver_slot)) return false;
  for (const shm::ProcessInfo& p : group.processes().Snapshot())
    if (p.slot == c.reserver_slot) return p.generation == c.reserver_generation;
  return false;
}

}  // namespace

Result<Reservation> ReserveSharedController(shm::Group& group, const std::string& trid) {
  auto table = FindControllerTable(group);
  if (!table) return table.error();
  auto guard = group.lock().Lock();
  if (!guard) return guard.error();
  SharedController* free_entry = nullptr;
  SharedController* reclaimable = nullptr;
  SharedController* half_attached = nullptr;
  const uint32_t capacity = ControllerTableCapacity(**table);
  for (uint32_t i = 0; i < capacity; ++i) {
    SharedController& c = (*table)->controllers[i];
    uint32_t state = Load(c.in_use);
    if (state == kEntryPublished && trid == c.trid)
      return Fail(EEXIST, "controller " + trid + " is already attached in group " + std::to_string(group.id()));
    if (state == kEntryReserved && trid == c.trid) {
      if (ReserverAlive(group, c))
        return Fail(EEXIST, "controller " + trid + " is being attached in group " + std::to_string(group.id()) +
                                " by process slot " + std::to_string(c.reserver_slot));
      half_attached = &c;  // its reserver died mid-attach
    }
    if (state == kEntryFree && free_entry == nullptr) free_entry = &c;
    if (state == kEntryRetired && reclaimable == nullptr && !RetiredEntryInUse(group, c)) reclaimable = &c;
  }
  SharedController* chosen = half_attached != nullptr ? half_attached : free_entry != nullptr ? free_entry : reclaimable;
  if (chosen == nullptr)
    return Fail(ENOSPC, "group " + std::to_string(group.id()) + " already has " + std::to_string(capacity) +
                            " controllers, its limit (nvmuxd --max-controllers, at most " +
                            std::to_string(kMaxSharedControllers) +
                            "; detached ones count until every process using them let go)");
  if (half_attached != nullptr)
    NVMUX_LOG(kNotice, "controller %s: reclaiming the entry a dead process (slot %u) reserved and never published",
              trid.c_str(), half_attached->reserver_slot);
  Reservation r;
  CollectStale(*chosen, half_attached != nullptr, r);
  const uint32_t self_slot = group.self_slot();
  const uint32_t self_generation = group.processes().self_generation();
  uint32_t index = static_cast<uint32_t>(chosen - (*table)->controllers);
  uint32_t generation = chosen->attach_generation + 1;
  // Reserved (not yet visible to secondaries), with its reserver, in one go:
  // the entry is zeroed while in_use is not kEntryPublished, so nobody reads it.
  std::memset(static_cast<void*>(chosen), 0, sizeof *chosen);
  chosen->index = index;
  chosen->attach_generation = generation;
  chosen->reserver_slot = self_slot;
  chosen->reserver_generation = self_generation;
  std::strncpy(chosen->trid, trid.c_str(), sizeof(chosen->trid) - 1);
  std::atomic_ref<uint32_t>(chosen->in_use).store(kEntryReserved, std::memory_order_release);
  if (half_attached == nullptr) (*table)->count++;
  r.entry = chosen;
  return r;
}

void PublishSharedController(SharedController& c) {
  std::atomic_ref<uint32_t>(c.in_use).store(kEntryPublished, std::memory_order_release);
}

void ReleaseSharedController(shm::Group& group, SharedController& c) {
  auto guard = group.lock().Lock();
  // Gone first, then unpublished: a process that still finds the entry
  // published already sees it gone.
  if (Load(c.failed) == 0 && Load(c.removed) == 0)
    std::atomic_ref<uint32_t>(c.removed).store(1, std::memory_order_release);
  std::atomic_ref<uint32_t>(c.in_use).store(kEntryRetired, std::memory_order_release);
}

bool SharedControllerGone(SharedController& c, uint32_t attach_generation) {
  return Load(c.in_use) != kEntryPublished || Load(c.attach_generation) != attach_generation ||
         Load(c.removed) != 0 || Load(c.failed) != 0;
}

Result<std::vector<SharedController*>> PublishedControllers(shm::Group& group) {
  auto table = FindControllerTable(group);
  if (!table) return table.error();
  std::vector<SharedController*> out;
  for (uint32_t i = 0; i < kMaxSharedControllers; ++i)
    if (Load((*table)->controllers[i].in_use) == kEntryPublished) out.push_back(&(*table)->controllers[i]);
  return out;
}

Result<SharedController*> FindSharedController(shm::Group& group, const std::string& trid) {
  auto all = PublishedControllers(group);
  if (!all) return all.error();
  std::string names;
  for (SharedController* c : *all) {
    if (trid == c->trid) return c;
    names += (names.empty() ? "" : ", ") + std::string(c->trid);
  }
  return Fail(ENOENT, "controller '" + trid + "' is not attached in group " + std::to_string(group.id()) +
                          (names.empty() ? std::string(" (it has none)") : " (attached: " + names + ")") +
                          ": start nvmuxd with -r '" + trid + "'");
}

}  // namespace nvmux
