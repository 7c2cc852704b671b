#include "shm/process_table.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "shm/death_watcher.h"
#include "shm/test_support.h"

namespace nvmux::shm {
namespace {

using testing::ForkChild;
using testing::Pipe;
using testing::SharedMapping;
using testing::TempLockFile;
using testing::WaitExit;

struct Shared {
  RobustMutexState lock;
  ProcessTableState table;
};

// One process's view: its own lock-file descriptor (POSIX locks are per
// process), lock handle and table.
struct View {
  GroupLockFile file;
  RobustLock lock;
  ProcessTable table;
  View(Shared& s, const std::string& path)
      : file(std::move(*GroupLockFile::Open(path, true))), lock(s.lock, nullptr), table(s.table, lock, file) {}
};

class ProcessTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(InitRobustMutex(shared_->lock));
    ProcessTable::InitState(shared_->table, 4);
  }
  // A child that registers, reports, then waits to be killed.
  pid_t SpawnRegistered() {
    Pipe registered;
    pid_t pid = ForkChild([&] {
      View v(*shared_, file_.path());
      if (!v.table.Register(ProcessRole::kSecondary, "child", *CoreSet::Parse("0x2"))) return 1;
      registered.Signal();
      for (;;) pause();
    });
    EXPECT_TRUE(registered.Wait());
    return pid;
  }
  SharedMapping<Shared> shared_;
  TempLockFile file_;
};

TEST_F(ProcessTableTest, RegistersOnceAndUnregisters) {
  View v(*shared_, file_.path());
  auto slot = v.table.Register(ProcessRole::kPrimary, "primary", *CoreSet::Parse("0x1"));
  ASSERT_TRUE(slot) << slot.error().message;
  auto again = v.table.Register(ProcessRole::kPrimary, "primary", *CoreSet::Parse("0x1"));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, EALREADY);
  auto snap = v.table.Snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].id, SelfIdentity());
  EXPECT_EQ(snap[0].name, "primary");
  EXPECT_TRUE(v.table.IsAlive(*slot));
  ASSERT_TRUE(v.table.Unregister());
  EXPECT_TRUE(v.table.Snapshot().empty());
}

TEST_F(ProcessTableTest, SecondViewOfTheSameProcessIsRefused) {
  View a(*shared_, file_.path());
  ASSERT_TRUE(a.table.Register(ProcessRole::kPrimary, "a", CoreSet::CurrentAffinity()));
  // Not a second lock-file open in real code (it would drop POSIX locks); the
  // table itself must still refuse a duplicate identity.
  ProcessTable b(shared_->table, a.lock, a.file);
  auto dup = b.Register(ProcessRole::kSecondary, "b", CoreSet::CurrentAffinity());
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, EALREADY);
}

TEST_F(ProcessTableTest, FullTableIsENOSPCNamingTheCapacityAndOption) {
  ProcessTable::InitState(shared_->table, 1);
  View v(*shared_, file_.path());
  ASSERT_TRUE(v.table.Register(ProcessRole::kPrimary, "p", CoreSet::CurrentAffinity()));
  pid_t child = ForkChild([&] {
    View c(*shared_, file_.path());
    auto r = c.table.Register(ProcessRole::kSecondary, "s", CoreSet::CurrentAffinity());
    if (r) return 1;
    if (r.error().code != ENOSPC) return 2;
    if (r.error().message.find("--max-processes") == std::string::npos) return 4;
    return r.error().message.find("full (1 ") != std::string::npos ? 0 : 3;
  });
  int status = WaitExit(child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(ProcessTableTest, KilledProcessIsFoundDeadAndReapedOnce) {
  View v(*shared_, file_.path());
  ASSERT_TRUE(v.table.Register(ProcessRole::kPrimary, "p", CoreSet::CurrentAffinity()));
  std::vector<uint32_t> cleaned;
  v.table.AddCleanupHook([&](uint32_t slot) -> uint64_t {
    cleaned.push_back(slot);
    return 3;
  });
  pid_t child = SpawnRegistered();
  EXPECT_TRUE(v.table.FindDead().empty());
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  WaitExit(child);
  auto dead = v.table.FindDead();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id.pid, child);
  EXPECT_EQ(dead[0].name, "child");
  auto rec = v.table.Reap(dead[0].slot, dead[0].generation);
  ASSERT_TRUE(rec) << rec.error().message;
  EXPECT_EQ(rec->pid, child);
  EXPECT_EQ(rec->released_items, 3u);
  EXPECT_EQ(cleaned, std::vector<uint32_t>{dead[0].slot});
  auto twice = v.table.Reap(dead[0].slot, dead[0].generation);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code, ENOENT);
  EXPECT_EQ(v.table.ReapHistory().size(), 1u);
  EXPECT_EQ(v.table.Snapshot().size(), 1u);
}

