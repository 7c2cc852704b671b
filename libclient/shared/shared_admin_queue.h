// SharedAdminQueue: the admin queue of a controller shared by every process
// of a group (DESIGN.md section 5). Any process submits and polls, under the
// controller's robust lock; each command's tracker records the submitting
// process (slot + generation), and every completion is routed to the
// submitter's mailbox, so each process runs only its own callbacks, when it
// polls. The group's AERs belong to no process: whoever polls their
// completion fans the event out to every process's mailbox, and whoever
// polls keeps `aer_target` AERs in flight.
//
// Invariants (under the lock, restored by the next locker after a holder
// died; see ARCHITECTURE.md "Invariants of the shared admin queue"):
//  - A tracker is in flight iff its command is on the ring or its
//    completion has not been routed yet. Submitting records its intent
//    (submit_cid, submit_tail) before taking the tracker; if the holder died
//    before the SQ tail moved, the next locker frees the tracker, else the
//    command stands (its doorbell is written again).
//  - A completion leaves the CQ only after it was routed and its tracker
//    freed: polling records intent (poll_pending, poll_position), routes,
//    frees, then advances the head and phase in one atomic store
//    (RingIndices::cq). The next locker routes the entry at the recorded
//    position again if the head did not move. Routing again is harmless:
//    a completion goes to the slot of its cookie (rewritten, not added), an
//    event carries its number and a mailbox that has it skips it.
//  - A process has at most kMaxSharedAdminEntries commands in flight (its
//    cookies), so its completion slots never overflow; only events can be
//    dropped (a mailbox holds kMailboxEvents), and are counted
//    (Mailbox::dropped, SharedController::events_dropped).
//  - Group AERs in flight = trackers owned by kAerOwner (aers_outstanding is
//    a copy for status). Each Poll tops them up to aer_target, so an AER
//    whose completion was polled in any number, whose re-arm failed (ring
//    full) or whose poller died is re-armed by a later poll. An AER that
//    completes with an error lowers the target by one (the device refuses).
//  - A completion whose submitter is gone (its mailbox generation differs,
//    or ForgetSlot/the destructor cleared the tracker's generation) frees
//    its tracker and is counted as orphaned.
// Every step has a crash-test point (NVMUX_DIE_AT=admin.submit.*,
// admin.poll.*, admin.rearm.*).
//
// Thread safety: all methods from any thread of the process (the caller
// serialises per process, as the Controller's admin mutex does; the robust
// lock serialises processes). Callbacks run outside the lock.
// Ownership: borrows the SharedController (segment) and the doorbells.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "libclient/core/admin_channel.h"
#include "libclient/shared/admin_wakeup.h"
#include "libclient/shared/shared_controller.h"
#include "shm/robust_mutex.h"

namespace nvmux {

class SharedAdminQueue final : public AdminChannel {
 public:
  using EventFn = std::function<void(const spec::Cqe&)>;

  // Registers this process's mailbox. REQUIRES: the controller's lock and
  // admin ring are initialised (the primary did so before publishing).
  // Errors: EBUSY when this process (slot and generation) has the
  // controller's admin queue open already (one process attaching the same
  // shared controller twice: both objects would share cookies); the lock's
  // errors.
  static Result<std::unique_ptr<SharedAdminQueue>> Open(SharedController& ctrl, Doorbells doorbells, uint32_t slot,
                                                        uint32_t generation);
  ~SharedAdminQueue() override;

  Status Submit(const spec::Sqe& cmd, Done done) override;
  Status Poll() override;
  uint32_t outstanding() const override { return outstanding_; }
  std::vector<uint16_t> SubmittedBefore(int64_t deadline_ns) const override;
  void AbortAll(uint16_t status) override;
  void ResetRing() override;

  // Events (AEN completions) delivered to this process, from Poll().
  void SetEventHandler(EventFn fn) { on_event_ = std::move(fn); }
  // Keeps `count` group AERs in flight from now on (this call and every
  // later Poll of any process top them up). Errors: EAGAIN when fewer could
  // be armed now (the ring is full; later polls arm the rest).
  Status ArmGroupAers(uint32_t count);
  // The reaper: drops what a dead process had here (its mailbox; its
  // trackers' completions will be dropped and the trackers freed when they
  // arrive). Returns how many items were released.
  uint64_t ForgetSlot(uint32_t slot);

  // Per-process admin wakeups (admin_wakeup.h): from now on, completions
  // and events this process routes into another process's mailbox wake
  // that process's recorded eventfd (duplicates taken through `processes`,
  // which must outlive this queue). Without it nothing is signalled.
  void EnableWakeups(const shm::ProcessTable& processes);
  // Records `fd` (-1: withdraws the record) as this process's own wakeup,
  // signalled by whoever routes into our mailbox. The fd stays open until
  // the record is withdrawn. Errors: the lock's.
  Status SetWakeupFd(int fd);
  // Wakeups this process signalled; other processes' eventfds it holds.
  uint64_t wakeups_signalled() const { return wakeups_ ? wakeups_->signalled() : 0; }
  size_t wakeups_held() const { return wakeups_ ? wakeups_->held() : 0; }
  // The last wakeup number settled for our mailbox (Mailbox::wakeups_settled),
  // and, inside a completion's callback, the number it was routed with (0:
  // we routed it ourselves). A completion whose number was settled before a
  // sleep ran out should have ended that sleep.
  uint32_t wakeups_settled() const;
  uint32_t delivering_wake_seq() const { return delivering_wake_seq_; }

  // The controller's lock. Lockers outside this class must not change the
  // admin queue's fields (trackers, ring, mailboxes, intents).
  shm::RobustLock& lock() { return lock_; }

 private:
  SharedAdminQueue(SharedController& ctrl, Doorbells doorbells, uint32_t slot, uint32_t generation);
  // Lock() then Settle(): every locker first finishes or rolls back the
  // step a dead holder recorded (also when another program's repair, like
  // nvmux-manage's, marked the lock consistent without doing it).
  Result<shm::RobustLock::Guard> Lock();
  void Settle();
  Status SubmitLocked(const spec::Sqe& cmd, uint32_t owner, uint32_t generation, uint32_t cookie);
  // Routes completion `c` (at the CQ head) and frees its tracker. `again`:
  // a repair repeating a dead poller's step.
  void Route(const spec::Cqe& c, bool again);
  void FanOut(SharedAdminTracker& t, const spec::Cqe& c);
  // Arms group AERs up to aer_target; stops quietly when the ring is full.
  void TopUpAers();
  // Notes that mailbox `slot` got something (under the lock): its owner is
  // woken once the lock is released (WakeRouted), if it recorded a wakeup.
  // Returns the wakeup's number (Mailbox::wakeups_owed; 0 for our own
  // mailbox or without wakeups).
  uint32_t NoteRouted(uint32_t slot);
  // Signals the noted waiters, then settles their numbers. REQUIRES: the
  // lock is not held.
  void WakeRouted();

  SharedController& c_;
  QueueRing ring_;
  shm::RobustLock lock_;
  uint32_t slot_;
  uint32_t generation_;
  std::vector<Done> callbacks_;  // by cookie
  std::vector<uint32_t> free_cookies_;
  uint32_t outstanding_ = 0;
  EventFn on_event_;
  std::unique_ptr<AdminWakeups> wakeups_;
  std::vector<WakeupTarget> to_wake_;
  struct Owed {
    uint32_t slot;
    uint32_t generation;
    uint32_t seq;
  };
  std::vector<Owed> to_settle_;
  uint32_t delivering_wake_seq_ = 0;
  int wakeup_fd_ = -1;  // ours, as recorded
};

}  // namespace nvmux
