// Multi-process tests of the group substrate: real processes (fork/exec of
// nvmux_shm_child), each test with its own group id, cleaned up on failure.
#include "shm/group.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <memory>
#include <optional>

#include "nvmux/version.h"
#include "test/util/subprocess.h"

namespace nvmux::shm {
namespace {

using nvmux::test::Subprocess;

class GroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    id_ = static_cast<int>((static_cast<long>(getpid()) * 16 + counter++) % 900'000) + 10'000;
    ASSERT_TRUE(CleanStaleGroup(id_));
  }
  void TearDown() override {
    children_.clear();  // SIGKILLs and reaps whatever is left
    auto cleaned = CleanStaleGroup(id_);
    EXPECT_TRUE(cleaned) << cleaned.error().message;
  }

  Subprocess& Start(const std::string& role, std::vector<std::string> extra = {}, std::vector<std::string> env = {}) {
    std::vector<std::string> argv = {NVMUX_SHM_CHILD, "--role", role, "-i", std::to_string(id_)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto p = Subprocess::Spawn(argv, env);
    EXPECT_TRUE(p);
    children_.push_back(std::make_unique<Subprocess>(std::move(*p)));
    return *children_.back();
  }
  // Starts a child and expects "ready".
  Subprocess& Ready(const std::string& role, std::vector<std::string> extra = {}, std::vector<std::string> env = {}) {
    Subprocess& p = Start(role, std::move(extra), std::move(env));
    auto line = p.ReadLine(std::chrono::seconds(20));
    EXPECT_TRUE(line) << line.error().message;
    if (line) {
      EXPECT_EQ(line->rfind("ready", 0), 0u) << *line;
    }
    return p;
  }
  std::string Ask(Subprocess& p, const std::string& cmd) {
    EXPECT_TRUE(p.WriteLine(cmd));
    auto line = p.ReadLine();
    return line ? *line : "<" + line.error().message + ">";
  }
  static void Quit(Subprocess& p) {
    ASSERT_TRUE(p.WriteLine("quit"));
    auto st = p.Wait();
    ASSERT_TRUE(st);
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << nvmux::test::DescribeStatus(*st);
  }
  std::string G() const { return "group " + std::to_string(id_); }

  int id_ = 0;
  std::vector<std::unique_ptr<Subprocess>> children_;

};

TEST_F(GroupTest, SecondaryJoinsSharesDmaRecordsAndEverythingIsRemovedAtTheEnd) {
  Subprocess& primary = Ready("primary");
  Subprocess& secondary = Ready("secondary");
  EXPECT_EQ(Ask(secondary, "alloc 8192").rfind("allocated iova=0x2", 0), 0u);
  EXPECT_EQ(Ask(primary, "usage"), "usage all=1 bytes=8192 mine=0 procs=2");
  EXPECT_EQ(Ask(secondary, "usage"), "usage all=1 bytes=8192 mine=1 procs=2");
  Quit(secondary);
  EXPECT_EQ(Ask(primary, "usage"), "usage all=0 bytes=0 mine=0 procs=1");
  Quit(primary);
  auto probe = ProbeGroup(id_);
  ASSERT_TRUE(probe);
  EXPECT_EQ(probe->state, GroupProbe::State::kAbsent);
  EXPECT_TRUE(probe->files.empty()) << probe->files.front();
}

TEST_F(GroupTest, SecondaryWithoutPrimaryFailsAtOnceNamingGroupAndWhatToStart) {
  int64_t t0 = MonotonicNanos();
  Subprocess& s = Start("secondary");
  auto line = s.ReadLine();
  ASSERT_TRUE(line);
  // "At once": no wait for a primary that is not there (a bound for a
  // hang, not a timing: a loaded CI machine starts a process in well
  // under 5 s).
  EXPECT_LT(MonotonicNanos() - t0, 5'000'000'000);
  EXPECT_NE(line->find("code=" + std::to_string(ENODEV)), std::string::npos) << *line;
  EXPECT_NE(line->find(G()), std::string::npos) << *line;
  EXPECT_NE(line->find("nvmuxd -i " + std::to_string(id_)), std::string::npos) << *line;
  auto st = s.Wait();
  ASSERT_TRUE(st);
  EXPECT_EQ(WEXITSTATUS(*st), 2);
}

TEST_F(GroupTest, KilledGroupIsDetectedRefusedFastAndCleanedByTheNextPrimary) {
  Subprocess& dead = Ready("primary");
  dead.Kill(SIGKILL);
  ASSERT_TRUE(dead.Wait());
  auto probe = ProbeGroup(id_);
  ASSERT_TRUE(probe);
  EXPECT_EQ(probe->state, GroupProbe::State::kStale);
  EXPECT_FALSE(probe->files.empty());

  int64_t t0 = MonotonicNanos();
  Subprocess& s = Start("secondary");
  auto line = s.ReadLine();
  ASSERT_TRUE(line);
  EXPECT_LT(MonotonicNanos() - t0, 5'000'000'000);  // refused, not waited for
  EXPECT_NE(line->find("is not running"), std::string::npos) << *line;
  EXPECT_NE(line->find("nvmux-manage cleanup -i " + std::to_string(id_)), std::string::npos) << *line;

  Subprocess& fresh = Ready("primary");
  Subprocess& joined = Ready("secondary");
  EXPECT_EQ(Ask(joined, "usage"), "usage all=0 bytes=0 mine=0 procs=2");
  Quit(joined);
  Quit(fresh);
  EXPECT_TRUE(ListGroupFiles(*GroupPaths::For(id_)).empty());
}

TEST_F(GroupTest, SecondPrimaryIsRefusedNamingTheFirst) {
  Subprocess& first = Ready("primary");
  Subprocess& second = Start("primary");
  auto line = second.ReadLine();
  ASSERT_TRUE(line);
  EXPECT_NE(line->find("code=" + std::to_string(EBUSY)), std::string::npos) << *line;
  EXPECT_NE(line->find("pid " + std::to_string(first.pid())), std::string::npos) << *line;
  Quit(first);
}

TEST_F(GroupTest, NewPrimaryTakesOverFromADeadPrimaryWhileSecondariesLive) {
  Subprocess& primary = Ready("primary");
  Subprocess& secondary = Ready("secondary");
  ASSERT_EQ(Ask(secondary, "alloc 65536").rfind("allocated", 0), 0u);
  ASSERT_EQ(Ask(primary, "alloc 4096").rfind("allocated", 0), 0u);
  pid_t dead_pid = primary.pid();
  primary.Kill(SIGKILL);
  ASSERT_TRUE(primary.Wait());
  auto cleanup = CleanStaleGroup(id_);
  ASSERT_FALSE(cleanup) << "a group with a live member is not stale";
  EXPECT_EQ(cleanup.error().code, EBUSY);

  Subprocess& next = Ready("primary");
  // The dead primary is still registered until reaped; the secondary's memory is untouched.
  EXPECT_EQ(Ask(next, "usage"), "usage all=2 bytes=69632 mine=0 procs=3");
  EXPECT_EQ(Ask(next, "reap"), "reaped n=1 pids=" + std::to_string(dead_pid) + " freed=1");
  EXPECT_EQ(Ask(next, "usage"), "usage all=1 bytes=65536 mine=0 procs=2");
  EXPECT_EQ(Ask(secondary, "usage"), "usage all=1 bytes=65536 mine=1 procs=2");
  // New secondaries join the taken-over group; the new primary reaps them.
  Subprocess& late = Ready("secondary");
  EXPECT_EQ(Ask(next, "watch 3000"), "watching");
  late.Kill(SIGKILL);
  auto line = next.ReadLine();
  ASSERT_TRUE(line);
  EXPECT_EQ(line->rfind("reaped pid=" + std::to_string(late.pid()), 0), 0u) << *line;
  ASSERT_TRUE(late.Wait());
  // A second primary is still refused while the new one holds the role.
  Subprocess& third = Start("primary");
  auto refused = third.ReadLine();
  ASSERT_TRUE(refused);
  EXPECT_NE(refused->find("pid " + std::to_string(next.pid())), std::string::npos) << *refused;
  Quit(secondary);
  Quit(next);  // the last process: removes the group's files
  EXPECT_TRUE(ListGroupFiles(*GroupPaths::For(id_)).empty());
}

// Soak finding: a secondary killed inside DPDK's heap code left the heap's
// spinlock held just before nvmuxd was killed; the restarted nvmuxd then
// spun for ever in its own rte_eal_init (a DPDK secondary's init allocates
// from the shared heap), and no process was left to run the lock doctor.
// The process taking over repairs DPDK's locks before it joins.
TEST_F(GroupTest, TakeOverRepairsADpdkHeapLockAKilledProcessLeftHeld) {
  Subprocess& primary = Ready("primary");
  Subprocess& survivor = Ready("secondary");
  Subprocess& victim = Ready("secondary");
  EXPECT_EQ(Ask(victim, "dpdk-lock-and-die malloc heap"), "dying");
  ASSERT_TRUE(victim.Wait());
  primary.Kill(SIGKILL);
  ASSERT_TRUE(primary.Wait());
  // Without the repair the new primary never becomes ready (20 s here).
  Subprocess& next = Ready("primary");
  EXPECT_EQ(Ask(next, "reap").rfind("reaped n=2", 0), 0u);
  // The heap works again: both a survivor and a new member allocate.
  EXPECT_EQ(Ask(survivor, "alloc 4096").rfind("allocated", 0), 0u);
  Subprocess& late = Ready("secondary");
  EXPECT_EQ(Ask(late, "alloc 4096").rfind("allocated", 0), 0u);
  Quit(late);
  Quit(survivor);
  Quit(next);
  EXPECT_TRUE(ListGroupFiles(*GroupPaths::For(id_)).empty());
}

TEST_F(GroupTest, OtherAbiVersionIsRefusedNamingBoth) {
  Subprocess& primary = Ready("primary");
  Subprocess& s = Start("secondary", {"--abi", "999"});
  auto line = s.ReadLine();
  ASSERT_TRUE(line);
  // Both releases and both ABIs: "... created by nvmux 0.1.0 (ABI 2); this process is nvmux 0.1.0 (ABI 999) ...".
  const std::string release = "nvmux " + std::string(NVMUX_VERSION_STRING);
  EXPECT_NE(line->find("created by " + release + " (ABI " + std::to_string(kAbiVersion) + ")"), std::string::npos)
      << *line;
  EXPECT_NE(line->find("this process is " + release + " (ABI 999)"), std::string::npos) << *line;
  Quit(primary);
}

TEST_F(GroupTest, KilledSecondaryIsReapedWhenItDiesNotAtTheWatchTimeoutAndItsDmaMemoryFreed) {
  Subprocess& primary = Ready("primary");
  for (int round = 0; round < 3; ++round) {
    Subprocess& victim = Ready("secondary");
    for (int i = 0; i < 3; ++i) ASSERT_EQ(Ask(victim, "alloc 65536").rfind("allocated", 0), 0u);
    EXPECT_EQ(Ask(primary, "usage"), "usage all=3 bytes=196608 mine=0 procs=2");
    EXPECT_EQ(Ask(primary, "watch 3000"), "watching");
    int64_t t0 = MonotonicNanos();
    victim.Kill(SIGKILL);
    auto line = primary.ReadLine();
    ASSERT_TRUE(line);
    ASSERT_EQ(line->rfind("reaped pid=" + std::to_string(victim.pid()), 0), 0u) << *line;
    int64_t noticed = std::stoll(line->substr(line->find("noticed_ns=") + 11));
    // Noticed by the death event (pidfd, or the 20 ms lock sweep), not at
    // the end of the 3 s watch: a bound, not a timing (BENCHMARKS.md has
    // the figure: about 0.1 ms).
    EXPECT_LT(noticed - t0, 1'500'000'000) << "noticed after " << (noticed - t0) / 1000 << " us";
    EXPECT_NE(line->find("freed=3"), std::string::npos) << *line;
    EXPECT_EQ(Ask(primary, "usage"), "usage all=0 bytes=0 mine=0 procs=1");
    ASSERT_TRUE(victim.Wait());
  }
  Quit(primary);
}

TEST_F(GroupTest, GroupLockHeldByAKilledProcessIsRepairedAndTheGroupGoesOn) {
  Subprocess& primary = Ready("primary");
  Subprocess& victim = Ready("secondary");
  EXPECT_EQ(Ask(victim, "lock-and-die"), "dying");
  auto st = victim.Wait();
  ASSERT_TRUE(st);
  EXPECT_TRUE(WIFSIGNALED(*st));
  EXPECT_EQ(Ask(primary, "lock"), "locked repaired=1");
  EXPECT_EQ(Ask(primary, "lock"), "locked repaired=0");
  Subprocess& next = Ready("secondary");
  EXPECT_EQ(Ask(next, "alloc 4096").rfind("allocated", 0), 0u);
  Quit(next);
  Quit(primary);
}

TEST_F(GroupTest, StandaloneUsesPrivateMemoryAndLeavesNothing) {
  Subprocess& sa = Ready("standalone");
  std::string prefix = "nvmux-sa" + std::to_string(sa.pid());
  std::string runtime = GroupPaths::For(0)->runtime_dir;
  runtime.replace(runtime.rfind('/') + 1, std::string::npos, prefix);
  EXPECT_EQ(::access(runtime.c_str(), F_OK), 0) << "EAL should have made " << runtime;
  EXPECT_EQ(Ask(sa, "alloc 4096").rfind("allocated", 0), 0u);
  EXPECT_EQ(Ask(sa, "usage"), "usage all=1 bytes=4096 mine=1 procs=1");
  Quit(sa);
  EXPECT_EQ(::access(runtime.c_str(), F_OK), -1) << runtime << " left behind";
  for (const auto& mount : HugetlbfsMounts())
    EXPECT_EQ(::access((mount + "/" + prefix + "map_0").c_str(), F_OK), -1);
}

// A secondary killed between recording an allocation's intent and finishing
// it, while holding the group lock: the next process to take the lock is a
// secondary that is still attaching; it must repair the record (counted as
// leaked, the slot given back), not just mark the mutex consistent.
TEST_F(GroupTest, DeathMidAllocationIsRepairedByTheNextProcessToAttach) {
  Subprocess& primary = Ready("primary");
  Subprocess& victim = Ready("secondary", {}, {"NVMUX_DIE_AT=dma.allocate.intent"});
  ASSERT_TRUE(victim.WriteLine("alloc 8192"));
  auto st = victim.Wait();
  ASSERT_TRUE(st);
  ASSERT_TRUE(WIFSIGNALED(*st) && WTERMSIG(*st) == SIGKILL) << nvmux::test::DescribeStatus(*st);
  Subprocess& next = Ready("secondary");
  EXPECT_EQ(Ask(next, "leaked"), "leaked bytes=8192");
  EXPECT_EQ(Ask(primary, "lock"), "locked repaired=0");  // already repaired by `next`
  EXPECT_EQ(Ask(next, "alloc 4096").rfind("allocated", 0), 0u);
  EXPECT_EQ(Ask(primary, "usage"), "usage all=1 bytes=4096 mine=0 procs=3");  // the victim is not yet reaped
  Quit(next);
  Quit(primary);
}

// Killed between marking a record "freeing" and finishing: the memory's fate
// is unknown, so the repair leaks it (counted) rather than free it twice; the
// reaper still frees the victim's other allocations.
TEST_F(GroupTest, DeathMidFreeLeaksRatherThanFreeingTwice) {
  Subprocess& primary = Ready("primary");
  Subprocess& victim = Ready("secondary", {}, {"NVMUX_DIE_AT=dma.free.intent"});
  ASSERT_EQ(Ask(victim, "alloc 4096").rfind("allocated", 0), 0u);
  ASSERT_EQ(Ask(victim, "alloc 65536").rfind("allocated", 0), 0u);
  EXPECT_EQ(Ask(primary, "watch 3000"), "watching");
  ASSERT_TRUE(victim.WriteLine("free-all"));  // dies inside the first free
  auto line = primary.ReadLine();
  ASSERT_TRUE(line);
  EXPECT_EQ(line->rfind("reaped pid=", 0), 0u) << *line;
  EXPECT_NE(line->find("freed=1"), std::string::npos) << *line;  // the record not being freed
  EXPECT_EQ(Ask(primary, "usage"), "usage all=0 bytes=0 mine=0 procs=1");
  auto leaked = Ask(primary, "leaked");
  EXPECT_TRUE(leaked == "leaked bytes=4096" || leaked == "leaked bytes=65536") << leaked;
  Quit(primary);
}

}  // namespace
}  // namespace nvmux::shm