// Device hooks (queue deletion on a device: seconds) run without the group
// lock, before the locked hooks (DMA memory), which run with it.
TEST_F(ProcessTableTest, DeviceHooksRunWithoutTheGroupLockBeforeLockedHooks) {
  View v(*shared_, file_.path());
  ASSERT_TRUE(v.table.Register(ProcessRole::kPrimary, "p", CoreSet::CurrentAffinity()));
  std::vector<std::string> order;
  v.table.AddDeviceCleanupHook([&](uint32_t) -> uint64_t {
    order.push_back(v.lock.TryLock() ? "device:unlocked" : "device:locked");
    return 2;
  });
  v.table.AddCleanupHook([&](uint32_t) -> uint64_t {
    order.push_back(v.lock.TryLock() ? "locked:unlocked" : "locked:locked");
    return 1;
  });
  pid_t child = SpawnRegistered();
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  WaitExit(child);
  auto dead = v.table.FindDead();
  ASSERT_EQ(dead.size(), 1u);
  auto rec = v.table.Reap(dead[0].slot, dead[0].generation);
  ASSERT_TRUE(rec) << rec.error().message;
  EXPECT_EQ(rec->released_items, 3u);
  EXPECT_EQ(order, (std::vector<std::string>{"device:unlocked", "locked:locked"}));
}

// A reaper killed inside its device hooks leaves the slot kReaping; while it
// lived nobody else reaped the slot, and the next reaper runs every hook again.
TEST_F(ProcessTableTest, ReaperKilledInItsDeviceHooksIsFinishedByTheNext) {
  pid_t victim = SpawnRegistered();
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  WaitExit(victim);
  Pipe in_hook;
  pid_t reaper = ForkChild([&] {
    View r(*shared_, file_.path());
    if (!r.table.Register(ProcessRole::kPrimary, "reaper", CoreSet::CurrentAffinity())) return 1;
    r.table.AddDeviceCleanupHook([&](uint32_t) -> uint64_t {
      in_hook.Signal();
      for (;;) pause();  // killed here
    });
    auto dead = r.table.FindDead();
    if (dead.size() != 1) return 2;
    (void)r.table.Reap(dead[0].slot, dead[0].generation);
    return 3;
  });
  ASSERT_TRUE(in_hook.Wait());
  View v(*shared_, file_.path());
  ASSERT_TRUE(v.table.Register(ProcessRole::kSecondary, "next", CoreSet::CurrentAffinity()));
  int device_runs = 0, locked_runs = 0;
  v.table.AddDeviceCleanupHook([&](uint32_t) -> uint64_t { return ++device_runs, 0; });
  v.table.AddCleanupHook([&](uint32_t) -> uint64_t { return ++locked_runs, 0; });
  auto dead = v.table.FindDead();
  ASSERT_EQ(dead.size(), 1u);
  auto busy = v.table.Reap(dead[0].slot, dead[0].generation);
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code, EINPROGRESS) << busy.error().message;
  EXPECT_EQ(device_runs, 0);
  ASSERT_EQ(::kill(reaper, SIGKILL), 0);
  WaitExit(reaper);
  bool victim_reaped = false;
  for (const ProcessInfo& d : v.table.FindDead()) {
    auto rec = v.table.Reap(d.slot, d.generation);
    ASSERT_TRUE(rec) << rec.error().message;
    victim_reaped |= rec->pid == victim;
  }
  EXPECT_TRUE(victim_reaped);
  EXPECT_EQ(device_runs, 2);  // the victim's, then the dead reaper's own slot
  EXPECT_EQ(locked_runs, 2);
  EXPECT_TRUE(v.table.FindDead().empty());
}

