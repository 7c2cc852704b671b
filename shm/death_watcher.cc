#include "shm/death_watcher.h"

#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

namespace nvmux::shm {
namespace {

int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

}  // namespace

Result<DeathWatcher> DeathWatcher::Create(const ProcessTable& table) {
  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep.valid()) return ErrnoError("epoll_create1");
  return DeathWatcher(table, std::move(ep));
}

void DeathWatcher::Refresh() {
  uint32_t changes = table_.changes();
  if (changes == seen_changes_) return;
  seen_changes_ = changes;
  std::map<uint32_t, Watched> next;
  for (const ProcessInfo& p : table_.Snapshot()) {
    if (table_.self_slot() && *table_.self_slot() == p.slot) continue;
    auto it = watched_.find(p.slot);
    if (it != watched_.end() && it->second.generation == p.generation) {
      next.emplace(p.slot, std::move(it->second));
      continue;
    }
    Watched w{p.generation, UniqueFd(PidfdOpen(p.id.pid))};
    // The pidfd pins one process; if its start time is not the slot's, the
    // pid was reused (or is another namespace's): rely on the lock sweep.
    auto start = ReadProcessStartTime(p.id.pid);
    if (w.pidfd.valid() && (!start || *start != p.id.start_time)) w.pidfd.Reset();
    if (w.pidfd.valid()) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = p.slot;
      if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, w.pidfd.get(), &ev) != 0) w.pidfd.Reset();
    }
    next.emplace(p.slot, std::move(w));
  }
  watched_ = std::move(next);  // dropped pidfds leave the epoll set on close
}

namespace {
constexpr uint32_t kWakeTag = UINT32_MAX;  // epoll data of a wake fd (slots are small numbers)
}  // namespace

Status DeathWatcher::SetWakeFds(const std::vector<int>& fds) {
  // Always re-registered: a closed fd leaves the epoll set by itself, and
  // its number may since name another file (a controller attached again).
  for (int fd : wake_fds_) (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  wake_fds_.clear();
  for (int fd : fds) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = kWakeTag;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return ErrnoError("epoll_ctl(ADD) of a wake fd");
    wake_fds_.push_back(fd);
  }
  return Ok();
}

bool DeathWatcher::all_watched_by_pidfd() const {
  if (table_.changes() != seen_changes_) return false;  // someone joined or left since the last look
  for (const auto& [slot, w] : watched_)
    if (!w.pidfd.valid()) return false;
  return true;
}

Result<std::vector<ProcessInfo>> DeathWatcher::Wait(Nanos timeout, Nanos sweep_period) {
  int64_t deadline = MonotonicNanos() + timeout.count();
  for (;;) {
    Refresh();
    std::vector<ProcessInfo> dead = table_.FindDead();
    if (!dead.empty()) return dead;
    int64_t left = deadline - MonotonicNanos();
    if (left <= 0) return dead;
    int64_t wait_ns = std::min<int64_t>(left, sweep_period.count());
    epoll_event events[8];
    int n = ::epoll_wait(epoll_.get(), events, 8, static_cast<int>((wait_ns + 999'999) / 1'000'000));
    if (n < 0 && errno != EINTR) return ErrnoError("epoll_wait");
    // A readable pidfd stays readable: unwatch it; FindDead() gives the verdict.
    bool woken = false;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u32 == kWakeTag) {
        woken = true;
        continue;
      }
      auto it = watched_.find(events[i].data.u32);
      if (it != watched_.end()) it->second.pidfd.Reset();
    }
    if (woken) {
      Refresh();
      return table_.FindDead();
    }
  }
}

}  // namespace nvmux::shm
