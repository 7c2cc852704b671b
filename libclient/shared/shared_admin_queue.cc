#include "libclient/shared/shared_admin_queue.h"

#include <algorithm>
#include <atomic>

#include "libclient/shared/fd_holders.h"
#include "shm/base/clock.h"
#include "shm/base/log.h"
#include "shm/base/test_point.h"

namespace nvmux {
namespace {

constexpr auto kFree = static_cast<uint32_t>(TrackerState::kFree);
constexpr auto kInFlight = static_cast<uint32_t>(TrackerState::kInFlight);

uint32_t Ref(uint32_t& v) { return std::atomic_ref<uint32_t>(v).load(std::memory_order_acquire); }

uint32_t CountAers(const SharedController& c) {
  uint32_t n = 0;
  for (uint32_t cid = 0; cid < c.admin_entries; ++cid)
    if (c.trackers[cid].state == kInFlight && c.trackers[cid].owner_slot == kAerOwner) ++n;
  return n;
}

}  // namespace

SharedAdminQueue::SharedAdminQueue(SharedController& ctrl, Doorbells doorbells, uint32_t slot, uint32_t generation)
    : c_(ctrl),
      ring_(reinterpret_cast<spec::Sqe*>(ctrl.admin_sq_iova), reinterpret_cast<spec::Cqe*>(ctrl.admin_cq_iova),
            ctrl.admin_entries, doorbells, &ctrl.admin_ring),
      lock_(ctrl.lock,
            [this]() -> Status {
              // A process died holding the lock: finish or roll back its
              // step, and publish the positions it may have advanced
              // without ringing.
              Settle();
              ring_.Resync();
              return Ok();
            }),
      slot_(slot),
      generation_(generation),
      callbacks_(kMaxSharedAdminEntries) {
  for (uint32_t i = kMaxSharedAdminEntries; i-- > 0;) free_cookies_.push_back(i);
}

Result<std::unique_ptr<SharedAdminQueue>> SharedAdminQueue::Open(SharedController& ctrl, Doorbells doorbells,
                                                                 uint32_t slot, uint32_t generation) {
  std::unique_ptr<SharedAdminQueue> q(new SharedAdminQueue(ctrl, doorbells, slot, generation));
  auto guard = q->Lock();
  if (!guard) {
    q->generation_ = 0;  // the destructor must not touch a mailbox we did not register
    return Fail(guard.error().code, std::string("opening the shared admin queue of ") + ctrl.trid + ": " +
                                        guard.error().message);
  }
  Mailbox& m = ctrl.mailboxes[slot];
  if (m.generation == generation) {
    q->generation_ = 0;
    return Fail(EBUSY, std::string("controller ") + ctrl.trid +
                           " is attached already in this process (process slot " + std::to_string(slot) +
                           "); detach it first or use the Controller you have");
  }
  // A fresh mailbox: nothing of a previous owner of the slot may reach us.
  m = Mailbox{};
  m.generation = generation;
  return q;
}

SharedAdminQueue::~SharedAdminQueue() {
  if (generation_ == 0) return;
  auto guard = Lock();
  if (!guard) return;
  std::atomic_ref<uint32_t>(c_.mailboxes[slot_].wakeup_fd).store(0, std::memory_order_seq_cst);
  c_.mailboxes[slot_].generation = 0;
  ForgetFdHolder(c_, slot_);
  // Our in-flight commands' completions now have nowhere to go: their
  // trackers are freed (and counted orphaned) when they arrive.
  for (uint32_t cid = 0; cid < c_.admin_entries; ++cid) {
    SharedAdminTracker& t = c_.trackers[cid];
    if (t.state == kInFlight && t.owner_slot == slot_) t.owner_generation = 0;
  }
}

Result<shm::RobustLock::Guard> SharedAdminQueue::Lock() {
  auto guard = lock_.Lock();
  if (guard) Settle();
  return guard;
}

void SharedAdminQueue::Settle() {
  if (c_.submit_cid == 0 && c_.poll_pending == 0) return;
  if (c_.submit_cid != 0) {
    const uint32_t cid = c_.submit_cid - 1;
    if (ring_.sq_tail() == c_.submit_tail && cid < c_.admin_entries) {
      // Died before its entry became part of the ring: nothing will ever
      // complete it.
      c_.trackers[cid].state = kFree;
      NVMUX_LOG(kNotice, "shared admin queue: released command id %u of a process that died submitting it", cid);
    }
    // Else the entry is on the ring; Resync (or the next RingSq) rings it.
    c_.submit_cid = 0;
  }
  if (c_.poll_pending != 0) {
    if (ring_.cq_position() == c_.poll_position) {
      // Died routing the completion at the head: route it again (each step
      // is idempotent), then let it go.
      if (auto c = ring_.Peek()) {
        Route(*c, true);
        ring_.Consume(*c);
      }
    }
    c_.poll_pending = 0;
  }
  c_.aers_outstanding = CountAers(c_);
  // Positions may have moved without their doorbell (a pushed command, a
  // consumed completion).
  ring_.Resync();
}

Status SharedAdminQueue::SubmitLocked(const spec::Sqe& cmd, uint32_t owner, uint32_t generation, uint32_t cookie) {
  if (ring_.Full()) return Fail(EAGAIN, "shared admin queue full");
  uint32_t cid = 0;
  while (cid < c_.admin_entries && c_.trackers[cid].state != kFree) ++cid;
  if (cid == c_.admin_entries)
    return Fail(EAGAIN, "shared admin queue full (" + std::to_string(c_.admin_entries) + " commands outstanding)");
  // Intent first (which tracker, and the tail before our entry), then the
  // tracker, the entry, the tail, the doorbell.
  c_.submit_tail = ring_.sq_tail();
  c_.submit_cid = cid + 1;
  c_.trackers[cid] = SharedAdminTracker{kInFlight, owner, generation, cookie, MonotonicNanos()};
  NVMUX_TEST_POINT("admin.submit.tracker_taken");
  spec::Sqe c = cmd;
  c.cid = static_cast<uint16_t>(cid);
  if (Status staged = ring_.Stage(c); !staged) {
    c_.trackers[cid].state = kFree;
    c_.submit_cid = 0;
    return staged;
  }
  NVMUX_TEST_POINT("admin.submit.sqe_written");
  ring_.CommitStaged();
  NVMUX_TEST_POINT("admin.submit.pushed");
  ring_.RingSq();
  c_.submit_cid = 0;
  c_.admin_submitted++;
  return Ok();
}

Status SharedAdminQueue::Submit(const spec::Sqe& cmd, Done done) {
  if (Ref(c_.failed)) return Fail(ENXIO, std::string("controller ") + c_.trid + " has failed");
  if (free_cookies_.empty()) return Fail(EAGAIN, "admin queue full for this process");
  auto guard = Lock();
  if (!guard) return guard.error();
  uint32_t cookie = free_cookies_.back();
  NVMUX_TRY(SubmitLocked(cmd, slot_, generation_, cookie));
  free_cookies_.pop_back();
  callbacks_[cookie] = std::move(done);
  outstanding_++;
  return Ok();
}

void SharedAdminQueue::FanOut(SharedAdminTracker& t, const spec::Cqe& c) {
  // The event's number lives in its tracker (AER trackers have no cookie),
  // so routing it again after a death reuses it. Counter first: a death in
  // between only skips a number.
  if (t.cookie == 0) {
    if (++c_.event_seq == 0) c_.event_seq = 1;
    t.cookie = c_.event_seq;
  }
  const uint32_t seq = t.cookie;
  for (uint32_t s = 0; s < shm::kMaxProcesses; ++s) {
    Mailbox& m = c_.mailboxes[s];
    if (m.generation == 0 || m.last_event_seq == seq) continue;
    // Queued by a router that died before recording it.
    bool queued = m.tail != m.head && m.events[(m.tail - 1) % kMailboxEvents].seq == seq;
    if (!queued && m.tail - m.head >= kMailboxEvents) {
      m.dropped++;
      c_.events_dropped++;
      NVMUX_LOG(kWarning, "admin mailbox of process slot %u is full (%u events waiting); an event was dropped", s,
                kMailboxEvents);
    } else if (!queued) {
      m.events[m.tail % kMailboxEvents] = MailEvent{seq, 0, c};
      m.tail++;
      NoteRouted(s);
    }
    m.last_event_seq = seq;
    NVMUX_TEST_POINT("admin.poll.deliver");
  }
}

void SharedAdminQueue::Route(const spec::Cqe& c, bool again) {
  if (c.cid >= c_.admin_entries || c_.trackers[c.cid].state == kFree) {
    // Again: the dead poller freed it already.
    if (!again) NVMUX_LOG(kWarning, "admin completion for command id %u, which is not outstanding", c.cid);
    return;
  }
  SharedAdminTracker& t = c_.trackers[c.cid];
  bool aer_failed = false;
  bool orphan = false;
  if (t.owner_slot == kAerOwner) {
    if (c.sct() == 0 && c.sc() == 0) {
      FanOut(t, c);
    } else {
      aer_failed = true;
    }
  } else if (t.owner_slot < shm::kMaxProcesses && t.owner_generation != 0 && t.cookie < kMaxSharedAdminEntries &&
             c_.mailboxes[t.owner_slot].generation == t.owner_generation) {
    MailCompletion& slot = c_.mailboxes[t.owner_slot].completions[t.cookie];
    slot.cpl = c;
    slot.order = ++c_.routed_order;
    slot.wake_seq = NoteRouted(t.owner_slot);
    slot.ready = 1;
  } else {
    orphan = true;
  }
  NVMUX_TEST_POINT("admin.poll.routed");
  const uint32_t owner = t.owner_slot;
  t.state = kFree;
  NVMUX_TEST_POINT("admin.poll.freed");
  // Counters after the free: a repair sees the tracker free and skips them.
  c_.admin_completed++;
  if (owner == kAerOwner && !aer_failed) c_.aens++;
  if (owner != kAerOwner && owner != slot_ && !orphan) c_.admin_routed++;
  if (orphan) c_.orphaned++;
  if (aer_failed) {
    // Aborted by a reset, or Asynchronous Event Request Limit Exceeded:
    // the device takes one fewer (ArmGroupAers sets the target again).
    if (c_.aer_target > 0) c_.aer_target--;
    NVMUX_LOG(kNotice, "group AER completed with status %u/0x%02x; not re-armed (%u kept in flight)", c.sct(), c.sc(),
              c_.aer_target);
  }
}

void SharedAdminQueue::EnableWakeups(const shm::ProcessTable& processes) {
  wakeups_ = std::make_unique<AdminWakeups>(c_, processes);
}

Status SharedAdminQueue::SetWakeupFd(int fd) {
  auto guard = Lock();
  if (!guard) return guard.error();
  if (wakeup_fd_ >= 0) ForgetAdminWakeup(c_, slot_, generation_, wakeup_fd_);
  wakeup_fd_ = fd;
  if (fd >= 0) RecordAdminWakeup(c_, slot_, generation_, fd);
  return Ok();
}

uint32_t SharedAdminQueue::NoteRouted(uint32_t slot) {
  if (!wakeups_ || slot == slot_ || slot >= shm::kMaxProcesses) return 0;
  Mailbox& m = c_.mailboxes[slot];
  if (++m.wakeups_owed == 0) ++m.wakeups_owed;  // 0 means "routed by the owner"
  const uint32_t seq = m.wakeups_owed;
  const uint32_t fd = std::atomic_ref<const uint32_t>(m.wakeup_fd).load(std::memory_order_seq_cst);
  if (fd == 0) {
    SettleAdminWakeup(c_, slot, m.generation, seq);  // nobody to wake
    return seq;
  }
  const WakeupTarget t{slot, m.generation, static_cast<int32_t>(fd - 1)};
  if (std::find(to_wake_.begin(), to_wake_.end(), t) == to_wake_.end()) to_wake_.push_back(t);
  to_settle_.push_back({slot, m.generation, seq});  // settling only raises: repeats are harmless
  return seq;
}

void SharedAdminQueue::WakeRouted() {
  if (to_wake_.empty() && to_settle_.empty()) return;
  std::vector<WakeupTarget> targets;
  targets.swap(to_wake_);
  std::vector<Owed> owed;
  owed.swap(to_settle_);
  wakeups_->Wake(targets);
  for (const Owed& o : owed) SettleAdminWakeup(c_, o.slot, o.generation, o.seq);
}

uint32_t SharedAdminQueue::wakeups_settled() const { return SettledAdminWakeup(c_, slot_); }

void SharedAdminQueue::TopUpAers() {
  uint32_t n = CountAers(c_);
  // Nothing more goes to a failed controller.
  while (n < c_.aer_target && Ref(c_.failed) == 0) {
    NVMUX_TEST_POINT("admin.rearm.submit");
    spec::Sqe aer;
    aer.opc = spec::admin::kAsyncEventRequest;
    // Ring full: a later poll arms it.
    if (!SubmitLocked(aer, kAerOwner, 0, 0)) break;
    ++n;
  }
  c_.aers_outstanding = n;
}

Status SharedAdminQueue::Poll() {
  struct Local {
    bool event;
    uint32_t order;
    uint32_t cookie;
    uint32_t wake_seq;
    spec::Cqe cpl;
  };
  std::vector<Local> mine;
  {
    auto guard = Lock();
    if (!guard) return guard.error();
    while (auto c = ring_.Peek()) {
      c_.poll_position = ring_.cq_position();
      c_.poll_pending = 1;
      NVMUX_TEST_POINT("admin.poll.peeked");
      Route(*c, false);
      ring_.Consume(*c);
      NVMUX_TEST_POINT("admin.poll.consumed");
      c_.poll_pending = 0;
    }
    ring_.RingCq();
    TopUpAers();
    if (wakeups_) wakeups_->Prune();
    Mailbox& m = c_.mailboxes[slot_];
    if (m.generation == generation_) {
      while (m.head != m.tail) {
        mine.push_back({true, 0, 0, 0, m.events[m.head % kMailboxEvents].cpl});
        m.head++;
      }
      const size_t events = mine.size();
      for (uint32_t cookie = 0; cookie < kMaxSharedAdminEntries; ++cookie) {
        MailCompletion& slot = m.completions[cookie];
        if (slot.ready == 0) continue;
        mine.push_back({false, slot.order, cookie, slot.wake_seq, slot.cpl});
        slot.ready = 0;
      }
      // Callbacks in completion order (order numbers may wrap).
      std::sort(mine.begin() + static_cast<std::ptrdiff_t>(events), mine.end(), [](const Local& a, const Local& b) {
        return static_cast<int32_t>(a.order - b.order) < 0;
      });
    }
  }
  // Outside the lock: the entries are in the mailboxes already.
  WakeRouted();
  for (const Local& l : mine) {
    if (l.event) {
      if (on_event_) on_event_(l.cpl);
      continue;
    }
    if (l.cookie >= callbacks_.size() || !callbacks_[l.cookie]) continue;
    Done done = std::move(callbacks_[l.cookie]);
    callbacks_[l.cookie] = nullptr;
    free_cookies_.push_back(l.cookie);
    outstanding_--;
    delivering_wake_seq_ = l.wake_seq;
    done(l.cpl);
    delivering_wake_seq_ = 0;
  }
  return Ok();
}

std::vector<uint16_t> SharedAdminQueue::SubmittedBefore(int64_t deadline_ns) const {
  std::vector<uint16_t> out;
  for (uint32_t cid = 0; cid < c_.admin_entries; ++cid) {
    const SharedAdminTracker& t = c_.trackers[cid];
    if (t.state == kInFlight && t.owner_slot == slot_ && t.owner_generation == generation_ &&
        t.submitted_ns < deadline_ns)
      out.push_back(static_cast<uint16_t>(cid));
  }
  return out;
}

void SharedAdminQueue::AbortAll(uint16_t status) {
  {
    auto guard = Lock();
    if (guard) {
      for (uint32_t cid = 0; cid < c_.admin_entries; ++cid) {
        SharedAdminTracker& t = c_.trackers[cid];
        if (t.state == kInFlight && t.owner_slot == slot_) t.owner_generation = 0;  // a late completion is dropped
      }
      // Completions routed but not yet run are answered with `status` below.
      for (MailCompletion& slot : c_.mailboxes[slot_].completions) slot.ready = 0;
    }
  }
  for (uint32_t cookie = 0; cookie < callbacks_.size(); ++cookie) {
    if (!callbacks_[cookie]) continue;
    Done done = std::move(callbacks_[cookie]);
    callbacks_[cookie] = nullptr;
    free_cookies_.push_back(cookie);
    outstanding_--;
    spec::Cqe c{};
    c.status = status;
    done(c);
  }
}

void SharedAdminQueue::ResetRing() {
  auto guard = Lock();
  if (!guard) return;
  ring_.Reset();
  for (uint32_t cid = 0; cid < c_.admin_entries; ++cid) c_.trackers[cid].state = kFree;
  c_.submit_cid = 0;
  c_.poll_pending = 0;
  // No AERs on a controller being reset: the primary arms them again once
  // it is enabled (ArmGroupAers), not a secondary's poll meanwhile.
  c_.aer_target = 0;
  c_.aers_outstanding = 0;
}

Status SharedAdminQueue::ArmGroupAers(uint32_t count) {
  auto guard = Lock();
  if (!guard) return guard.error();
  c_.aer_target = count;
  TopUpAers();
  if (c_.aers_outstanding < count)
    return Fail(EAGAIN, std::to_string(c_.aers_outstanding) + " of " + std::to_string(count) +
                            " group AERs armed (admin queue full); later polls arm the rest");
  return Ok();
}

uint64_t SharedAdminQueue::ForgetSlot(uint32_t slot) {
  // REQUIRES: the caller holds no lock of this queue; takes it.
  auto guard = Lock();
  if (!guard) return 0;
  uint64_t released = 0;
  ForgetFdHolder(c_, slot);
  Mailbox& m = c_.mailboxes[slot];
  if (m.generation != 0) {
    released += m.tail - m.head;
    for (const MailCompletion& done : m.completions) released += done.ready;
    m = Mailbox{};
    ++released;
  }
  for (uint32_t cid = 0; cid < c_.admin_entries; ++cid) {
    SharedAdminTracker& t = c_.trackers[cid];
    if (t.state == kInFlight && t.owner_slot == slot && t.owner_generation != 0) {
      t.owner_generation = 0;  // its completion will be dropped and the tracker freed
      ++released;
    }
  }
  return released;
}

}  // namespace nvmux
