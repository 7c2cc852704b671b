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
  uint64_t reaped() const { return reaped_; }

 private:
  Status Step(shm::DeathWatcher& watcher, Nanos period);

  shm::Group& group_;
  std::atomic<bool> stop_{false};
  uint64_t reaped_ = 0;
};

template <typename StopFn>
Status Reaper::Run(StopFn should_stop, Nanos period) {
  auto watcher = shm::DeathWatcher::Create(group_.processes());
  if (!watcher) return watcher.error();
  while (!stop_.load() && !should_stop()) NVMUX_TRY(Step(*watcher, period));
  return Ok();
}

}  // namespace nvmux::primary
