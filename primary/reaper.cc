#include "primary/reaper.h"

#include "shm/base/log.h"

namespace nvmux::primary {

Status Reaper::Step(shm::DeathWatcher& watcher, Nanos period) {
  if (Status st = watcher.SetWakeFds(wake_fds_); !st)
    NVMUX_LOG(kWarning, "reaper: %s (woken by the timer only)", st.error().message.c_str());
  // Sweeping the liveness locks is what finds a process that joined and
  // died between two waits (no pidfd yet): often while anyone is unwatched,
  // else only as often as asked (an idle nvmuxd then wakes only for events).
  const Nanos sweep = watcher.all_watched_by_pidfd() && idle_sweep_.count() > 0 ? idle_sweep_
                                                                                : Nanos(std::chrono::milliseconds(20));
  auto dead = watcher.Wait(period, sweep);
  if (!dead) return dead.error();
  for (const shm::ProcessInfo& p : *dead) {
    auto rec = group_.processes().Reap(p.slot, p.generation);
    if (rec) {
      ++reaped_;
      NVMUX_LOG(kNotice, "reaped %s (pid %d): released %llu item(s)", rec->name, rec->pid,
                static_cast<unsigned long long>(rec->released_items));
    } else if (rec.error().code != ENOENT && rec.error().code != EINPROGRESS) {
      NVMUX_LOG(kWarning, "cannot reap pid %d: %s", p.id.pid, rec.error().ToString().c_str());
    }
  }
  return Ok();
}

}  // namespace nvmux::primary
