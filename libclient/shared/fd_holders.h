// FdHolders: which processes of a group hold a controller's file
// descriptors, and at which numbers, so that a process can take duplicates
// from another one with pidfd_getfd(2) when the primary cannot hand them
// over through DPDK's IPC: after the primary died (a restarted nvmuxd that
// takes the group over, or a secondary joining in the meantime), DPDK's
// IPC has no primary to answer.
//
// Every process that holds a controller's fds records them here (the
// primary when it publishes, a secondary when it imports); leaving, and
// the reaper for a dead process, clears the record. pidfd_getfd needs
// ptrace access to the holder: the same user (or CAP_SYS_PTRACE) and no
// Yama restriction (kernel.yama.ptrace_scope 0); errors say so.
//
// Thread safety: Record takes the controller's lock, Forget runs under it;
// Take from any thread without it. The records live in the SharedController.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "libclient/shared/fd_share.h"
#include "libclient/shared/shared_controller.h"
#include "shm/base/result.h"
#include "shm/base/unique_fd.h"
#include "shm/process_identity.h"
#include "shm/process_table.h"
#include "shm/robust_mutex.h"

namespace nvmux {

// Taking another process's file descriptors (pidfd_getfd), the steps every
// taker here shares. OpenCheckedPidfd: a pidfd on the process `id` names,
// invalid when it is gone or its pid now belongs to another process (the
// start time differs: errno ESRCH) or pidfd_open fails (errno, ENOSYS
// before Linux 5.6). TakeProcessFd: a duplicate of fd `number` of the
// process `pidfd` pins (invalid with errno: EPERM without ptrace access).
UniqueFd OpenCheckedPidfd(const shm::ProcessIdentity& id);
UniqueFd TakeProcessFd(int pidfd, int number);
// Whether `fd` is an eventfd (a taken number may have been reused).
bool IsEventfd(int fd);

// Records this process (`slot`, `generation`) as holding `fds`
// (at most kMaxHeldFds) with the doorbell area at `doorbell_file_offset`.
// `lock` is the controller's lock as its SharedAdminQueue holds it (with
// the admin queue's repair).
void RecordFdHolder(SharedController& c, shm::RobustLock& lock, uint32_t slot, uint32_t generation,
                    std::span<const int> fds, uint64_t doorbell_file_offset);
// Clears `slot`'s record (leaving, or reaping a dead process).
// REQUIRES: the controller's lock is held (SharedAdminQueue calls it).
void ForgetFdHolder(SharedController& c, uint32_t slot);

struct TakenFds {
  std::vector<UniqueFd> fds;  // in the order recorded
  uint64_t doorbell_file_offset = 0;
  int32_t from_pid = 0;
};

// Duplicates the fds of a live holder other than `self_slot`, checking its
// identity (pid and start time) against the process table. Each fd taken
// must be the file its holder recorded (fstat type, device and inode, kept
// in the record by RecordFdHolder) and the record must still be that
// holder's after taking: a holder that is exiting may have closed the
// numbers and reused them for other files; such fds are closed and the
// next holder is tried. (Anonymous-inode files such as eventfds all share
// one inode, so for them the check is by type only.)
// Errors: ENOENT (no live process holds them), ESTALE (the only holders'
// fds were no longer the recorded files), EPERM (no ptrace access: names
// the pid and what to change), ENOSYS (kernel older than 5.6).
// Reads the records without the lock (each is checked against its
// generation before and after copying, and again after taking).
[[nodiscard]] Result<TakenFds> TakeFdsFromHolder(SharedController& c, const shm::ProcessTable& processes,
                                                 uint32_t self_slot);
// The same, as the SharedFds a transport is built from (doorbells,
// connection, kick). Errors: as above; EPROTO for an incomplete record.
[[nodiscard]] Result<SharedFds> TakeSharedFds(SharedController& c, const shm::ProcessTable& processes,
                                              uint32_t self_slot);

// Interrupt vectors (SharedController::irq_*). RecordVectorFds: this process
// (`slot`, `generation`) registered `fds[v]` with the device for vector v
// (at most kMaxSharedQids); an empty span withdraws the record.
// REQUIRES: nothing else writes the irq fields meanwhile (the primary, at
// publish or detach).
void RecordVectorFds(SharedController& c, uint32_t slot, uint32_t generation, std::span<const int> fds);
// A duplicate of vector `vector`'s eventfd, taken from the recorded holder
// with pidfd_getfd and checked to be an eventfd while the record stayed
// that holder's. Errors: ENOTSUP (no holder recorded — the transport or
// device offers no interrupts, or the primary that registered them died
// and no primary has taken the group over yet — or the vector is beyond
// the device's; names the vector and the count), EPERM (no ptrace access,
// as above), ESTALE (the holder is exiting).
[[nodiscard]] Result<UniqueFd> TakeVectorFd(SharedController& c, const shm::ProcessTable& processes,
                                            uint16_t vector);

// A process other than the registering one records the duplicate it took
// (`fd`, its number here) while it may block on it: vector v >= 1 by the
// owner of queue id v, vector 0 by each process waiting for admin
// completions (by its slot). Forget withdraws the record; call it before
// closing the fd (it does nothing when the record is not this process's).
// No lock: each record has one writer (the queue id's owner; the slot's
// process), which writes the generation last.
void RecordVectorHolder(SharedController& c, uint16_t vector, uint32_t slot, uint32_t generation, int fd);
void ForgetVectorHolder(SharedController& c, uint16_t vector, uint32_t slot, uint32_t generation);

// For a primary that took the group over and must register the vectors
// again (the dead primary's eventfds died with it, but the device still
// signals the duplicates live processes hold and block on): for each
// vector below `vectors`, a duplicate of the eventfd a live process
// recorded with RecordVectorHolder (checked as TakeVectorFd checks), or an
// invalid fd when none does. Re-registering exactly the taken files keeps
// every blocked waiter's eventfd the one the device signals. Never fails:
// a holder that cannot be taken from (exited, EPERM) leaves its vector
// invalid, logged; the caller registers a fresh eventfd for it.
[[nodiscard]] std::vector<UniqueFd> TakeHeldVectorFds(SharedController& c, const shm::ProcessTable& processes,
                                                      uint32_t vectors);

}  // namespace nvmux
