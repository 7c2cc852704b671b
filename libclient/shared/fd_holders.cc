#include "libclient/shared/fd_holders.h"

#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>

#include "shm/base/log.h"
#include "shm/base/test_point.h"
#include "shm/process_identity.h"

namespace nvmux {
namespace {

// The identity of an open file; all zero when fstat fails (a record no
// taker will accept, which is the safe side).
FdIdentity IdentityOf(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return FdIdentity{};
  return FdIdentity{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
                    static_cast<uint32_t>(st.st_mode & S_IFMT), 1};
}

bool SameFile(const FdIdentity& a, const FdIdentity& b) {
  return a.valid != 0 && b.valid != 0 && a.type == b.type && a.dev == b.dev && a.ino == b.ino;
}

}  // namespace

UniqueFd OpenCheckedPidfd(const shm::ProcessIdentity& id) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, id.pid, 0)));
  if (!pidfd.valid()) return pidfd;
  // The pidfd pins one process: check it is the one the record names.
  auto start = shm::ReadProcessStartTime(id.pid);
  if (!start || *start != id.start_time) {
    errno = ESRCH;
    return UniqueFd();
  }
  return pidfd;
}

UniqueFd TakeProcessFd(int pidfd, int number) {
  return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, number, 0)));
}

bool IsEventfd(int fd) {
  char link[64] = {};
  const std::string self = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t len = ::readlink(self.c_str(), link, sizeof(link) - 1);
  return len > 0 && std::string(link, static_cast<size_t>(len)) == "anon_inode:[eventfd]";
}

void RecordFdHolder(SharedController& c, shm::RobustLock& lock, uint32_t slot, uint32_t generation,
                    std::span<const int> fds, uint64_t doorbell_file_offset) {
  if (slot >= shm::kMaxProcesses) return;
  auto guard = lock.Lock();
  FdHolder& h = c.fd_holders[slot];
  std::atomic_ref<uint32_t>(h.generation).store(0, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_release);
  NVMUX_TEST_POINT("fd.record.withdrawn");  // under the controller's lock, the record half written
  h.count = static_cast<uint32_t>(std::min<size_t>(fds.size(), kMaxHeldFds));
  for (uint32_t i = 0; i < kMaxHeldFds; ++i) {
    h.fds[i] = i < h.count ? fds[i] : -1;
    h.identity[i] = i < h.count ? IdentityOf(fds[i]) : FdIdentity{};
  }
  h.doorbell_file_offset = doorbell_file_offset;
  std::atomic_ref<uint32_t>(h.generation).store(generation, std::memory_order_release);
}

void ForgetFdHolder(SharedController& c, uint32_t slot) {
  if (slot >= shm::kMaxProcesses) return;
  std::atomic_ref<uint32_t>(c.fd_holders[slot].generation).store(0, std::memory_order_release);
}

Result<TakenFds> TakeFdsFromHolder(SharedController& c, const shm::ProcessTable& processes, uint32_t self_slot) {
  Error last = Fail(ENOENT, "no live process of the group holds the controller's file descriptors");
  for (const shm::ProcessInfo& p : processes.Snapshot()) {
    if (p.slot == self_slot || p.slot >= shm::kMaxProcesses || p.state != shm::SlotState::kActive) continue;
    FdHolder& shared = c.fd_holders[p.slot];
    uint32_t generation = std::atomic_ref<uint32_t>(shared.generation).load(std::memory_order_acquire);
    if (generation == 0 || generation != p.generation) continue;
    FdHolder h = shared;
    std::atomic_thread_fence(std::memory_order_acquire);
    if (std::atomic_ref<uint32_t>(shared.generation).load(std::memory_order_relaxed) != generation) continue;
    if (h.count == 0 || h.count > kMaxHeldFds) continue;
    UniqueFd pidfd = OpenCheckedPidfd(p.id);
    if (!pidfd.valid()) {
      if (errno == ENOSYS) return Fail(ENOSYS, "pidfd_open is not available (Linux 5.6 or later is needed)");
      continue;  // exited meanwhile
    }
    TakenFds out;
    out.doorbell_file_offset = h.doorbell_file_offset;
    out.from_pid = p.id.pid;
    for (uint32_t i = 0; i < h.count; ++i) {
      UniqueFd fd = TakeProcessFd(pidfd.get(), h.fds[i]);
      if (!fd.valid()) {
        int e = errno;
        if (e == EPERM)
          return Fail(EPERM, "cannot take the controller's file descriptors from process " + std::to_string(p.id.pid) +
                                 " (" + p.name + "): pidfd_getfd needs ptrace access — run every process of the "
                                 "group as the same user, with kernel.yama.ptrace_scope=0, or with CAP_SYS_PTRACE");
        last = Fail(e, "pidfd_getfd from process " + std::to_string(p.id.pid) + " fd " + std::to_string(h.fds[i]) +
                           ": " + std::strerror(e));
        out.fds.clear();
        break;
      }
      out.fds.push_back(std::move(fd));
    }
    if (out.fds.empty()) continue;
    NVMUX_TEST_POINT("fd.take.taken");  // duplicates held, not yet checked
    // The numbers were read before pidfd_getfd: a holder that is exiting
    // (or leaving) may have closed them meanwhile and opened something
    // else at the same numbers. The record must still be this holder's,
    // and every fd taken the very file it recorded; else try another.
    std::atomic_thread_fence(std::memory_order_acquire);
    if (std::atomic_ref<uint32_t>(shared.generation).load(std::memory_order_acquire) != generation) {
      last = Fail(ESTALE, "process " + std::to_string(p.id.pid) + " dropped its fd record while its fds were taken");
      continue;
    }
    bool same = true;
    for (uint32_t i = 0; i < out.fds.size() && same; ++i) {
      if (SameFile(IdentityOf(out.fds[i].get()), h.identity[i])) continue;
      same = false;
      last = Fail(ESTALE, "fd " + std::to_string(h.fds[i]) + " of process " + std::to_string(p.id.pid) +
                              " is no longer the file it recorded (closed and reused): not taken");
      NVMUX_LOG(kNotice, "%s", last.message.c_str());
    }
    if (same) return out;
  }
  return last;
}