TEST_F(ProcessTableTest, LiveProcessIsNotReaped) {
  View v(*shared_, file_.path());
  ASSERT_TRUE(v.table.Register(ProcessRole::kPrimary, "p", CoreSet::CurrentAffinity()));
  pid_t child = SpawnRegistered();
  auto snap = v.table.Snapshot();
  ASSERT_EQ(snap.size(), 2u);
  const ProcessInfo& other = snap[0].id.pid == child ? snap[0] : snap[1];
  auto r = v.table.Reap(other.slot, other.generation);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EBUSY);
  ::kill(child, SIGKILL);
  WaitExit(child);
}

TEST_F(ProcessTableTest, FullTableReapsADeadProcessToMakeRoom) {
  ProcessTable::InitState(shared_->table, 1);
  pid_t child = SpawnRegistered();
  ::kill(child, SIGKILL);
  WaitExit(child);
  View v(*shared_, file_.path());
  int hook_runs = 0;
  v.table.AddCleanupHook([&](uint32_t) -> uint64_t { return ++hook_runs, 0; });
  auto slot = v.table.Register(ProcessRole::kPrimary, "p", CoreSet::CurrentAffinity());
  ASSERT_TRUE(slot) << slot.error().message;
  EXPECT_EQ(hook_runs, 1);
  EXPECT_EQ(v.table.ReapHistory().back().pid, child);
}

// A dead process that may own device queues is not reaped inline (its
// memory must outlive its queues, which only nvmuxd's reaper deletes): the
// table stays full, and the error says why.
TEST_F(ProcessTableTest, FullTableLeavesADeadDeviceUserToTheReaper) {
  ProcessTable::InitState(shared_->table, 1);
  Pipe marked;
  pid_t child = ForkChild([&] {
    View v(*shared_, file_.path());
    if (!v.table.Register(ProcessRole::kSecondary, "child", *CoreSet::Parse("0x2"))) return 1;
    v.table.MarkDeviceUser();
    marked.Signal();
    for (;;) pause();
  });
  ASSERT_TRUE(marked.Wait());
  ::kill(child, SIGKILL);
  WaitExit(child);
  View v(*shared_, file_.path());
  int hook_runs = 0;
  v.table.AddCleanupHook([&](uint32_t) -> uint64_t { return ++hook_runs, 0; });
  auto slot = v.table.Register(ProcessRole::kSecondary, "s", CoreSet::CurrentAffinity());
  ASSERT_FALSE(slot);
  EXPECT_EQ(slot.error().code, EAGAIN);
  EXPECT_NE(slot.error().message.find("1 of them dead with device queues"), std::string::npos)
      << slot.error().message;
  EXPECT_EQ(hook_runs, 0);
  // The reaper (with its device hooks) reaps it; then there is room.
  auto dead = v.table.FindDead();
  ASSERT_EQ(dead.size(), 1u);
  ASSERT_TRUE(v.table.Reap(dead[0].slot, dead[0].generation));
  EXPECT_TRUE(v.table.Register(ProcessRole::kSecondary, "s", CoreSet::CurrentAffinity()));
}

