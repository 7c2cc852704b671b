#include "primary/reaper.h"

#include "shm/base/log.h"

namespace nvmux::primary {

Status Reaper::Step(shm::DeathWatcher& watcher, Nanos period) {
  auto dead = watcher.Wait(period);
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
