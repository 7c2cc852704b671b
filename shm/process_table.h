// ProcessTable: one slot per process attached to a group, in shared memory.
//
// A slot records pid + start time (identity robust to pid reuse), role, name,
// core set and attach time. Liveness is not the pid: each slot's owner holds
// the slot's byte lock in the group lock file (group_lock_file.h) for life;
// the kernel drops it on death, so "slot in use and lock not held" means the
// owner is dead, in any pid namespace, whatever process now has its pid.
//
// Reaping a dead slot has three phases. Under the group lock: the slot
// becomes kReaping and records its reaper (slot + generation): the intent.
// Without the group lock: the device hooks (the driver deletes the dead
// process's I/O queues on the device: round trips of up to seconds, which
// must not stall every other process's DMA allocation, registration and
// lookups). Under the group lock again: the locked hooks (free the dead
// process's DMA memory, except what a device hook quarantined), then the
// slot is freed. Any process may reap; the primary's reaper normally does
// (see death_watcher.h).
//
// Invariant that makes repair unnecessary: a slot leaves kFree only after its
// byte lock is taken, so a non-free slot whose lock is free is dead, whatever
// moment its owner died at. Hooks must be idempotent: a reaper that dies
// mid-reap leaves the slot kReaping and the next reaper runs them again
// (while the recorded reaper lives, nobody else reaps that slot).
//
// Thread safety: methods take the group lock themselves unless they take a
// Guard (proof the caller holds it). Snapshot() may run without the lock.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "shm/core_set.h"
#include "shm/group_lock_file.h"
#include "shm/process_identity.h"
#include "shm/robust_mutex.h"

namespace nvmux::shm {

constexpr uint32_t kMaxProcesses = 64;
constexpr uint32_t kReapHistory = 16;

enum class SlotState : uint32_t { kFree = 0, kActive = 1, kReaping = 2 };
enum class ProcessRole : uint32_t { kPrimary = 0, kSecondary = 1, kStandalone = 2 };
const char* ToString(SlotState state);
const char* ToString(ProcessRole role);

struct ProcessSlot {
  uint32_t state;            // SlotState (atomic_ref)
  uint32_t generation;       // bumped on every registration of this slot
  int32_t pid;
  uint32_t role;             // ProcessRole
  uint64_t start_time;
  uint64_t attach_realtime_ns;
  uint64_t core_words[CoreSet::kMaxCores / 64];
  char name[32];
  uint32_t reaper_slot;        // kReaping: the slot reaping it (kMaxProcesses: none)
  uint32_t reaper_generation;  // and that slot's generation
  uint32_t device_user;        // 1 once it may own queues on a device (MarkDeviceUser; atomic_ref)
  uint32_t reserved;
};

struct ReapRecord {
  int32_t pid;
  uint32_t slot;
  uint64_t reaped_realtime_ns;
  uint64_t released_items;   // what the cleanup hooks reported freeing
  char name[32];
};

struct ProcessTableState {
  uint32_t capacity;
  uint32_t changes;          // bumped on every slot change (atomic_ref)
  uint32_t reaped_total;
  uint32_t reserved;
  ProcessSlot slots[kMaxProcesses];
  ReapRecord reaped[kReapHistory];  // ring, reaped_total % kReapHistory
};
static_assert(std::is_standard_layout_v<ProcessTableState>);
static_assert(std::is_trivially_copyable_v<ProcessTableState>);

struct ProcessInfo {
  uint32_t slot;
  uint32_t generation;
  SlotState state;
  ProcessIdentity id;
  ProcessRole role;
  std::string name;
  CoreSet cores;
};

class ProcessTable {
 public:
  // Runs while a dead slot is reaped (locked hooks under the group lock,
  // device hooks without it); returns how many things it released. Must be
  // idempotent.
  using CleanupHook = std::function<uint64_t(uint32_t slot)>;

  // Primary only, before the segment is published.
  static void InitState(ProcessTableState& state, uint32_t capacity = kMaxProcesses);

  // All three must outlive the table.
  ProcessTable(ProcessTableState& state, RobustLock& lock, GroupLockFile& locks)
      : state_(state), lock_(lock), locks_(locks) {}
  ProcessTable(const ProcessTable&) = delete;
  ProcessTable& operator=(const ProcessTable&) = delete;

  // Registers this process. Errors: EALREADY (already registered, names the
  // slot), ENOSPC (table full: names the capacity and nvmuxd's --max-processes), lock errors.
  Result<uint32_t> Register(ProcessRole role, std::string_view name, const CoreSet& cores);
  // Frees this process's slot after running the cleanup hooks for it. If the
  // slot is no longer ours (reaped by mistake and reused), touches nothing.
  Status Unregister();
  std::optional<uint32_t> self_slot() const { return self_slot_; }
  uint32_t self_generation() const { return self_generation_; }

  // A hook run under the group lock (frees shared records).
  void AddCleanupHook(CleanupHook hook) { hooks_.push_back(std::move(hook)); }
  // A hook run WITHOUT the group lock, before the locked hooks (the driver
  // deletes a dead process's I/O queues on the device before its DMA memory
  // is freed). It may block on a device; it must take whatever locks it
  // needs itself. Not run by Register's inline reap, which therefore only
  // reaps dead processes that never marked themselves device users.
  void AddDeviceCleanupHook(CleanupHook hook) { device_hooks_.push_back(std::move(hook)); }

  // Records that this process may own queues on a device from now on (the
  // driver calls it before it takes a queue id): Register's inline reap
  // leaves such a dead process to the reaper with device hooks (nvmuxd),
  // which deletes its queues before its memory is freed. No lock needed.
  void MarkDeviceUser();

  // True if the slot's owner is alive (always true for this process's slot).
  bool IsAlive(uint32_t slot) const;
  // Non-free slots whose owners are dead, with their generations.
  std::vector<ProcessInfo> FindDead() const;
  // Reaps one dead slot if it still holds `generation` (the three phases
  // above). Blocks as long as the device hooks do. Errors: ENOENT (already
  // reaped or reused), EBUSY (owner alive), EINPROGRESS (another live
  // process is reaping it), lock errors.
  Result<ReapRecord> Reap(uint32_t slot, uint32_t generation);

  // Consistent-enough copy of every non-free slot (reads without the lock).
  std::vector<ProcessInfo> Snapshot() const;
  std::vector<ReapRecord> ReapHistory() const;
  uint32_t changes() const;
  uint32_t capacity() const { return state_.capacity; }

 private:
  ProcessInfo InfoOf(uint32_t slot) const;
  // True if `slot` is kReaping and its recorded reaper still lives
  // (this process included).
  bool ReaperAlive(uint32_t slot) const;
  // The locked phase: locked hooks, history, slot freed. `device_released`
  // is what the device hooks reported.
  ReapRecord ReapLocked(uint32_t slot, uint64_t device_released = 0);

  ProcessTableState& state_;
  RobustLock& lock_;
  GroupLockFile& locks_;
  std::vector<CleanupHook> hooks_;
  std::vector<CleanupHook> device_hooks_;
  std::optional<uint32_t> self_slot_;
  uint32_t self_generation_ = 0;
};

}  // namespace nvmux::shm
