// DeathWatcher: notices, within milliseconds, that a process registered in
// the group's process table has died.
//
// Two signals: a pidfd per watched process (readable the moment it exits; the
// fast path, when the pid is visible in this pid namespace and its start time
// matches the slot, so a reused pid is never mistaken for the slot's owner),
// and a sweep of the slots' liveness locks on every Wait() (the ground truth,
// covering processes in other pid namespaces). A death is reported only once
// the liveness lock confirms it.
//
// Thread safety: one thread per DeathWatcher. Blocks only inside Wait().
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "shm/base/clock.h"
#include "shm/base/unique_fd.h"
#include "shm/process_table.h"

namespace nvmux::shm {

class DeathWatcher {
 public:
  // The table must outlive the watcher. Errors: from epoll_create1.
  static Result<DeathWatcher> Create(const ProcessTable& table);

  // Waits up to `timeout` (sweeping at least every `sweep_period`) and returns
  // the dead, not yet reaped processes; empty on timeout.
  // A readable wake fd (SetWakeFds) ends the wait early, with whatever
  // deaths the sweep found (often none): the caller drains it.
  Result<std::vector<ProcessInfo>> Wait(Nanos timeout, Nanos sweep_period = std::chrono::milliseconds(20));
  // Fds that end a Wait when readable (an admin queue's interrupt eventfd,
  // a signalfd), replacing the previous set. Borrowed: they must stay open
  // until replaced (or be closed: epoll forgets them). Errors: from
  // epoll_ctl (the set is then partial).
  [[nodiscard]] Status SetWakeFds(const std::vector<int>& fds);
  // Whether every watched process has a pidfd (its death is an event):
  // then sweeping the liveness locks is only the backstop for processes
  // that joined since the last Wait, and may be rare.
  bool all_watched_by_pidfd() const;

 private:
  struct Watched {
    uint32_t generation;
    UniqueFd pidfd;  // invalid when the pid is not ours to watch (other namespace, reused)
  };
  DeathWatcher(const ProcessTable& table, UniqueFd epoll) : table_(table), epoll_(std::move(epoll)) {}
  void Refresh();

  const ProcessTable& table_;
  UniqueFd epoll_;
  std::map<uint32_t, Watched> watched_;  // by slot
  std::vector<int> wake_fds_;
  uint32_t seen_changes_ = UINT32_MAX;
};

}  // namespace nvmux::shm
