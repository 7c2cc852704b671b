#include "libclient/shared/admin_wakeup.h"

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>

#include "libclient/shared/fd_holders.h"
#include "shm/base/log.h"

namespace nvmux {
namespace {

std::atomic_ref<uint32_t> Record(SharedController& c, uint32_t slot) {
  return std::atomic_ref<uint32_t>(c.mailboxes[slot].wakeup_fd);
}

// Whether `t` is still the slot's record: its mailbox is the waiter's
// generation and names the same number.
bool Current(SharedController& c, const WakeupTarget& t) {
  return std::atomic_ref<uint32_t>(c.mailboxes[t.slot].generation).load(std::memory_order_seq_cst) == t.generation &&
         Record(c, t.slot).load(std::memory_order_seq_cst) == static_cast<uint32_t>(t.fd) + 1;
}

}  // namespace

void RecordAdminWakeup(SharedController& c, uint32_t slot, uint32_t generation, int fd) {
  if (slot >= shm::kMaxProcesses || fd < 0 || c.mailboxes[slot].generation != generation) return;
  Record(c, slot).store(static_cast<uint32_t>(fd) + 1, std::memory_order_seq_cst);
}

void ForgetAdminWakeup(SharedController& c, uint32_t slot, uint32_t generation, int fd) {
  if (slot >= shm::kMaxProcesses || fd < 0) return;
  if (std::atomic_ref<uint32_t>(c.mailboxes[slot].generation).load(std::memory_order_seq_cst) != generation) return;
  uint32_t mine = static_cast<uint32_t>(fd) + 1;
  (void)Record(c, slot).compare_exchange_strong(mine, 0, std::memory_order_seq_cst);
}

void SettleAdminWakeup(SharedController& c, uint32_t slot, uint32_t generation, uint32_t seq) {
  if (slot >= shm::kMaxProcesses) return;
  Mailbox& m = c.mailboxes[slot];
  if (std::atomic_ref<uint32_t>(m.generation).load(std::memory_order_seq_cst) != generation) return;
  std::atomic_ref<uint32_t> settled(m.wakeups_settled);
  uint32_t now = settled.load(std::memory_order_seq_cst);
  // Numbers wrap: raise only to one after the current.
  while (static_cast<int32_t>(seq - now) > 0 && !settled.compare_exchange_weak(now, seq, std::memory_order_seq_cst)) {
  }
}

uint32_t SettledAdminWakeup(const SharedController& c, uint32_t slot) {
  if (slot >= shm::kMaxProcesses) return 0;
  return std::atomic_ref<const uint32_t>(c.mailboxes[slot].wakeups_settled).load(std::memory_order_seq_cst);
}

void AdminWakeups::Wake(const std::vector<WakeupTarget>& targets) {
  std::vector<shm::ProcessInfo> live;
  for (const WakeupTarget& t : targets) {
    if (t.slot >= held_.size()) continue;
    Held& h = held_[t.slot];
    if (!h.fd.valid() || !(h.target == t)) {
      h.fd.Reset();
      if (live.empty()) live = processes_.Snapshot();
      for (const shm::ProcessInfo& p : live) {
        if (p.slot != t.slot || p.generation != t.generation || p.state != shm::SlotState::kActive) continue;
        UniqueFd pidfd = OpenCheckedPidfd(p.id);
        if (!pidfd.valid()) break;
        UniqueFd fd = TakeProcessFd(pidfd.get(), t.fd);
        if (!fd.valid()) {
          NVMUX_LOG(kInfo, "admin wakeup of process %d: pidfd_getfd: %s (it finds its completion at its slice's end)",
                    static_cast<int>(p.id.pid), std::strerror(errno));
          break;
        }
        // Taken after the record was read: if the record still names this
        // number now, the waiter had not closed it when we took it.
        if (IsEventfd(fd.get()) && Current(c_, t)) {
          h.target = t;
          h.fd = std::move(fd);
        }
        break;
      }
      if (!h.fd.valid()) continue;
    }
    const uint64_t one = 1;
    if (::write(h.fd.get(), &one, sizeof(one)) == static_cast<ssize_t>(sizeof(one))) signalled_++;
  }
}

void AdminWakeups::Prune() {
  for (uint32_t s = 0; s < held_.size(); ++s)
    if (held_[s].fd.valid() && !Current(c_, held_[s].target)) held_[s].fd.Reset();
}

size_t AdminWakeups::held() const {
  size_t n = 0;
  for (const Held& h : held_) n += h.fd.valid() ? 1 : 0;
  return n;
}

}  // namespace nvmux