void RecordVectorFds(SharedController& c, uint32_t slot, uint32_t generation, std::span<const int> fds) {
  std::atomic_ref<uint32_t>(c.irq_holder_generation).store(0, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_release);
  const size_t n = std::min<size_t>(fds.size(), kMaxSharedQids);
  for (size_t v = 0; v < kMaxSharedQids; ++v) c.irq_fds[v] = v < n ? fds[v] : -1;
  c.irq_vectors = static_cast<uint32_t>(n);
  c.irq_holder_slot = slot;
  if (n != 0) std::atomic_ref<uint32_t>(c.irq_holder_generation).store(generation, std::memory_order_release);
}

Result<UniqueFd> TakeVectorFd(SharedController& c, const shm::ProcessTable& processes, uint16_t vector) {
  const uint32_t generation = std::atomic_ref<uint32_t>(c.irq_holder_generation).load(std::memory_order_acquire);
  const uint32_t slot = c.irq_holder_slot;
  const uint32_t vectors = c.irq_vectors;
  if (generation == 0)
    return Fail(ENOTSUP, "no process of the group registered interrupt eventfds for " + std::string(c.trid) +
                             " (its transport or device offers no MSI-X vectors, or the primary that registered "
                             "them died: a primary that took the group over does not register them again)");
  if (vector >= vectors)
    return Fail(ENOTSUP, std::string(c.trid) + " has " + std::to_string(vectors) + " MSI-X vector(s) (0.." +
                             std::to_string(vectors == 0 ? 0 : vectors - 1) + "): vector " + std::to_string(vector) +
                             " does not exist");
  const int number = c.irq_fds[vector];
  std::atomic_thread_fence(std::memory_order_acquire);
  for (const shm::ProcessInfo& p : processes.Snapshot()) {
    if (p.slot != slot || p.generation != generation || p.state != shm::SlotState::kActive) continue;
    UniqueFd pidfd = OpenCheckedPidfd(p.id);
    if (!pidfd.valid()) {
      if (errno == ENOSYS) return Fail(ENOSYS, "pidfd_open is not available (Linux 5.6 or later is needed)");
      break;
    }
    UniqueFd fd = TakeProcessFd(pidfd.get(), number);
    if (!fd.valid()) {
      const int e = errno;
      if (e == EPERM)
        return Fail(EPERM, "cannot take MSI-X vector " + std::to_string(vector) + "'s eventfd from process " +
                               std::to_string(p.id.pid) + " (" + p.name + "): pidfd_getfd needs ptrace access — run "
                               "every process of the group as the same user, with kernel.yama.ptrace_scope=0, or "
                               "with CAP_SYS_PTRACE");
      return Fail(e, "pidfd_getfd of MSI-X vector " + std::to_string(vector) + "'s eventfd from process " +
                         std::to_string(p.id.pid) + ": " + std::strerror(e));
    }
    // The number was read before taking it: the holder must still be the
    // same and the file an eventfd (an exiting holder may have reused it).
    std::atomic_thread_fence(std::memory_order_acquire);
    if (std::atomic_ref<uint32_t>(c.irq_holder_generation).load(std::memory_order_acquire) != generation ||
        !IsEventfd(fd.get()))
      return Fail(ESTALE, "process " + std::to_string(p.id.pid) + " no longer holds MSI-X vector " +
                              std::to_string(vector) + "'s eventfd (exiting?)");
    return fd;
  }
  return Fail(ENOTSUP, "the process that registered the interrupt eventfds of " + std::string(c.trid) +
                           " (the primary) is gone: event mode is unavailable until a primary takes the group "
                           "over (it registers them again)");
}

