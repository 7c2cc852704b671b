// Reaper: the primary's housekeeping loop over the group's process table.
// Waits for deaths (pidfd events plus lock sweeps, see shm/death_watcher.h)
// and reaps each dead process (shm/process_table.h): the intent under the
// group lock; the device hooks (primary/reap_queues.h: delete its
// I/O queues, drop its mailbox) without it, so a slow device delays only
// this thread; then, under the lock again, its DMA memory is freed (except
// rings the device did not confirm it stopped using: quarantined). A slot
// left kReaping by a reaper that died is reaped again. Returns when asked
// to stop.
//
// Thread safety: Run() on one thread; RequestStop() from any thread or a
// signal handler.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "shm/group.h"

namespace nvmux::primary {

class Reaper {
 public:
  // The group must outlive the reaper.
  explicit Reaper(shm::Group& group) : group_(group) {}

  // Runs until RequestStop() or `should_stop()` returns true, checking it at
  // least every `period`. Errors: from the death watcher.
  template <typename StopFn>
  Status Run(StopFn should_stop, Nanos period = std::chrono::milliseconds(50));

  void RequestStop() { stop_.store(true); }
  // Fds that end the wait early when readable (see DeathWatcher::SetWakeFds);
  // `should_stop` then runs at once. Applied at the next wait; may be
  // changed from `should_stop`.
  void SetWakeFds(std::vector<int> fds) { wake_fds_ = std::move(fds); }
  // The lock sweep's period while every process is watched by a pidfd
  // (DeathWatcher::all_watched_by_pidfd); otherwise it sweeps every 20 ms.
  // Default: the period itself (no extra wake-ups).
  void SetIdleSweep(Nanos sweep) { idle_sweep_ = sweep; }
  // Changes Run's period (from `should_stop`, for the next wait).
  void SetPeriod(Nanos period) { period_ = period; }
  uint64_t reaped() const { return reaped_; }

 private:
  Status Step(shm::DeathWatcher& watcher, Nanos period);

  shm::Group& group_;
  std::vector<int> wake_fds_;
  Nanos idle_sweep_{0};
  Nanos period_{0};
  std::atomic<bool> stop_{false};
  uint64_t reaped_ = 0;
};

template <typename StopFn>
Status Reaper::Run(StopFn should_stop, Nanos period) {
  auto watcher = shm::DeathWatcher::Create(group_.processes());
  if (!watcher) return watcher.error();
  period_ = period;
  while (!stop_.load() && !should_stop()) NVMUX_TRY(Step(*watcher, period_));
  return Ok();
}

}  // namespace nvmux::primary
