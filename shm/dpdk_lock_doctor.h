// DpdkLockDoctor: repairs DPDK's shared locks after their holder was killed.
//
// DPDK's multi-process locks (the memory hotplug, tailq and mempool
// rwlocks, the timer spinlock, each memseg list's fbarray rwlock) are plain
// words in shared memory, not robust: a process killed with kill -9 inside
// DPDK's memory code — a secondary during rte_eal_init, say — leaves one
// held, and every later secondary hangs joining the group. nvmux's own
// state is protected by robust locks; this is the safety net for DPDK's.
//
// The doctor finds each lock word once (by watching it change while this
// process takes and releases the lock: no dependency on DPDK's private
// struct layout), then Check() looks at them: a word that stays non-zero
// and unchanged for `stuck_after` is reset to free, with a warning. No
// legitimate holder keeps these locks for long: they guard short
// operations (memory map changes, walks), and group members never change
// the memory map after start-up (DMA memory comes from the group's pool).
//
// Thread safety: Create on the main thread after EAL is up; Check from one
// thread. Only the group's primary runs a doctor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shm/base/clock.h"
#include "shm/base/result.h"

namespace nvmux::shm {

class DpdkLockDoctor {
 public:
  // Errors: ENOENT when DPDK's shared config is not mapped (standalone).
  [[nodiscard]] static Result<DpdkLockDoctor> Create();

  // Returns a description of each lock it reset now.
  std::vector<std::string> Check(int64_t now_ns, Nanos stuck_after = std::chrono::seconds(1));
  size_t watched() const { return locks_.size(); }

 private:
  struct Watched {
    std::string name;
    int32_t* word;
    int32_t last = 0;
    int64_t since_ns = 0;
  };
  std::vector<Watched> locks_;
};

}  // namespace nvmux::shm
