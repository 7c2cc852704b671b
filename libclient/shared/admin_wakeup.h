// AdminWakeups: each process of a group gets its own wakeup for admin
// completions, so that no process steals another's.
//
// The admin queue's interrupt (MSI-X vector 0) is one eventfd for the whole
// group: every process that waits for admin completions blocks on it (the
// primary on the registered file, the others on duplicates), and whoever
// drains it first polls the shared admin queue and routes every completion
// to its submitter's mailbox (shared_admin_queue.h). The others' reads then
// find the counter empty: without more, a waiter whose completion another
// process routed sleeps on until its slice ends.
//
// So a waiter also blocks on an eventfd of its own, whose number (in its
// process) it records in its Mailbox (wakeup_fd, plus one). A router that
// put a completion or an event into another process's mailbox writes to
// that process's wakeup eventfd, after releasing the lock: the mailbox
// entry is visible before the eventfd fires, and a waiter drains its
// eventfd before it polls its mailbox (Controller::ArmAdminEvent), so no
// wakeup is lost. The router takes a duplicate of the waiter's eventfd
// with pidfd_getfd once (the way fd_holders.h takes vector fds: same user
// or CAP_SYS_PTRACE) and keeps it while the record stays the same.
//
// A waiter clears its record before closing the eventfd; the router
// accepts a duplicate only if, after taking it, the record still names
// that number for that process generation (so the file taken was the
// eventfd, not a later file at a reused number). A dead waiter's mailbox
// is cleared by the reaper (SharedAdminQueue::ForgetSlot), which clears
// the record; routers then drop their duplicate at their next Poll.
//
// Thread safety: an AdminWakeups belongs to one SharedAdminQueue and is
// used under its caller's per-process serialisation (Controller's admin
// mutex). RecordAdminWakeup/ForgetAdminWakeup: REQUIRES the controller's
// lock (Record) or nothing (Forget: one atomic exchange by the owner).
#pragma once

#include <cstdint>
#include <vector>

#include "libclient/shared/shared_controller.h"
#include "shm/base/unique_fd.h"
#include "shm/process_table.h"

namespace nvmux {

// The owner (`slot`, `generation`) records `fd` (its number here) as its
// admin wakeup. Does nothing when the mailbox is not the owner's.
// REQUIRES: the controller's lock.
void RecordAdminWakeup(SharedController& c, uint32_t slot, uint32_t generation, int fd);
// The owner withdraws its record (before closing the fd).
void ForgetAdminWakeup(SharedController& c, uint32_t slot, uint32_t generation, int fd);

// A router that routed wakeup number `seq` (Mailbox::wakeups_owed) into
// mailbox `slot` of `generation` has written its eventfd, or had none to
// write: raises the mailbox's wakeups_settled to `seq` (never lowers it).
void SettleAdminWakeup(SharedController& c, uint32_t slot, uint32_t generation, uint32_t seq);
// The owner's view: the last wakeup number settled for its mailbox.
uint32_t SettledAdminWakeup(const SharedController& c, uint32_t slot);

// A waiter to wake, as a router saw its mailbox under the lock.
struct WakeupTarget {
  uint32_t slot;
  uint32_t generation;
  int32_t fd;  // the number in the waiter's process
  bool operator==(const WakeupTarget&) const = default;
};

// A router's side: duplicates of other processes' wakeup eventfds, by slot.
class AdminWakeups {
 public:
  AdminWakeups(SharedController& c, const shm::ProcessTable& processes) : c_(c), processes_(processes) {}
  // Writes to each target's eventfd, taking a duplicate first when the
  // cached one is not for that record. A target that cannot be taken
  // (exited, no ptrace access, record withdrawn meanwhile) is skipped:
  // its waiter's slice bounds its sleep. Never fails.
  void Wake(const std::vector<WakeupTarget>& targets);
  // Closes duplicates whose records changed or were cleared (the waiter
  // left, died and was reaped, or re-registered). REQUIRES: the lock.
  void Prune();
  uint64_t signalled() const { return signalled_; }
  size_t held() const;

 private:
  struct Held {
    WakeupTarget target{};
    UniqueFd fd;
  };
  SharedController& c_;
  const shm::ProcessTable& processes_;
  std::vector<Held> held_ = std::vector<Held>(shm::kMaxProcesses);
  uint64_t signalled_ = 0;
};

}  // namespace nvmux
