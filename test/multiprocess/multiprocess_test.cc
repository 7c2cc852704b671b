// The group with real processes: nvmux-emu, nvmuxd -r, and secondaries
// (nvmux_mp_child) doing verified I/O on their own LBA ranges, killed with
// kill -9 at random moments. Checks DESIGN.md sections 5-7: secondaries
// share the controller; a dead secondary's queues are deleted and its ids
// and memory freed without anyone attaching or detaching; survivors never
// see an error; the primary's death does not stop secondaries' I/O.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <random>
#include <thread>

#include "shm/base/clock.h"
#include "shm/group.h"
#include "test/util/census.h"
#include "test/util/emu_control.h"
#include "test/util/group_fixture.h"
#include "test/util/subprocess.h"

namespace nvmux {
namespace {

using test::Subprocess;

using test::Census;
using test::RealtimeNs;

class MultiProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    id_ = static_cast<int>((static_cast<long>(getpid()) * 16 + 3 + counter++) % 900'000) + 10'000;
    ASSERT_TRUE(shm::CleanStaleGroup(id_));
    char tmpl[] = "/tmp/nvmux-mp-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    trid_ = "trtype:vfiouser traddr:" + dir_;
    emu_ = test::StartEmu({NVMUX_EMU, "--socket", dir_, "--backing", "ram-lazy"}, dir_);
    ASSERT_TRUE(emu_);
    StartDaemon();
  }
  void TearDown() override {
    for (auto& c : children_)
      if (c->running()) {
        c->Kill(SIGKILL);
        (void)c->Wait();
      }
    children_.clear();
    if (daemon_ && daemon_->running()) {
      daemon_->Kill(SIGTERM);
      auto st = daemon_->Wait(std::chrono::seconds(20));
      EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
          << "nvmuxd did not stop cleanly: " << (st ? test::DescribeStatus(*st) : st.error().message);
    }
    daemon_.reset();
    if (emu_) {
      emu_->Kill(SIGTERM);
      (void)emu_->Wait();
    }
    EXPECT_TRUE(shm::CleanStaleGroup(id_));
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<Subprocess> Start(std::vector<std::string> argv) {
    auto p = Subprocess::Spawn(argv);
    EXPECT_TRUE(p) << p.error().message;
    return std::make_unique<Subprocess>(std::move(*p));
  }
  void StartDaemon() {
    daemon_ = Start({NVMUXD, "-i", std::to_string(id_), "-r", trid_});
    auto line = daemon_->ReadUntil("nvmuxd: group", std::chrono::seconds(20));
    ASSERT_TRUE(line) << "nvmuxd did not come up";
  }
  Subprocess& Child(uint64_t lba, double seconds, uint32_t blocks = 1024, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {MP_CHILD, "io", "-i", std::to_string(id_), "-r", trid_, "--lba",
                                     std::to_string(lba), "--blocks", std::to_string(blocks), "--seconds",
                                     std::to_string(seconds)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    children_.push_back(Start(argv));
    return *children_.back();
  }
  static void ExpectReady(Subprocess& c) {
    auto line = c.ReadUntil("ready", std::chrono::seconds(20));
    ASSERT_TRUE(line) << "child did not become ready";
  }
  static void ExpectCleanFinish(Subprocess& c) {
    auto done = c.ReadUntil("done", std::chrono::seconds(30));
    EXPECT_TRUE(done) << "child did not finish its I/O";
    auto st = c.Wait(std::chrono::seconds(30));
    ASSERT_TRUE(st);
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << test::DescribeStatus(*st);
  }
  Census TakeCensus() { return test::TakeCensus(MP_CHILD, id_); }
  // Waits until the census shows exactly `qids` queue ids in use.
  Census WaitForQids(size_t qids, Nanos timeout = std::chrono::seconds(5)) {
    int64_t deadline = MonotonicNanos() + timeout.count();
    Census c = TakeCensus();
    while (c.qids.size() != qids && MonotonicNanos() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      c = TakeCensus();
    }
    return c;
  }

  int id_ = 0;
  std::string dir_, trid_;
  std::unique_ptr<Subprocess> emu_, daemon_;
  std::vector<std::unique_ptr<Subprocess>> children_;
};

TEST_F(MultiProcessTest, SecondariesShareTheControllerEachWithItsOwnQueues) {
  Census before = TakeCensus();
  ASSERT_TRUE(before.qids.empty()) << before.raw;
  Subprocess& a = Child(0, 1.0);
  Subprocess& b = Child(1024, 1.0);
  Subprocess& c = Child(2048, 1.0);
  ExpectReady(a);
  ExpectReady(b);
  ExpectReady(c);
  Census during = TakeCensus();
  EXPECT_EQ(during.qids.size(), 3u) << during.raw;
  for (const auto& q : during.qids) EXPECT_EQ(q[2], 1u) << "queue " << q[0] << " not created on the device";
  ExpectCleanFinish(a);
  ExpectCleanFinish(b);
  ExpectCleanFinish(c);
  Census after = TakeCensus();
  EXPECT_TRUE(after.qids.empty()) << after.raw;
  EXPECT_EQ(after.dma_records, before.dma_records) << after.raw;
  EXPECT_EQ(after.admin_in_flight, 0u) << after.raw;
}

// Issue 5's first check: two secondaries do verified I/O while a third
// attaches, runs admin commands (identify, a log page, queue pairs created
// and deleted) and detaches, again and again.
TEST_F(MultiProcessTest, AdminClientsComeAndGoWhileTwoSecondariesDoVerifiedIo) {
  const int rounds = std::getenv("NVMUX_ADMIN_ROUNDS") ? std::atoi(std::getenv("NVMUX_ADMIN_ROUNDS")) : 100;
  Census before = TakeCensus();
  Subprocess& a = Child(0, 100000.0);
  Subprocess& b = Child(4096, 100000.0);
  ExpectReady(a);
  ExpectReady(b);
  int64_t t0 = MonotonicNanos();
  for (int r = 0; r < rounds; ++r) {
    auto admin = Start({MP_CHILD, "admin", "-i", std::to_string(id_), "-r", trid_});
    auto line = admin->ReadUntil("admin ok", std::chrono::seconds(20));
    ASSERT_TRUE(line) << "round " << r << ": the admin client failed";
    // The client's own work is done once it printed "admin ok"; what is
    // left is the kernel tearing down its mappings of the group's hugepage
    // file, which waits for that file's mapping lock. Under ASan beside two
    // busy loops that took 5.3 and 13.9 s (and past 20 s twice), so the
    // bound only catches a hang. A child that outlives it is described.
    auto st = admin->Wait(std::chrono::seconds(60));
    ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "round " << r;
    ASSERT_TRUE(a.running() && b.running()) << "round " << r << ": an I/O secondary stopped";
  }
  std::printf("%d admin clients in %.1f s\n", rounds, static_cast<double>(MonotonicNanos() - t0) / 1e9);
  for (Subprocess* s : {&a, &b}) {
    s->Kill(SIGTERM);
    ExpectCleanFinish(*s);
  }
  Census after = TakeCensus();
  EXPECT_TRUE(after.qids.empty()) << after.raw;
  EXPECT_EQ(after.dma_records, before.dma_records) << after.raw;
  EXPECT_EQ(after.admin_in_flight, 0u) << after.raw;
  // Nothing of the processes that came and went stays in DPDK's shared
  // heap either (each join used to leave DPDK's service tables, ~150 KiB,
  // which a long-running primary would run out of memory from).
  EXPECT_EQ(after.heap_allocations, before.heap_allocations) << before.raw << "\n" << after.raw;
  EXPECT_EQ(after.heap_bytes, before.heap_bytes) << before.raw << "\n" << after.raw;
}

// Issue 16 (minor): a secondary that exits cleanly with a queue pair still
// allocated deletes its queue on the device and gives the id back (its
// rings go with its memory; the reaper only handles dead processes).
TEST_F(MultiProcessTest, SecondaryExitingWithALiveQpairDeletesItsQueueAndFreesTheId) {
  Subprocess& leaker = Child(0, 0.2, 1024, {"--leak-qpair"});
  ExpectReady(leaker);
  ExpectCleanFinish(leaker);
  Census after = WaitForQids(0);
  EXPECT_TRUE(after.qids.empty()) << after.raw;
  EXPECT_EQ(after.admin_in_flight, 0u) << after.raw;
  // The id is free on the device too: the next secondary creates its queue
  // under it (Create I/O CQ fails with Invalid Queue Identifier otherwise).
  Subprocess& next = Child(1024, 0.2);
  ExpectReady(next);
  ExpectCleanFinish(next);
}

TEST_F(MultiProcessTest, KilledSecondaryIsReapedAndItsQueuesDeletedWhileOthersContinue) {
  Census before = TakeCensus();
  Subprocess& survivor = Child(0, 3.0);
  ExpectReady(survivor);
  Census with_survivor = TakeCensus();
  Subprocess& victim = Child(1024, 30.0);
  ExpectReady(victim);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // mid-I/O
  int victim_pid = victim.pid();
  int64_t killed_at = RealtimeNs();
  victim.Kill(SIGKILL);
  (void)victim.Wait();
  Census after = WaitForQids(1);
  ASSERT_EQ(after.qids.size(), 1u) << "the dead secondary's queue id was not freed: " << after.raw;
  EXPECT_EQ(after.dma_records, with_survivor.dma_records) << "the dead secondary's DMA memory was not freed";
  auto rec = std::find_if(after.reaped.begin(), after.reaped.end(), [&](auto& r) { return r.first == victim_pid; });
  ASSERT_NE(rec, after.reaped.end()) << "the dead secondary is not in the reap history: " << after.raw;
  // Reaping happened and released the queue and the memory (above). How
  // fast is the benchmark's question (scripts/bench/reap.sh, BENCHMARKS.md):
  // it includes device round trips, so it depends on the machine and the
  // sanitizer, and a bound here made CI flaky (issue 16, item 10).
  std::printf("reaped %.2f ms after kill -9 (informational)\n", static_cast<double>(rec->second - killed_at) / 1e6);
  ExpectCleanFinish(survivor);
  // The freed queue id is usable again.
  Subprocess& next = Child(2048, 0.2);
  ExpectCleanFinish(next);
  EXPECT_EQ(TakeCensus().dma_records, before.dma_records);
}

TEST_F(MultiProcessTest, CrashLoopKillsSecondariesAtRandomMomentsWithoutLeaks) {
  int rounds = 200;
  if (const char* r = std::getenv("NVMUX_CRASH_ROUNDS")) rounds = std::max(1, std::atoi(r));
  Subprocess& survivor = Child(0, 100000.0);
  ExpectReady(survivor);
  Census baseline = TakeCensus();
  ASSERT_EQ(baseline.qids.size(), 1u) << baseline.raw;
  std::mt19937 rng(static_cast<unsigned>(getpid()));
  std::uniform_int_distribution<int> delay_us(0, 150'000);  // from EAL start to mid-I/O
  std::vector<double> latencies;
  for (int round = 0; round < rounds; ++round) {
    Subprocess& victim = Child(1024 + (round % 8) * 1024, 30.0);
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
    int pid = victim.pid();
    int64_t killed_at = RealtimeNs();
    victim.Kill(SIGKILL);
    (void)victim.Wait();
    children_.pop_back();
    if (round % 10 == 9) {
      // Sample the reaping latency (the history keeps the last 16).
      int64_t deadline = MonotonicNanos() + 2'000'000'000;
      while (MonotonicNanos() < deadline) {
        Census c = TakeCensus();
        auto rec = std::find_if(c.reaped.begin(), c.reaped.end(), [&](auto& r) { return r.first == pid; });
        if (rec != c.reaped.end()) {
          latencies.push_back(static_cast<double>(rec->second - killed_at) / 1e6);
          break;
        }
        if (c.qids.size() == 1 && c.dma_records == baseline.dma_records &&
            std::none_of(c.reaped.begin(), c.reaped.end(), [&](auto& r) { return r.first == pid; }) &&
            MonotonicNanos() > deadline - 1'800'000'000)
          break;  // died before registering: nothing to reap
      }
    }
  }
  Census end = WaitForQids(1);
  EXPECT_EQ(end.qids.size(), 1u) << "leaked queue ids: " << end.raw;
  int64_t deadline = MonotonicNanos() + 5'000'000'000;
  while (end.dma_records != baseline.dma_records && MonotonicNanos() < deadline) end = TakeCensus();
  EXPECT_EQ(end.dma_records, baseline.dma_records) << "leaked DMA records: " << end.raw;
  EXPECT_EQ(end.dma_bytes, baseline.dma_bytes);
  EXPECT_EQ(end.admin_in_flight, 0u) << "leaked admin trackers: " << end.raw;
  survivor.Kill(SIGTERM);
  ExpectCleanFinish(survivor);
  std::sort(latencies.begin(), latencies.end());
  if (!latencies.empty()) {
    std::printf("%d kills; reaping latency over %zu samples: median %.2f ms, max %.2f ms\n", rounds, latencies.size(),
                latencies[latencies.size() / 2], latencies.back());
    // Informational only, like the test above: the bound is the benchmark's (scripts/bench/reap.sh).
  }
}

// A stopped nvmuxd (SIGTERM: a restart, an upgrade) disturbs the secondaries
// no more than a killed one: it hands the group over, their verified I/O and
// admin commands go on, and the next nvmuxd takes the group over.
TEST_F(MultiProcessTest, PrimaryStoppedWhileSecondariesRunHandsTheGroupOver) {
  Subprocess& a = Child(0, 100000.0, 1024, {"--admin-ms", "50"});
  ExpectReady(a);
  pid_t first_primary = daemon_->pid();
  daemon_->Kill(SIGTERM);
  auto handed = daemon_->ReadUntil("nvmuxd: group " + std::to_string(id_) + " handed over", std::chrono::seconds(20));
  ASSERT_TRUE(handed) << "nvmuxd did not hand the group over";
  EXPECT_NE(handed->find("process " + std::to_string(a.pid())), std::string::npos) << *handed;
  auto st = daemon_->Wait(std::chrono::seconds(20));
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << (st ? test::DescribeStatus(*st) : "still running");
  daemon_.reset();
  // I/O and admin commands (a log page every 50 ms) go on without a primary.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  ASSERT_TRUE(a.running()) << "the secondary stopped when the primary was stopped";
  daemon_ = Start({NVMUXD, "-i", std::to_string(id_), "-r", trid_});
  auto took = daemon_->ReadUntil("nvmuxd: took group", std::chrono::seconds(20));
  ASSERT_TRUE(took) << "the restarted nvmuxd did not take the group over";
  EXPECT_NE(took->find("pid " + std::to_string(first_primary)), std::string::npos) << *took;
  ASSERT_TRUE(daemon_->ReadUntil("nvmuxd: group", std::chrono::seconds(20)));
  // A newcomer works beside it; an event reaches the old secondary.
  Subprocess& b = Child(4096, 1.0);
  ExpectReady(b);
  ExpectCleanFinish(b);
  auto reply = test::EmuControl(dir_, "aen type=1 info=0 lid=2");
  ASSERT_TRUE(reply && reply->rfind("ok", 0) == 0) << (reply ? *reply : reply.error().message);
  auto aen = a.ReadUntil("aen ", std::chrono::seconds(5));
  ASSERT_TRUE(aen) << "the secondary did not see the event after the hand-over";
  ASSERT_TRUE(a.running());
  a.Kill(SIGTERM);
  ExpectCleanFinish(a);
}

// DESIGN.md section 7: the primary's death stops nobody; a restarted nvmuxd
// takes the group over (AERs, reaping) without disturbing the secondaries.
TEST_F(MultiProcessTest, PrimaryKilledSecondariesContinueAndARestartedPrimaryTakesTheRoleBack) {
  Subprocess& a = Child(0, 100000.0, 1024, {"--admin-ms", "50"});
  Subprocess& b = Child(4096, 100000.0, 1024, {"--admin-ms", "50"});
  ExpectReady(a);
  ExpectReady(b);
  pid_t first_primary = daemon_->pid();
  daemon_->Kill(SIGKILL);
  (void)daemon_->Wait();
  daemon_.reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(a.running() && b.running()) << "a secondary stopped when the primary died";
  // Their admin commands (a log page every 50 ms, --admin-ms) go on too:
  // a failure would end the child with an error, which the end checks.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(a.running() && b.running()) << "a secondary's admin command failed without a primary";
  // A new process cannot join until a primary runs again, and is told what to start.
  {
    auto late = Start({MP_CHILD, "admin", "-i", std::to_string(id_), "-r", trid_});
    auto st = late->Wait(std::chrono::seconds(20));
    ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 1);
  }

  // Restarted: it must take the group over, not refuse it or start a new one.
  daemon_ = Start({NVMUXD, "-i", std::to_string(id_), "-r", trid_});
  auto took = daemon_->ReadUntil("nvmuxd: took group", std::chrono::seconds(20));
  ASSERT_TRUE(took) << "the restarted nvmuxd did not take the group over";
  EXPECT_NE(took->find("pid " + std::to_string(first_primary)), std::string::npos) << *took;
  ASSERT_TRUE(daemon_->ReadUntil("nvmuxd: group", std::chrono::seconds(20)));
  // The new primary reaped the old one.
  Census c = TakeCensus();
  for (int i = 0; i < 100 && std::none_of(c.reaped.begin(), c.reaped.end(),
                                          [&](auto& r) { return r.first == first_primary; }); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    c = TakeCensus();
  }
  EXPECT_TRUE(std::any_of(c.reaped.begin(), c.reaped.end(), [&](auto& r) { return r.first == first_primary; }))
      << c.raw;

  // An event raised on the device after the restart reaches every secondary.
  auto reply = test::EmuControl(dir_, "aen type=1 info=0 lid=2");
  ASSERT_TRUE(reply && reply->rfind("ok", 0) == 0) << (reply ? *reply : reply.error().message);
  for (Subprocess* s : {&a, &b}) {
    auto aen = s->ReadUntil("aen ", std::chrono::seconds(5));
    ASSERT_TRUE(aen) << "a secondary did not see the event";
    EXPECT_EQ(*aen, "aen 0x00020001");
  }
  // A secondary that dies now is reaped by the new primary, its queue freed.
  Subprocess& victim = Child(8192, 100000.0);
  ExpectReady(victim);
  EXPECT_EQ(WaitForQids(3).qids.size(), 3u);
  pid_t victim_pid = victim.pid();
  victim.Kill(SIGKILL);
  (void)victim.Wait();
  c = WaitForQids(2);
  EXPECT_EQ(c.qids.size(), 2u) << c.raw;
  EXPECT_TRUE(std::any_of(c.reaped.begin(), c.reaped.end(), [&](auto& r) { return r.first == victim_pid; }))
      << c.raw;
  // The survivors' verified I/O never saw an error.
  for (Subprocess* s : {&a, &b}) {
    ASSERT_TRUE(s->running());
    s->Kill(SIGTERM);
    ExpectCleanFinish(*s);
  }
}

}  // namespace
}  // namespace nvmux
