// PollGroup: a set of I/O queue pairs polled together by one thread (SPDK's
// spdk_nvme_poll_group). One ProcessCompletions call polls every member,
// hands the failed or disconnected ones to the caller's callback, and
// returns how many completions ran; statistics() adds up the members'.
//
//   nvmux::PollGroup group;
//   (void)group.Add(*qpair_a);
//   (void)group.Add(*qpair_b);
//   for (;;) group.ProcessCompletions(0, [](nvmux::IoQpair& q, void*) { (void)q.Reconnect(); }, nullptr);
//
// The queue pairs may belong to different controllers. A member that is
// not connected (created with create_only, Disconnect()ed, failed) is not
// polled; the callback gets it at every group poll until it is connected
// again (Connect/Reconnect, or a controller Reset that re-creates it) or
// removed.
//
// Waiting (PollGroupOptions::mode, as CompletionMode for one queue pair):
// in event or hybrid mode every member must be an event or hybrid queue
// pair; event_fd() is an epoll fd over the members' eventfds, readable when
// any member's device signalled; ArmEvent() arms every member (drain, then
// re-check); WaitCompletions() waits per the mode and polls the group.
//
//   nvmux::PollGroup group({.mode = nvmux::CompletionMode::kEvent});
//   for (;;) {
//     group.ProcessCompletions(0, on_disconnected, nullptr);
//     if (group.ArmEvent()) epoll_wait(app_epoll, ...);  // group.event_fd() is in app_epoll
//   }
//
// Thread safety: none. One thread owns a group and polls its members (a
// queue pair is owned by one thread anyway); several groups may run on
// several threads. A queue pair is in at most one group.
// Ownership: the group borrows its members. Destroying a member removes it
// from its group (also from inside a callback of this group's poll);
// destroying the group leaves its members ungrouped and usable. Neither
// blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "nvmux/qpair.h"
#include "nvmux/result.h"
#include "nvmux/spin_budget.h"

namespace nvmux {

struct PollGroupOptions {
  CompletionMode mode = CompletionMode::kPoll;
  uint32_t hybrid_spin_us = 50;  // hybrid: spin at most this long after the last completion (spin_budget.h)
};

struct PollGroupStatistics {
  // The group's own counters, since it was created.
  uint64_t polls = 0;          // ProcessCompletions calls
  uint64_t idle_polls = 0;     // calls that completed nothing
  uint64_t completions = 0;    // completions those calls ran
  uint64_t disconnected = 0;   // disconnected-callback calls
  uint64_t blocks = 0;         // WaitCompletions blocked on event_fd()
  uint64_t wakeups = 0;        // of which ended by an interrupt
  // The sum of the current members' QpairStatistics (each queue pair's
  // whole life, including polls made outside the group): polls, idle_polls,
  // completed, submitted, doorbell writes, shadow doorbell updates, queued,
  // split.
  QpairStatistics qpairs;
};

class PollGroup {
 public:
  // Called from ProcessCompletions for a member that failed (ENXIO: its
  // controller failed, was removed or lost) or is not connected; its
  // outstanding requests have already completed (with 0/08). It may
  // Reconnect, Remove or destroy that queue pair (or any member), Add
  // others; it must not destroy the group or poll it again.
  using DisconnectedFn = void (*)(IoQpair& qpair, void* cb_arg);

  PollGroup() = default;
  // Event/hybrid: creates the epoll fd (a failure shows as event_fd() -1
  // and every Add failing with the errno).
  explicit PollGroup(const PollGroupOptions& options);
  ~PollGroup();  // members stay usable, in no group
  PollGroup(const PollGroup&) = delete;
  PollGroup& operator=(const PollGroup&) = delete;

  // Makes `qpair` a member (in any state). Errors: EEXIST (already in this
  // group), EBUSY (in another group: Remove it there first), EINVAL (a
  // poll-mode queue pair in an event/hybrid group: nothing would wake the
  // group for it; names both modes).
  [[nodiscard]] Status Add(IoQpair& qpair);
  // Errors: ENOENT (not in this group).
  [[nodiscard]] Status Remove(IoQpair& qpair);
  size_t size() const { return members_.size() - holes_; }

  // Polls every connected member (IoQpair::ProcessCompletions with
  // `completions_per_qpair`, 0: all available), in the order they were
  // added, and calls `fn(qpair, cb_arg)` for each member that is not
  // connected or whose poll failed (`fn` may be null). Returns the
  // completions run. Members' completion callbacks run inside, on this
  // thread.
  uint64_t ProcessCompletions(uint32_t completions_per_qpair, DisconnectedFn fn, void* cb_arg = nullptr);

  // The group's counters and the sum over its current members.
  PollGroupStatistics statistics() const;

  CompletionMode mode() const { return options_.mode; }
  // Event/hybrid: an epoll fd, readable when a member's eventfd is (add it
  // to your own epoll set); -1 in poll mode. Owned by the group.
  int event_fd() const { return epoll_fd_; }
  // Arms every member (IoQpair::ArmEvent): true when none has a completion
  // waiting, so the caller may block on event_fd(); false in poll mode.
  bool ArmEvent();
  // Waits as the mode says (see IoQpair::WaitCompletions) until a member
  // has completions or timeout_ms (-1: no limit) passed, then polls the
  // group once (ProcessCompletions's arguments). Returns the completions
  // run; 0 at once when no member has requests outstanding.
  uint64_t WaitCompletions(int timeout_ms, uint32_t completions_per_qpair, DisconnectedFn fn, void* cb_arg = nullptr);

 private:
  std::vector<IoQpair*> members_;  // null: removed during a poll (compacted after it)
  size_t holes_ = 0;
  uint32_t polling_ = 0;  // > 0 while ProcessCompletions runs
  PollGroupStatistics stats_;
  PollGroupOptions options_;
  int epoll_fd_ = -1;  // owned (closed by the destructor)
  int epoll_error_ = 0;
  int64_t last_completion_ns_ = 0;
  SpinBudget spin_{PollGroupOptions{}.hybrid_spin_us};  // hybrid (spin_budget.h)
};

}  // namespace nvmux