namespace {

VectorHolder* HolderRecord(SharedController& c, uint16_t vector, uint32_t slot) {
  if (vector == 0) return slot < shm::kMaxProcesses ? &c.irq_admin_holders[slot] : nullptr;
  return vector < kMaxSharedQids ? &c.irq_queue_holders[vector] : nullptr;
}

// Takes `h` (a copy of `shared`, read when its generation was `generation`)
// from the live process it names; invalid when it cannot.
UniqueFd TakeHeld(const VectorHolder& h, VectorHolder& shared, uint32_t generation,
                  const std::vector<shm::ProcessInfo>& live, uint32_t vector) {
  for (const shm::ProcessInfo& p : live) {
    if (p.slot != h.slot || p.generation != generation || p.state != shm::SlotState::kActive) continue;
    UniqueFd pidfd = OpenCheckedPidfd(p.id);
    if (!pidfd.valid()) return UniqueFd();
    UniqueFd fd = TakeProcessFd(pidfd.get(), h.fd);
    if (!fd.valid()) {
      NVMUX_LOG(kWarning, "MSI-X vector %u: cannot take the eventfd process %d blocks on (%s): it gets a new one",
                vector, static_cast<int>(p.id.pid), std::strerror(errno));
      return UniqueFd();
    }
    std::atomic_thread_fence(std::memory_order_acquire);
    if (std::atomic_ref<uint32_t>(shared.generation).load(std::memory_order_acquire) != generation ||
        !IsEventfd(fd.get()))
      return UniqueFd();  // withdrawn meanwhile (its queue deleted or the process leaving)
    return fd;
  }
  return UniqueFd();
}

}  // namespace

void RecordVectorHolder(SharedController& c, uint16_t vector, uint32_t slot, uint32_t generation, int fd) {
  VectorHolder* h = HolderRecord(c, vector, slot);
  if (h == nullptr) return;
  std::atomic_ref<uint32_t>(h->generation).store(0, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_release);
  h->slot = slot;
  h->fd = fd;
  std::atomic_ref<uint32_t>(h->generation).store(generation, std::memory_order_release);
}

void ForgetVectorHolder(SharedController& c, uint16_t vector, uint32_t slot, uint32_t generation) {
  VectorHolder* h = HolderRecord(c, vector, slot);
  if (h == nullptr) return;
  if (std::atomic_ref<uint32_t>(h->generation).load(std::memory_order_acquire) == generation && h->slot == slot)
    std::atomic_ref<uint32_t>(h->generation).store(0, std::memory_order_release);
}

std::vector<UniqueFd> TakeHeldVectorFds(SharedController& c, const shm::ProcessTable& processes, uint32_t vectors) {
  std::vector<UniqueFd> out(std::min<uint32_t>(vectors, kMaxSharedQids));
  const std::vector<shm::ProcessInfo> live = processes.Snapshot();
  auto take = [&](VectorHolder& shared, uint32_t v) -> UniqueFd {
    const uint32_t generation = std::atomic_ref<uint32_t>(shared.generation).load(std::memory_order_acquire);
    if (generation == 0) return UniqueFd();
    VectorHolder h = shared;
    std::atomic_thread_fence(std::memory_order_acquire);
    if (std::atomic_ref<uint32_t>(shared.generation).load(std::memory_order_relaxed) != generation) return UniqueFd();
    return TakeHeld(h, shared, generation, live, v);
  };
  for (uint32_t v = 1; v < out.size(); ++v) out[v] = take(c.irq_queue_holders[v], v);
  // Vector 0: any one waiter's duplicate is the file all of them hold.
  if (!out.empty())
    for (uint32_t s = 0; s < shm::kMaxProcesses && !out[0].valid(); ++s) out[0] = take(c.irq_admin_holders[s], 0);
  return out;
}

Result<SharedFds> TakeSharedFds(SharedController& c, const shm::ProcessTable& processes, uint32_t self_slot) {
  auto taken = TakeFdsFromHolder(c, processes, self_slot);
  if (!taken) return taken.error();
  if (taken->fds.size() < 2) return Fail(EPROTO, "the fd record of " + std::string(c.trid) + " is incomplete");
  SharedFds out;
  out.doorbells = std::move(taken->fds[0]);
  out.doorbell_file_offset = taken->doorbell_file_offset;
  out.doorbell_bytes = c.doorbell_bytes;
  out.connection = std::move(taken->fds[1]);
  if (taken->fds.size() > 2) out.kick = std::move(taken->fds[2]);
  NVMUX_LOG(kInfo, "took the fds of %s from process %d", c.trid, static_cast<int>(taken->from_pid));
  return out;
}

}  // namespace nvmux
