// GroupLockFile: liveness of a group's processes through POSIX byte-range
// locks (fcntl F_SETLK) on one file, <runtime dir>/nvmux.lock. The kernel
// releases such locks when their holder dies (kill -9 included); they are not
// inherited across fork and work across pid namespaces that share the file.
//
// Byte layout of the locks (the file's contents hold a small header, see
// LockFileHeader; locks and contents are independent):
//   byte 0            primary role: write-locked by the nvmux primary for life
//   byte 1            membership: read-locked by every process of the group
//   byte 32           inside DPDK: read-locked while in a DpdkSection (dpdk_lock_doctor.h)
//   byte 64 + slot    process-table slot: write-locked by the slot's owner
//
// Caveat of POSIX locks: closing any fd of the file drops all of this
// process's locks on it, so a process must open the file exactly once (one
// GroupLockFile per process) and never open it elsewhere.
//
// Thread safety: queries may run from any thread; lock/unlock calls must be
// serialised by the caller (the process's single Group owns this object).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "shm/base/result.h"
#include "shm/base/unique_fd.h"

namespace nvmux::shm {

// Written by the primary at offset 0 of the lock file.
struct LockFileHeader {
  char magic[8];         // "NVMUXLCK"
  uint32_t abi_version;
  int32_t primary_pid;
  uint64_t primary_start_time;
  uint32_t ready;        // 1 once the primary has published the segment
  uint32_t nvmux_version;  // the primary's release, NVMUX_VERSION_NUMBER (0: before 0.1.0 recorded it)
};
static_assert(sizeof(LockFileHeader) == 32);

class GroupLockFile {
 public:
  static constexpr off_t kPrimaryByte = 0;
  static constexpr off_t kMemberByte = 1;
  static constexpr off_t kSlotBase = 64;

  // Opens (creating the runtime directory and file when `create`).
  // Errors: ENODEV if !create and the file does not exist; others from open(2).
  static Result<GroupLockFile> Open(const std::string& path, bool create);
  // Read-only, for the queries only (PrimaryHolder, OtherLiveMember,
  // ReadHeader): F_GETLK needs no write access, so a user allowed to read a
  // group can tell whether it lives. Errors: ENODEV if absent; others from open(2).
  static Result<GroupLockFile> OpenForProbe(const std::string& path);
  // Adopts an already open file (a standalone process's private O_TMPFILE).
  static GroupLockFile FromFd(UniqueFd fd) { return GroupLockFile(std::move(fd)); }

  // True while this open file is still the one at `path`: a file unlinked and
  // recreated by a cleaner is another file, and locks on the old one protect
  // nothing. Check after taking a lock.
  bool StillAtPath(const std::string& path) const;

  // Takes the primary role. Errors: EBUSY naming the holder's pid.
  Status LockPrimaryRole();
  // Pid holding the primary role, if any (0 when the holder is in another pid
  // namespace or the query failed: an error never reads as "nobody").
  std::optional<pid_t> PrimaryHolder() const;

  // Takes (shared) group membership for the life of this object.
  Status JoinMembership();
  // Some other process holding any lock but the primary byte: a live member
  // or slot owner. Returns its pid (0 if in another pid namespace).
  std::optional<pid_t> OtherLiveMember() const;

  // Slot liveness locks. LockSlot fails with EBUSY if another process holds it.
  Status LockSlot(uint32_t slot);
  void UnlockSlot(uint32_t slot);
  // True if another process holds the slot's lock. Never true for this
  // process's own slot (POSIX locks do not conflict with their owner).
  bool SlotHeldByOther(uint32_t slot) const;

  Status WriteHeader(const LockFileHeader& header);
  // Errors: ENODATA if the primary has not written a header yet.
  Result<LockFileHeader> ReadHeader() const;

  // The open file, for DpdkSection's byte lock (which must use this one fd).
  int fd() const { return fd_.get(); }

 private:
  explicit GroupLockFile(UniqueFd fd) : fd_(std::move(fd)) {}
  std::optional<pid_t> Probe(short type, off_t start, off_t len) const;

  UniqueFd fd_;
};

}  // namespace nvmux::shm
