#include "libclient/shared/shared_admin_queue.h"

#include <atomic>

#include "libclient/shared/fd_holders.h"
#include "shm/base/clock.h"
#include "shm/base/log.h"

namespace nvmux {
namespace {

constexpr uint16_t kAbortedSqDeletionStatus = 0x08 << 1;

uint32_t Ref(uint32_t& v) { return std::atomic_ref<uint32_t>(v).load(std::memory_order_acquire); }

}  // namespace

SharedAdminQueue::SharedAdminQueue(SharedController& ctrl, Doorbells doorbells, uint32_t slot, uint32_t generation)
    : c_(ctrl),
      ring_(reinterpret_cast<spec::Sqe*>(ctrl.admin_sq_iova), reinterpret_cast<spec::Cqe*>(ctrl.admin_cq_iova),
            ctrl.admin_entries, doorbells, &ctrl.admin_ring),
      lock_(ctrl.lock,
            [this]() -> Status {
              // A process died holding the lock: publish the positions it may
              // have advanced without ringing.
              ring_.Resync();
              return Ok();
            }),
      slot_(slot),
      generation_(generation),
      callbacks_(kMaxSharedAdminEntries) {
  for (uint32_t i = kMaxSharedAdminEntries; i-- > 0;) free_cookies_.push_back(i);
  auto guard = lock_.Lock();
  if (!guard) {
    NVMUX_LOG(kError, "shared admin queue: %s", guard.error().message.c_str());
    return;
  }
  Mailbox& m = c_.mailboxes[slot_];
  m.head = m.tail = m.dropped = 0;
  m.generation = generation_;
}

SharedAdminQueue::~SharedAdminQueue() {
  auto guard = lock_.Lock();
  if (!guard) return;
  c_.mailboxes[slot_].generation = 0;
  ForgetFdHolder(c_, slot_);
  // Our in-flight commands' completions now have nowhere to go.
  for (uint32_t cid = 0; cid < c_.admin_entries; ++cid) {
    SharedAdminTracker& t = c_.trackers[cid];
    if (t.state == static_cast<uint32_t>(TrackerState::kInFlight) && t.owner_slot == slot_) t.owner_generation = 0;
  }
}

Status SharedAdminQueue::SubmitLocked(const spec::Sqe& cmd, uint32_t owner, uint32_t generation, uint32_t cookie) {
  if (ring_.Full()) return Fail(EAGAIN, "shared admin queue full");
  uint32_t cid = 0;
  while (cid < c_.admin_entries && c_.trackers[cid].state != static_cast<uint32_t>(TrackerState::kFree)) ++cid;
  if (cid == c_.admin_entries)
    return Fail(EAGAIN, "shared admin queue full (" + std::to_string(c_.admin_entries) + " commands outstanding)");
  // Tracker first (intent), then the entry, then the doorbell.
  c_.trackers[cid] = SharedAdminTracker{static_cast<uint32_t>(TrackerState::kInFlight), owner, generation, cookie,
                                        MonotonicNanos()};
  spec::Sqe c = cmd;
  c.cid = static_cast<uint16_t>(cid);
  Status pushed = ring_.Push(c);
  if (!pushed) {
    c_.trackers[cid].state = static_cast<uint32_t>(TrackerState::kFree);
    return pushed;
  }
  ring_.RingSq();
  c_.admin_submitted++;
  return Ok();
}

Status SharedAdminQueue::Submit(const spec::Sqe& cmd, Done done) {
  if (Ref(c_.failed)) return Fail(ENXIO, std::string("controller ") + c_.trid + " has failed");
  if (free_cookies_.empty()) return Fail(EAGAIN, "admin queue full for this process");
  auto guard = lock_.Lock();
  if (!guard) return guard.error();
  uint32_t cookie = free_cookies_.back();
  NVMUX_TRY(SubmitLocked(cmd, slot_, generation_, cookie));
  free_cookies_.pop_back();
  callbacks_[cookie] = std::move(done);
  outstanding_++;
  return Ok();
}

void SharedAdminQueue::Deliver(uint32_t slot, MailKind kind, uint32_t cookie, const spec::Cqe& cpl) {
  Mailbox& m = c_.mailboxes[slot];
  if (m.tail - m.head >= kMailboxEntries) {
    m.dropped++;
    NVMUX_LOG(kWarning, "admin mailbox of process slot %u is full; an %s was dropped", slot,
              kind == MailKind::kEvent ? "event" : "admin completion");
    return;
  }
  m.entries[m.tail % kMailboxEntries] = MailboxEntry{static_cast<uint32_t>(kind), cookie, cpl};
  m.tail++;
}

Status SharedAdminQueue::Poll() {
  struct Local {
    MailKind kind;
    uint32_t cookie;
    spec::Cqe cpl;
  };
  std::vector<Local> mine;
  {
    auto guard = lock_.Lock();
    if (!guard) return guard.error();
    bool rearm = false;
    while (auto c = ring_.Pop()) {
      if (c->cid >= c_.admin_entries || c_.trackers[c->cid].state == static_cast<uint32_t>(TrackerState::kFree)) {
        NVMUX_LOG(kWarning, "admin completion for command id %u, which is not outstanding", c->cid);
        continue;
      }
      SharedAdminTracker t = c_.trackers[c->cid];
      c_.trackers[c->cid].state = static_cast<uint32_t>(TrackerState::kFree);
      c_.admin_completed++;
      if (t.owner_slot == kAerOwner) {
        c_.aers_outstanding--;
        bool aborted = c->sct() == 0 && c->sc() == 0x08;
        if (aborted) continue;
        if (c->sct() != 0 || c->sc() != 0) {
          NVMUX_LOG(kNotice, "group AER completed with status %u/0x%02x; not re-armed", c->sct(), c->sc());
          continue;
        }
        c_.aens++;
        for (uint32_t s = 0; s < shm::kMaxProcesses; ++s)
          if (c_.mailboxes[s].generation != 0) Deliver(s, MailKind::kEvent, 0, *c);
        rearm = true;
      } else if (t.owner_slot == slot_ && t.owner_generation == generation_) {
        mine.push_back({MailKind::kCompletion, t.cookie, *c});
      } else if (t.owner_slot < shm::kMaxProcesses && t.owner_generation != 0 &&
                 c_.mailboxes[t.owner_slot].generation == t.owner_generation) {
        Deliver(t.owner_slot, MailKind::kCompletion, t.cookie, *c);
        c_.admin_routed++;
      } else {
        c_.orphaned++;
      }
    }
    ring_.RingCq();
    if (rearm) {
      spec::Sqe aer;
      aer.opc = spec::admin::kAsyncEventRequest;
      if (SubmitLocked(aer, kAerOwner, 0, 0)) c_.aers_outstanding++;
    }
    Mailbox& m = c_.mailboxes[slot_];
    while (m.head != m.tail) {
      const MailboxEntry& e = m.entries[m.head % kMailboxEntries];
      mine.push_back({static_cast<MailKind>(e.kind), e.cookie, e.cpl});
      m.head++;
    }
  }
  for (const Local& l : mine) {
    if (l.kind == MailKind::kEvent) {
      if (on_event_) on_event_(l.cpl);
      continue;
    }
    if (l.cookie >= callbacks_.size() || !callbacks_[l.cookie]) continue;
    Done done = std::move(callbacks_[l.cookie]);
    callbacks_[l.cookie] = nullptr;
    free_cookies_.push_back(l.cookie);
    outstanding_--;
    done(l.cpl);
  }
  return Ok();
}

std::vector<uint16_t> SharedAdminQueue::SubmittedBefore(int64_t deadline_ns) const {
  std::vector<uint16_t> out;
  for (uint32_t cid = 0; cid < c_.admin_entries; ++cid) {
    const SharedAdminTracker& t = c_.trackers[cid];
    if (t.state == static_cast<uint32_t>(TrackerState::kInFlight) && t.owner_slot == slot_ &&
        t.owner_generation == generation_ && t.submitted_ns < deadline_ns)
      out.push_back(static_cast<uint16_t>(cid));
  }
  return out;
}

void SharedAdminQueue::AbortAll(uint16_t status) {
  {
    auto guard = lock_.Lock();
    if (guard) {
      for (uint32_t cid = 0; cid < c_.admin_entries; ++cid) {
        SharedAdminTracker& t = c_.trackers[cid];
        if (t.state == static_cast<uint32_t>(TrackerState::kInFlight) && t.owner_slot == slot_)
          t.owner_generation = 0;  // a late completion is dropped
      }
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
  auto guard = lock_.Lock();
  if (!guard) return;
  ring_.Reset();
  for (uint32_t cid = 0; cid < c_.admin_entries; ++cid) c_.trackers[cid].state = static_cast<uint32_t>(TrackerState::kFree);
  c_.aers_outstanding = 0;
}

Status SharedAdminQueue::ArmGroupAers(uint32_t count) {
  auto guard = lock_.Lock();
  if (!guard) return guard.error();
  spec::Sqe aer;
  aer.opc = spec::admin::kAsyncEventRequest;
  while (c_.aers_outstanding < count) {
    NVMUX_TRY(SubmitLocked(aer, kAerOwner, 0, 0));
    c_.aers_outstanding++;
  }
  return Ok();
}

uint64_t SharedAdminQueue::ForgetSlot(uint32_t slot) {
  // REQUIRES: the caller holds no lock of this queue; takes it.
  auto guard = lock_.Lock();
  if (!guard) return 0;
  uint64_t released = 0;
  ForgetFdHolder(c_, slot);
  Mailbox& m = c_.mailboxes[slot];
  if (m.generation != 0) {
    released += m.tail - m.head;
    m = Mailbox{};
    ++released;
  }
  for (uint32_t cid = 0; cid < c_.admin_entries; ++cid) {
    SharedAdminTracker& t = c_.trackers[cid];
    if (t.state == static_cast<uint32_t>(TrackerState::kInFlight) && t.owner_slot == slot && t.owner_generation != 0) {
      t.owner_generation = 0;  // its completion will be dropped and the tracker freed
      ++released;
    }
  }
  return released;
}

}  // namespace nvmux
