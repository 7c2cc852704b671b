#include "libclient/shared/shared_registry.h"

#include <atomic>
#include <cstring>

namespace nvmux {
namespace {

uint32_t Load(uint32_t& v) { return std::atomic_ref<uint32_t>(v).load(std::memory_order_acquire); }

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
  for (uint32_t i = 0; i < kMaxSharedControllers; ++i) {
    SharedController& c = (*table)->controllers[i];
    if (Load(c.in_use) != 0 && trid == c.trid)
      return Fail(EEXIST, "controller " + trid + " is already attached in group " + std::to_string(group.id()));
    if (Load(c.in_use) == 0 && free_entry == nullptr) free_entry = &c;
  }
  if (free_entry == nullptr)
    return Fail(ENOSPC, "group " + std::to_string(group.id()) + " already has " +
                            std::to_string(kMaxSharedControllers) + " controllers (the most a group holds)");
  uint32_t index = static_cast<uint32_t>(free_entry - (*table)->controllers);
  std::memset(static_cast<void*>(free_entry), 0, sizeof *free_entry);
  free_entry->index = index;
  free_entry->in_use = 2;  // reserved: not yet visible to secondaries
  std::strncpy(free_entry->trid, trid.c_str(), sizeof(free_entry->trid) - 1);
  (*table)->count++;
  return free_entry;
}

void PublishSharedController(SharedController& c) {
  std::atomic_ref<uint32_t>(c.in_use).store(1, std::memory_order_release);
}

void ReleaseSharedController(shm::Group& group, SharedController& c) {
  auto guard = group.lock().Lock();
  std::atomic_ref<uint32_t>(c.in_use).store(0, std::memory_order_release);
}

Result<std::vector<SharedController*>> PublishedControllers(shm::Group& group) {
  auto table = FindControllerTable(group, false);
  if (!table) return table.error();
  std::vector<SharedController*> out;
  for (uint32_t i = 0; i < kMaxSharedControllers; ++i)
    if (Load((*table)->controllers[i].in_use) == 1) out.push_back(&(*table)->controllers[i]);
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
