#include "libclient/shared/shared_registry.h"

#include <atomic>
#include <cstring>

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

Result<SharedControllerTable*> FindControllerTable(shm::Group& group, bool create) {
  auto guard = group.lock().Lock();
  if (!guard) return guard.error();
  auto found = group.segment().Find<SharedControllerTable>(*guard, kSharedControllersName);
  if (found || !create) {
    if (!found)
      return Fail(ENOENT, "group " + std::to_string(group.id()) + " has no controllers: start nvmuxd -i " +
                              std::to_string(group.id()) + " with -r TRID");
    return *found;
  }
  return group.segment().Construct<SharedControllerTable>(*guard, kSharedControllersName);
}

Result<SharedController*> ReserveSharedController(shm::Group& group, const std::string& trid) {
  auto table = FindControllerTable(group, true);
  if (!table) return table.error();
  auto guard = group.lock().Lock();
  if (!guard) return guard.error();
  SharedController* free_entry = nullptr;
  SharedController* reclaimable = nullptr;
  for (uint32_t i = 0; i < kMaxSharedControllers; ++i) {
    SharedController& c = (*table)->controllers[i];
    uint32_t state = Load(c.in_use);
    if ((state == kEntryPublished || state == kEntryReserved) && trid == c.trid)
      return Fail(EEXIST, "controller " + trid + " is already attached in group " + std::to_string(group.id()));
    if (state == kEntryFree && free_entry == nullptr) free_entry = &c;
    if (state == kEntryRetired && reclaimable == nullptr && !RetiredEntryInUse(group, c)) reclaimable = &c;
  }
  if (free_entry == nullptr) free_entry = reclaimable;
  if (free_entry == nullptr)
    return Fail(ENOSPC, "group " + std::to_string(group.id()) + " already has " +
                            std::to_string(kMaxSharedControllers) + " controllers (the most a group holds; "
                            "detached ones count until every process using them let go)");
  uint32_t index = static_cast<uint32_t>(free_entry - (*table)->controllers);
  uint32_t generation = free_entry->attach_generation + 1;
  std::memset(static_cast<void*>(free_entry), 0, sizeof *free_entry);
  free_entry->index = index;
  free_entry->attach_generation = generation;
  free_entry->in_use = kEntryReserved;  // not yet visible to secondaries
  std::strncpy(free_entry->trid, trid.c_str(), sizeof(free_entry->trid) - 1);
  (*table)->count++;
  return free_entry;
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
  auto table = FindControllerTable(group, false);
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
