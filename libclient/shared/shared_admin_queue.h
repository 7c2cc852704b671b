// SharedAdminQueue: the admin queue of a controller shared by every process
// of a group (DESIGN.md section 5). Any process submits and polls, under the
// controller's robust lock; each command's tracker records the submitting
// process (slot + generation), and a completion polled by another process
// is copied into the submitter's mailbox, so each process runs only its own
// callbacks, when it polls. The group's AERs belong to no process: whoever
// polls their completion fans the event out to every process's mailbox and
// re-arms, so events keep flowing as long as anyone polls.
//
// A holder of the lock that dies is repaired by the next locker: the ring
// positions in shared memory are published again (a pushed command whose
// doorbell was not rung goes to the device; consumed completions' head is
// written). A command whose tracker was taken but never pushed stays
// orphaned until the reaper forgets the dead process.
//
// Thread safety: all methods from any thread of the process (the caller
// serialises per process, as the Controller's admin mutex does; the robust
// lock serialises processes). Callbacks run outside the lock.
// Ownership: borrows the SharedController (segment) and the doorbells.
#pragma once

#include <functional>
#include <vector>

#include "libclient/core/admin_channel.h"
#include "libclient/shared/shared_controller.h"
#include "shm/robust_mutex.h"

namespace nvmux {

class SharedAdminQueue final : public AdminChannel {
 public:
  using EventFn = std::function<void(const spec::Cqe&)>;

  // Registers this process's mailbox. REQUIRES: the controller's lock and
  // admin ring are initialised (the primary did so before publishing).
  SharedAdminQueue(SharedController& ctrl, Doorbells doorbells, uint32_t slot, uint32_t generation);
  ~SharedAdminQueue() override;

  Status Submit(const spec::Sqe& cmd, Done done) override;
  Status Poll() override;
  uint32_t outstanding() const override { return outstanding_; }
  std::vector<uint16_t> SubmittedBefore(int64_t deadline_ns) const override;
  void AbortAll(uint16_t status) override;
  void ResetRing() override;

  // Events (AEN completions) delivered to this process, from Poll().
  void SetEventHandler(EventFn fn) { on_event_ = std::move(fn); }
  // Arms `count` group AERs unless that many are outstanding already.
  Status ArmGroupAers(uint32_t count);
  // The reaper: drops what a dead process had here (its mailbox, its
  // trackers' completions). Returns how many items were released.
  uint64_t ForgetSlot(uint32_t slot);

  shm::RobustLock& lock() { return lock_; }

 private:
  Status SubmitLocked(const spec::Sqe& cmd, uint32_t owner, uint32_t generation, uint32_t cookie);
  void Deliver(uint32_t slot, MailKind kind, uint32_t cookie, const spec::Cqe& cpl);

  SharedController& c_;
  QueueRing ring_;
  shm::RobustLock lock_;
  uint32_t slot_;
  uint32_t generation_;
  std::vector<Done> callbacks_;  // by cookie
  std::vector<uint32_t> free_cookies_;
  uint32_t outstanding_ = 0;
  EventFn on_event_;
};

}  // namespace nvmux
