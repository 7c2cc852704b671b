// ProcessIdentity: who a process is, robust against pid reuse. A pid alone is
// reused by the kernel; pid plus the process start time (clock ticks since
// boot, /proc/<pid>/stat field 22) names one process for the life of the boot.
//
// Thread safety: free functions, no shared state.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "shm/base/result.h"

namespace nvmux::shm {

struct ProcessIdentity {
  int32_t pid = 0;
  uint64_t start_time = 0;

  bool operator==(const ProcessIdentity&) const = default;
};

// The start time of `pid` as this process's /proc shows it.
// Errors: ESRCH if no such process is visible, EPROTO if /proc/<pid>/stat is unreadable as expected.
Result<uint64_t> ReadProcessStartTime(pid_t pid);

// This process's identity (cached after the first call; fork-aware).
ProcessIdentity SelfIdentity();

// True if a process with this exact identity is visible in this pid namespace
// and not a zombie. A process in another pid namespace reads as not running:
// callers must use the group's lock-based liveness for the verdict.
bool IdentityRunning(const ProcessIdentity& id);

}  // namespace nvmux::shm
