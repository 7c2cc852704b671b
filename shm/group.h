// Group: this process's membership of a shared-memory group, or a private
// standalone environment. The one entry point of shm/.
//
// Roles:
//  - primary (group id, create): takes the group's primary-role lock, cleans
//    the leftovers of a dead group, brings up EAL as DPDK primary, creates and
//    publishes the segment (process table, DMA table). When the previous
//    primary died and members still run, it takes the group over instead:
//    joins DPDK as a secondary (DPDK's primary state cannot be rebuilt under
//    running processes), adopts the segment and its tables, and holds the
//    primary role from then on (took_over()).
//  - secondary (group id, join): fails at once with a message naming the
//    group and what to start when the primary is missing, dead or of another
//    ABI version; waits up to `ready_timeout` (10 s) for a live primary that
//    is still starting; never hangs.
//  - standalone (no group id): private memory (EAL --in-memory), same types.
//
// Every role registers in the process table and owns a DMA allocator whose
// allocations are recorded against its slot. Destroying the Group
// unregisters (freeing this process's DMA memory); a primary that is the last
// process of its group also removes the group's files.
//
// Thread safety: create and destroy on the main thread; accessors may be
// used from any thread (the objects they return state their own rules).
// Only one Group per process (DPDK EAL initialises once).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "shm/base/clock.h"
#include "shm/base/result.h"
#include "shm/core_set.h"
#include "shm/death_watcher.h"
#include "shm/dma.h"
#include "shm/dma_pool.h"
#include "shm/eal.h"
#include "shm/group_lock_file.h"
#include "shm/group_paths.h"
#include "shm/process_table.h"
#include "shm/robust_mutex.h"
#include "shm/segment.h"

namespace nvmux::shm {

struct GroupOptions {
  std::optional<int> group_id;          // none: standalone
  bool create = false;                  // with a group id: primary (true) or secondary
  std::string name = "nvmux";           // shown in the process table and status
  std::optional<CoreSet> cores;         // recorded; the main thread is pinned to them
  size_t mem_mb = 0;                    // primary/standalone hugepage preallocation
  size_t segment_bytes = 8u << 20;      // primary: size of the managed segment
  size_t dma_pool_mb = kDefaultDmaPoolMb;  // primary: the group's DMA pool (dma_pool.h)
  uint32_t max_processes = kMaxProcesses;  // primary: process slots (1..kMaxProcesses), nvmuxd --max-processes
  // Primary: the Unix group that may use the group's files (group_access.h);
  // none: only the primary's user (and root).
  std::optional<gid_t> access_gid;
  Nanos attach_timeout = std::chrono::seconds(1);
  // Secondary: how long to wait for a live primary that holds the role but
  // is still starting (DPDK's init, its DMA pool, or a takeover: seconds on
  // a loaded machine). A missing or dead primary still fails at once.
  Nanos ready_timeout = std::chrono::seconds(10);
  uint32_t abi_version = kAbiVersion;   // tests set another to check refusal
  // Primary creating the group: constructs the upper layers' named tables in
  // the segment before it is published (under the group lock), so nothing
  // allocates in the segment later: Boost's segment manager has no repair
  // for a holder that dies mid-allocation.
  std::function<Status(Segment&, const Segment::Guard&)> construct_tables;
};

// What a group looks like from outside (no EAL needed).
// kStale only when the lock checks prove every process dead (or no lock file
// exists, which no live member can be without); kUnknown when this process
// cannot tell (the lock file or a directory cannot be read): `reason` says
// which path and why. Never guessed from missing permissions.
struct GroupProbe {
  enum class State { kAbsent, kLive, kStale, kUnknown };
  State state = State::kAbsent;
  std::optional<pid_t> primary;           // holder of the primary role
  std::optional<pid_t> member;            // some other live member
  std::vector<std::string> files;         // what exists on disk (that this process can see)
  std::string where;                      // the runtime directory looked at
  std::string reason;                     // kUnknown: what could not be read, and why
};
Result<GroupProbe> ProbeGroup(int group_id);
// Removes a dead group's files. Errors: EBUSY while any process of it lives
// (names its pid); EACCES when it cannot prove the group dead (names what it
// could not read) or cannot remove a file (names the file and its owner),
// before anything is removed.
Result<std::vector<std::string>> CleanStaleGroup(int group_id);

class Group {
 public:
  // Errors: see the role notes above; each message names the group and the
  // bad value or what to do.
  static Result<std::unique_ptr<Group>> Open(const GroupOptions& options);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  ProcessRole role() const { return role_; }
  // A primary that took over a running group from a dead primary: the
  // group's shared state (controllers included) exists and is adopted.
  bool took_over() const { return took_over_; }
  pid_t dead_primary() const { return dead_primary_; }  // when took_over(): the pid it replaced
  // -1 when standalone.
  int id() const { return id_; }
  uint32_t self_slot() const { return *table_->self_slot(); }

  Segment& segment() { return *segment_; }
  RobustLock& lock() { return *lock_; }
  ProcessTable& processes() { return *table_; }
  // REQUIRES: every DmaBuffer from it is destroyed before the Group.
  DmaAllocator& dma() { return *dma_; }
  GroupLockFile& lock_file() { return *lock_file_; }

  // Primary with an access group: gives files DPDK created since (mp sockets,
  // hugepage files) to the access group; nothing otherwise. Idempotent.
  Status ShareFiles();

  // Reaps every dead process now; returns what was reaped.
  std::vector<ReapRecord> ReapDead();

 private:
  Group() = default;
  Status OpenPrimary(const GroupOptions& o);
  Status OpenSecondary(const GroupOptions& o);
  Status TakeOver(const GroupOptions& o, pid_t member, pid_t dead_primary);
  // DPDK's lock words for a later takeover (dpdk_lock_doctor.h): the file, and saving it.
  std::string LockMapPath() const;
  void SaveDpdkLockMap();
  Status OpenStandalone(const GroupOptions& o);
  Status OpenLockFile(ProcessRole role, int id);
  Status StartEal(const GroupOptions& o, EalProcType type, const std::string& prefix);
  Status CreateSegment(const GroupOptions& o);  // primary/standalone: memzone, tables, publish
  Status AttachSegment(const GroupOptions& o);
  Status Finish(const GroupOptions& o);

  ProcessRole role_ = ProcessRole::kStandalone;
  int id_ = -1;
  std::optional<GroupPaths> paths_;
  std::string standalone_prefix_;
  std::string standalone_run_dir_;
  std::optional<gid_t> access_gid_;
  std::unique_ptr<GroupLockFile> lock_file_;
  bool eal_up_ = false;
  bool became_primary_ = false;  // holds the role and withdrew any dead primary's flag
  bool took_over_ = false;       // primary of a group whose first primary died (DPDK secondary)
  pid_t dead_primary_ = 0;
  std::unique_ptr<Segment> segment_;
  std::unique_ptr<RobustLock> lock_;
  std::unique_ptr<ProcessTable> table_;
  std::unique_ptr<DmaBackend> dma_backend_;  // the group's pool; DPDK's heap when standalone
  std::unique_ptr<DmaAllocator> dma_;
};

}  // namespace nvmux::shm
