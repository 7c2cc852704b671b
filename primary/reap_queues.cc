#include "primary/reap_queues.h"

#include <atomic>
#include <utility>
#include <vector>

#include "libclient/core/controller_state.h"
#include "libclient/core/io_queue.h"
#include "libclient/shared/shared_admin_queue.h"
#include "libclient/shared/shared_registry.h"
#include "nvmux/env.h"
#include "nvmux/spec/status.h"
#include "shm/base/log.h"
#include "shm/base/scope_guard.h"
#include "shm/base/test_point.h"
#include "shm/group.h"

namespace nvmux {
namespace {

constexpr uint32_t State(QidState s) { return static_cast<uint32_t>(s); }

// Sends one delete; true when the device confirmed the queue is gone: it
// completed the delete, or answered "Invalid Queue Identifier" (an earlier
// reaper's delete did complete, or the queue never reached the device).
bool DeleteConfirmed(Controller& ctrlr, const spec::Sqe& cmd, uint16_t qid, const char* what) {
  auto cpl = ctrlr.SyncAdmin(cmd);
  if (cpl) return true;
  if (cpl.error().code == EIO) {
    spec::Cqe last = ctrlr.LastAdminCompletion();
    if (last.sct() == spec::sct::kCommandSpecific && last.sc() == spec::sc::kInvalidQueueIdentifier) return true;
  }
  NVMUX_LOG(kWarning, "reaper: deleting I/O %s %u: %s", what, qid, cpl.error().message.c_str());
  return false;
}

// Whether a queue id of (dead) `slot` is quarantined on any controller of
// the group (true when the table cannot be read: keep the memory).
bool SlotHasQuarantinedQueues(shm::Group& group, uint32_t slot) {
  auto table = FindControllerTable(group);
  if (!table) return true;
  for (SharedController& c : (*table)->controllers) {
    if (std::atomic_ref<uint32_t>(c.in_use).load(std::memory_order_acquire) == kEntryFree) continue;
    for (uint32_t q = 1; q < kMaxSharedQids; ++q) {
      SharedQid& id = c.qids[q];
      if (std::atomic_ref<uint32_t>(id.state).load(std::memory_order_acquire) == State(QidState::kQuarantined) &&
          std::atomic_ref<uint32_t>(id.owner_slot).load(std::memory_order_relaxed) == slot)
        return true;
    }
  }
  return false;
}

// Frees id `q` and releases whatever quarantined rings it had; the device
// confirmed the queue is gone. The last quarantined id of its owner releases
// the owner's quarantined data buffers too.
uint64_t FreeQid(ControllerState& s, uint16_t q) {
  SharedQid id;
  {
    auto guard = s.shared_admin->lock().Lock();
    if (!guard) return 0;
    id = s.shared->qids[q];
    s.shared->qids[q].on_device = 0;
  }
  // A hybrid owner killed while spinning leaves its vector (= q) masked in
  // the MSI-X table; the queue is gone, so unmasking sends nothing, and the
  // id's next owner (perhaps one that cannot map the table) is woken.
  if (volatile uint32_t* control = s.transport->VectorControl(q); control != nullptr) SetVectorMask(control, false);
  NVMUX_TEST_POINT("reap.queue.deleted");
  // Quarantined rings first, then the id: a reaper killed in between finds
  // the id still kDeleting/kQuarantined, off the device, and finishes.
  for (uint64_t iova : {id.sq_iova, id.cq_iova})
    if (iova != 0) (void)s.env.group().dma().ReleaseQuarantined(iova);
  {
    auto guard = s.shared_admin->lock().Lock();
    if (!guard) return 0;
    s.shared->qids[q] = SharedQid{};
  }
  NVMUX_TEST_POINT("reap.freed");
  // The owner's data buffers, kept while any of its queues was quarantined.
  if (!SlotHasQuarantinedQueues(s.env.group(), id.owner_slot)) {
    auto released = s.env.group().dma().ReleaseQuarantinedOf(id.owner_slot);
    if (released && *released > 0)
      NVMUX_LOG(kNotice, "reaper: released %llu quarantined DMA allocation(s) of dead slot %u",
                static_cast<unsigned long long>(*released), id.owner_slot);
  }
  return 1;
}

// The device work for one id in kDeleting or kQuarantined; returns what was
// released (1 when the id was freed).
uint64_t FinishDeletion(Controller& ctrlr, ControllerState& s, uint16_t q, uint32_t slot) {
  SharedQid id;
  {
    auto guard = s.shared_admin->lock().Lock();
    if (!guard) return 0;
    id = s.shared->qids[q];
  }
  bool gone = id.on_device == 0;
  if (!gone) {
    IoQueueDeleteCommands d = DeleteIoQueueCommands(q);
    // The CQ only once its SQ is gone (deleting a CQ with an SQ is refused).
    gone = DeleteConfirmed(ctrlr, d.delete_sq, q, "submission queue") &&
           DeleteConfirmed(ctrlr, d.delete_cq, q, "completion queue");
  }
  if (gone) return FreeQid(s, q);
  if (id.state == State(QidState::kQuarantined)) return 0;  // a retry that failed again
  // The device may still use the queue: keep its rings, the data buffers
  // its commands may still write (any of the dead slot's memory) and its id
  // away from everyone. Records first (the reap frees the dead slot's
  // memory right after this hook), then the id's state.
  for (uint64_t iova : {id.sq_iova, id.cq_iova}) {
    if (iova == 0) continue;
    auto kept = s.env.group().dma().Quarantine(iova, slot);
    if (!kept || !*kept)
      NVMUX_LOG(kError, "reaper: the rings of I/O queue %u (IOVA 0x%llx) are not DMA memory of slot %u: %s", q,
                static_cast<unsigned long long>(iova), slot,
                kept ? "not found" : kept.error().message.c_str());
  }
  auto rest = s.env.group().dma().QuarantineAllOf(slot);
  if (!rest)
    NVMUX_LOG(kError, "reaper: cannot quarantine the memory of dead slot %u: %s", slot, rest.error().message.c_str());
  auto guard = s.shared_admin->lock().Lock();
  if (guard) s.shared->qids[q].state = State(QidState::kQuarantined);
  NVMUX_LOG(kWarning, "reaper: the device did not confirm deleting I/O queue %u of dead slot %u on %s: the id and "
            "its rings stay quarantined until a later delete succeeds or the controller is reset",
            q, slot, s.trid.ToString().c_str());
  return 0;
}

}  // namespace

uint64_t DeleteDeadQueues(Controller& ctrlr, uint32_t slot) {
  ControllerState& s = ctrlr.state();
  if (s.shared == nullptr || s.shared_admin == nullptr) return 0;
  std::lock_guard<std::recursive_mutex> admin(s.admin_mutex);
  ++s.defer_events;
  ScopeGuard undefer([&s] { --s.defer_events; });
  std::vector<uint16_t> qids;
  {
    auto guard = s.shared_admin->lock().Lock();
    if (!guard) return 0;
    for (uint32_t q = 1; q < kMaxSharedQids; ++q) {
      SharedQid& id = s.shared->qids[q];
      if (id.owner_slot != slot) continue;
      // kDeleting: a reaper that died left it (this slot is still being reaped).
      if (id.state == State(QidState::kInUse) || id.state == State(QidState::kDeleting)) {
        id.state = State(QidState::kDeleting);
        qids.push_back(static_cast<uint16_t>(q));
      }
    }
  }
  if (!qids.empty()) NVMUX_TEST_POINT("reap.intent.recorded");
  uint64_t released = 0, freed = 0;
  for (uint16_t q : qids) freed += FinishDeletion(ctrlr, s, q, slot);
  released += freed;
  released += s.shared_admin->ForgetSlot(slot);
  if (!qids.empty())
    NVMUX_LOG(kNotice, "reaper: deleted %llu of %zu I/O queue(s) of dead slot %u on %s",
              static_cast<unsigned long long>(freed), qids.size(), slot, s.trid.ToString().c_str());
  return released;
}

uint64_t RetryQuarantinedQueues(Controller& ctrlr) {
  ControllerState& s = ctrlr.state();
  if (s.shared == nullptr || s.shared_admin == nullptr || s.failed) return 0;
  std::lock_guard<std::recursive_mutex> admin(s.admin_mutex);
  ++s.defer_events;
  ScopeGuard undefer([&s] { --s.defer_events; });
  std::vector<std::pair<uint16_t, uint32_t>> quarantined;
  {
    auto guard = s.shared_admin->lock().Lock();
    if (!guard) return 0;
    for (uint32_t q = 1; q < kMaxSharedQids; ++q)
      if (s.shared->qids[q].state == State(QidState::kQuarantined))
        quarantined.emplace_back(static_cast<uint16_t>(q), s.shared->qids[q].owner_slot);
  }
  uint64_t freed = 0;
  for (auto [q, slot] : quarantined) freed += FinishDeletion(ctrlr, s, q, slot);
  if (freed != 0)
    NVMUX_LOG(kNotice, "reaper: the device confirmed deleting %llu quarantined I/O queue(s) on %s; ids and rings freed",
              static_cast<unsigned long long>(freed), s.trid.ToString().c_str());
  return freed;
}

uint64_t ReleaseQuarantinedAfterReset(Controller& ctrlr) {
  ControllerState& s = ctrlr.state();
  if (s.shared == nullptr || s.shared_admin == nullptr) return 0;
  std::vector<uint16_t> quarantined;
  {
    auto guard = s.shared_admin->lock().Lock();
    if (!guard) return 0;
    for (uint32_t q = 1; q < kMaxSharedQids; ++q)
      if (s.shared->qids[q].state == State(QidState::kQuarantined)) quarantined.push_back(static_cast<uint16_t>(q));
  }
  uint64_t freed = 0;
  for (uint16_t q : quarantined) freed += FreeQid(s, q);
  if (freed != 0)
    NVMUX_LOG(kNotice, "controller %s reset: freed %llu quarantined I/O queue id(s) and their rings",
              s.trid.ToString().c_str(), static_cast<unsigned long long>(freed));
  return freed;
}

}  // namespace nvmux