// A slot whose pid now belongs to an unrelated live process (pid reuse): the
// pid is alive, but the slot's owner is not, and both checks say so.
TEST_F(ProcessTableTest, ReusedPidIsNotMistakenForTheOwner) {
  View v(*shared_, file_.path());
  ASSERT_TRUE(v.table.Register(ProcessRole::kPrimary, "p", CoreSet::CurrentAffinity()));
  pid_t unrelated = ForkChild([]() -> int {
    for (;;) pause();
  });
  auto start = ReadProcessStartTime(unrelated);
  ASSERT_TRUE(start);
  ProcessSlot& s = shared_->table.slots[3];
  s.pid = unrelated;
  s.start_time = *start + 12345;  // the dead owner's start time, not the new process's
  s.generation = 7;
  std::snprintf(s.name, sizeof(s.name), "ghost");
  s.state = static_cast<uint32_t>(SlotState::kActive);
  shared_->table.changes++;

  EXPECT_FALSE(IdentityRunning(ProcessIdentity{unrelated, s.start_time}));
  EXPECT_TRUE(IdentityRunning(ProcessIdentity{unrelated, *start}));
  EXPECT_FALSE(v.table.IsAlive(3));
  auto watcher = DeathWatcher::Create(v.table);
  ASSERT_TRUE(watcher);
  auto dead = watcher->Wait(std::chrono::milliseconds(100));
  ASSERT_TRUE(dead);
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ((*dead)[0].slot, 3u);
  EXPECT_TRUE(v.table.Reap(3, 7));
  ::kill(unrelated, SIGKILL);
  WaitExit(unrelated);
}

// Each kill -9 is reported by one Wait, to the right pid. (How fast is a
// benchmark's question: scripts/bench/reap.sh, BENCHMARKS.md.)
TEST_F(ProcessTableTest, DeathWatcherReportsEachKill9) {
  View v(*shared_, file_.path());
  ASSERT_TRUE(v.table.Register(ProcessRole::kPrimary, "p", CoreSet::CurrentAffinity()));
  auto watcher = DeathWatcher::Create(v.table);
  ASSERT_TRUE(watcher);
  for (int round = 0; round < 5; ++round) {
    pid_t child = SpawnRegistered();
    auto none = watcher->Wait(std::chrono::milliseconds(0));
    ASSERT_TRUE(none && none->empty());
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    auto dead = watcher->Wait(std::chrono::seconds(5));
    ASSERT_TRUE(dead);
    ASSERT_EQ(dead->size(), 1u);
    EXPECT_EQ((*dead)[0].id.pid, child);
    ASSERT_TRUE(v.table.Reap((*dead)[0].slot, (*dead)[0].generation));
    WaitExit(child);
  }
}

TEST_F(ProcessTableTest, DeathWatcherWakeFdEndsTheWaitAndAKillIsStillNoticed) {
  View v(*shared_, file_.path());
  ASSERT_TRUE(v.table.Register(ProcessRole::kPrimary, "p", CoreSet::CurrentAffinity()));
  auto watcher = DeathWatcher::Create(v.table);
  ASSERT_TRUE(watcher);
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE(wake.valid());
  ASSERT_TRUE(watcher->SetWakeFds({wake.get()}));
  pid_t child = SpawnRegistered();
  auto none = watcher->Wait(std::chrono::milliseconds(0));
  ASSERT_TRUE(none && none->empty());
  EXPECT_TRUE(watcher->all_watched_by_pidfd());
  // A readable wake fd ends a 30 s wait (long idle sweep too) at once, with no death.
  uint64_t one = 1;
  ASSERT_EQ(::write(wake.get(), &one, sizeof(one)), 8);
  const int64_t t0 = MonotonicNanos();
  auto woken = watcher->Wait(std::chrono::seconds(30), std::chrono::seconds(30));
  ASSERT_TRUE(woken);
  EXPECT_TRUE(woken->empty());
  EXPECT_LT(MonotonicNanos() - t0, 20'000'000'000) << "the wake fd did not end the wait";
  ASSERT_EQ(::read(wake.get(), &one, sizeof(one)), 8);
  // Re-registering the same set (as the reaper does before every wait) keeps it working.
  ASSERT_TRUE(watcher->SetWakeFds({wake.get()}));
  // With the wake fd drained, a kill -9 still ends the long wait (pidfd).
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  auto dead = watcher->Wait(std::chrono::seconds(30), std::chrono::seconds(30));
  ASSERT_TRUE(dead);
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ((*dead)[0].id.pid, child);
  ASSERT_TRUE(v.table.Reap((*dead)[0].slot, (*dead)[0].generation));
  WaitExit(child);
}

}  // namespace
}  // namespace nvmux::shm
