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
// struct layout), then Check() looks at them. A word that stays non-zero
// and unchanged for `stuck_after` is reset to free, with a warning, but
// only while no live process declares that it holds one of DPDK's locks.
// A lock word has no owner to ask, so a process says it instead: where
// nvmux code runs while holding such a lock for possibly long (the
// memory-event callback, which DPDK calls with its hotplug lock held and
// which may block in a DMA_MAP for seconds; the walk of the existing
// memory when subscribing) it holds a DpdkSection, a read lock on byte
// kDpdkSectionByte of the group's lock file, which the kernel drops when
// the process dies. A section is entered only once the lock is held,
// never around a call that may wait for it: a process waiting for a lock
// a dead process left would otherwise keep the doctor from releasing it.
// Holds inside DPDK calls that nvmux does not see (rte_eal_init, memzone
// and heap calls) are short, so the stuck period still tells those apart
// from a holder that died.
//
// Thread safety: Create on the main thread after EAL is up; Check from one
// thread. Only the group's primary runs a doctor. DpdkSection: any thread.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "shm/base/clock.h"
#include "shm/base/result.h"

namespace nvmux::shm {

// Byte of the group lock file (see group_lock_file.h) that a process
// read-locks while inside a DpdkSection.
inline constexpr off_t kDpdkSectionByte = 32;

// RAII: this process holds one of DPDK's non-robust shared locks (enter
// it only once the lock is held). Nests, across threads too (one read lock
// per process, counted). Never blocks on other processes; without a bound
// lock file (see Bind) it only counts.
class DpdkSection {
 public:
  DpdkSection();
  ~DpdkSection();
  DpdkSection(const DpdkSection&) = delete;
  DpdkSection& operator=(const DpdkSection&) = delete;

  // The process's group lock file (its only open fd of that file: POSIX
  // locks drop when any fd of the file closes), or -1 to unbind. Group
  // binds it before starting EAL and unbinds before closing the file.
  static void Bind(int lock_file_fd);
  // Whether this process, or another live process of the group, is inside
  // a section now. Unknown (no bound file, a failed query) reads as yes.
  static bool AnyLive();
};

class DpdkLockDoctor {
 public:
  // Errors: ENOENT when DPDK's shared config is not mapped (standalone).
  [[nodiscard]] static Result<DpdkLockDoctor> Create();
  // A doctor watching the given words (name, word), for tests of Check.
  static DpdkLockDoctor Watching(std::vector<std::pair<std::string, int32_t*>> words);

  // Returns a description of each lock it reset now. A word is reset only
  // when it stayed held and unchanged for `stuck_after` during which no
  // live process was inside a DpdkSection (a section seen restarts the
  // wait: the holder may be about to release it).
  std::vector<std::string> Check(int64_t now_ns, Nanos stuck_after = std::chrono::seconds(1));
  size_t watched() const { return locks_.size(); }
  // The watched words (name, word), e.g. for a test that leaves one held.
  std::vector<std::pair<std::string, int32_t*>> Words() const;

  // A takeover's problem: DPDK's primary is dead, so a lock word a killed
  // process left held would hang this process's own rte_eal_init (a
  // secondary's init allocates from the shared heap), and with it the only
  // process that would run a doctor. So the group's primary records where
  // the words are (offsets into DPDK's shared config file, the same for
  // every process) once its EAL is up, and a process taking the group over
  // repairs them from the file before it joins DPDK.
  // Writes the offsets of the words of Create() to `map_path` (atomically).
  Status SaveLockMap(const std::string& map_path) const;
  // Before EAL: maps `config_path` and watches the words `map_path` lists,
  // repairing as Check() does, until none is held or `give_up` passed.
  // Returns what it repaired; a missing map (a group made by an older
  // release) repairs nothing. Needs DpdkSection::Bind done.
  static Result<std::vector<std::string>> RepairBeforeJoin(const std::string& config_path,
                                                           const std::string& map_path,
                                                           Nanos stuck_after = std::chrono::seconds(1),
                                                           Nanos give_up = std::chrono::seconds(5));

 private:
  struct Watched {
    std::string name;
    int32_t* word;
    size_t config_offset = SIZE_MAX;  // where in DPDK's config file (SIZE_MAX: unknown)
    int32_t last = 0;
    int64_t since_ns = 0;
  };
  std::vector<Watched> locks_;
};

}  // namespace nvmux::shm
