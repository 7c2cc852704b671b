// Reaping and attach against real processes (issue 16, items 5 and 6):
// the reaper's device round trips do not hold the group lock; a queue whose
// deletion the device does not confirm keeps its id and rings out of reuse;
// an nvmuxd killed mid-reap or mid-attach is finished by the next one.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <thread>

#include "shm/base/clock.h"
#include "shm/group.h"
#include "test/util/emu_control.h"
#include "test/util/group_fixture.h"
#include "test/util/subprocess.h"

namespace nvmux {
namespace {

using test::Subprocess;

struct Qid {
  uint32_t state = 0, owner = 0, on_device = 0;
};
struct ReapCensus {
  std::map<uint32_t, Qid> qids;
  uint32_t quarantined_records = 0;  // rings
  uint32_t quarantined_data = 0;     // dead slots' data buffers
  std::vector<int> reaped;
  std::string raw;
  bool Reaped(int pid) const { return std::find(reaped.begin(), reaped.end(), pid) != reaped.end(); }
};

class ReaperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    id_ = static_cast<int>((static_cast<long>(getpid()) * 16 + 7 + counter++) % 900'000) + 10'000;
    ASSERT_TRUE(shm::CleanStaleGroup(id_));
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
      auto st = daemon_->Wait(std::chrono::seconds(30));
      EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
          << "nvmuxd did not stop cleanly: " << (st ? test::DescribeStatus(*st) : st.error().message);
    }
    daemon_.reset();
    for (auto& e : emus_) {
      e->Kill(SIGTERM);
      (void)e->Wait();
    }
    emus_.clear();
    EXPECT_TRUE(shm::CleanStaleGroup(id_));
    for (const std::string& d : dirs_) std::filesystem::remove_all(d);
  }
  std::unique_ptr<Subprocess> Start(std::vector<std::string> argv, std::vector<std::string> env = {}) {
    auto p = Subprocess::Spawn(argv, env);
    EXPECT_TRUE(p) << p.error().message;
    return std::make_unique<Subprocess>(std::move(*p));
  }
  // A new nvmux-emu; returns its trid.
  std::string StartEmu() {
    std::string dir = test::MakeTempDir("reap");
    dirs_.push_back(dir);
    auto emu = test::StartEmu({NVMUX_EMU, "--socket", dir}, dir);
    if (emu) emus_.push_back(std::move(emu));
    return "trtype:vfiouser traddr:" + dir;
  }
  // nvmuxd with these controllers; waits until it is ready unless `die_at`
  // names a crash point (then returns at once).
  void StartDaemon(const std::vector<std::string>& trids, const std::string& die_at = "") {
    std::vector<std::string> argv = {NVMUXD, "-i", std::to_string(id_)};
    for (const std::string& t : trids) {
      argv.push_back("-r");
      argv.push_back(t);
    }
    daemon_ = Start(argv, die_at.empty() ? std::vector<std::string>{} : std::vector<std::string>{"NVMUX_DIE_AT=" + die_at});
    if (die_at.empty()) {
      auto line = daemon_->ReadUntil("nvmuxd: group", std::chrono::seconds(30));
      ASSERT_TRUE(line) << "nvmuxd did not come up";
    }
  }
  // Waits for nvmuxd to be killed at its crash point.
  void ExpectDaemonDied(const std::string& point, Nanos timeout = std::chrono::seconds(30)) {
    auto st = daemon_->Wait(timeout);
    ASSERT_TRUE(st) << "nvmuxd did not die at " << point;
    EXPECT_TRUE(WIFSIGNALED(*st) && WTERMSIG(*st) == SIGKILL)
        << "nvmuxd did not die at " << point << ": " << test::DescribeStatus(*st);
    daemon_.reset();
  }
  Subprocess& Io(const std::string& trid, uint64_t lba, double seconds) {
    children_.push_back(Start({MP_CHILD, "io", "-i", std::to_string(id_), "-r", trid, "--lba", std::to_string(lba),
                               "--blocks", "1024", "--seconds", std::to_string(seconds)}));
    return *children_.back();
  }
  static uint32_t ExpectReady(Subprocess& c) {
    auto line = c.ReadUntil("ready", std::chrono::seconds(30));
    EXPECT_TRUE(line) << "child did not become ready";
    return line ? static_cast<uint32_t>(std::stoul(line->substr(6))) : 0;
  }
  // Stops a long-running io child (SIGTERM: it finishes what is
  // outstanding and reports) and expects a clean finish.
  static void Stop(Subprocess& c, const char* what) {
    c.Kill(SIGTERM);
    ExpectCleanFinish(c, what);
  }
  static void ExpectCleanFinish(Subprocess& c, const char* what) {
    auto done = c.ReadUntil("done", std::chrono::seconds(60));
    EXPECT_TRUE(done) << what << " did not finish";
    auto st = c.Wait(std::chrono::seconds(30));
    ASSERT_TRUE(st);
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << what << ": " << test::DescribeStatus(*st);
  }
  static void Kill9(Subprocess& c) {
    c.Kill(SIGKILL);
    (void)c.Wait();
  }
  ReapCensus TakeCensus() {
    ReapCensus c;
    std::string cmd = "timeout -s KILL 20 " + std::string(REAP_CHILD) + " census -i " + std::to_string(id_) + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    char buf[8192];
    while (size_t n = std::fread(buf, 1, sizeof buf, p)) c.raw.append(buf, n);
    ::pclose(p);
    size_t at = c.raw.find("census");
    if (at == std::string::npos) return c;
    std::istringstream words(c.raw.substr(at + 6));
    std::string w;
    while (words >> w) {
      if (w.rfind("qid=", 0) == 0) {
        unsigned q = 0, state = 0, owner = 0, on = 0;
        if (std::sscanf(w.c_str(), "qid=%u,%u,%u,%u", &q, &state, &owner, &on) == 4) c.qids[q] = Qid{state, owner, on};
      } else if (w.rfind("quarantined_dma=", 0) == 0) {
        c.quarantined_records = static_cast<uint32_t>(std::stoul(w.substr(16)));
      } else if (w.rfind("quarantined_data=", 0) == 0) {
        c.quarantined_data = static_cast<uint32_t>(std::stoul(w.substr(17)));
      } else if (w.rfind("reaped=", 0) == 0) {
        std::istringstream pids(w.substr(7));
        std::string pid;
        while (std::getline(pids, pid, ','))
          if (!pid.empty()) c.reaped.push_back(std::stoi(pid));
      }
    }
    return c;
  }
  template <typename Pred>
  ReapCensus WaitCensus(Pred pred, Nanos timeout) {
    int64_t deadline = MonotonicNanos() + timeout.count();
    ReapCensus c = TakeCensus();
    while (!pred(c) && MonotonicNanos() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      c = TakeCensus();
    }
    return c;
  }
  void Control(const std::string& trid, const std::string& command) {
    auto reply = test::EmuControl(trid.substr(trid.find("traddr:") + 7), command);
    ASSERT_TRUE(reply) << reply.error().message;
    ASSERT_EQ(reply->rfind("ok", 0), 0u) << *reply;
  }

  int id_ = 0;
  std::vector<std::string> dirs_;
  std::vector<std::unique_ptr<Subprocess>> emus_;
  std::unique_ptr<Subprocess> daemon_;
  std::vector<std::unique_ptr<Subprocess>> children_;
};

// Item 6 (i): the device takes 4 s for each of Delete I/O SQ and CQ; while
// the reaper deletes a dead process's queue (8 s of round trips, more than
// the group lock's 5 s timeout), another process allocates DMA memory and
// looks controllers up every millisecond: none of that may fail.
TEST_F(ReaperTest, SlowQueueDeletionDoesNotStallOtherProcessesGroupLock) {
  std::string trid = StartEmu();
  StartDaemon({trid});
  Subprocess& victim = Io(trid, 0, 60);
  uint32_t qid = ExpectReady(victim);
  children_.push_back(Start({REAP_CHILD, "alloc", "-i", std::to_string(id_), "--seconds", "14"}));
  Subprocess& worker = *children_.back();
  ASSERT_TRUE(worker.ReadUntil("ready", std::chrono::seconds(30)));
  Control(trid, "delay us=4000000 opc=0x00 queue=admin");
  Control(trid, "delay us=4000000 opc=0x04 queue=admin");
  int victim_pid = victim.pid();
  Kill9(victim);
  auto result = worker.ReadUntil("", std::chrono::seconds(40));
  ASSERT_TRUE(result) << "the allocating process did not report";
  EXPECT_EQ(result->rfind("done", 0), 0u) << "another process's group-lock work failed while the reaper waited on "
                                             "the device: "
                                          << *result;
  (void)worker.Wait(std::chrono::seconds(10));
  ReapCensus c = WaitCensus([&](const ReapCensus& x) { return x.Reaped(victim_pid) && x.qids.empty(); },
                            std::chrono::seconds(30));
  EXPECT_TRUE(c.Reaped(victim_pid)) << c.raw;
  EXPECT_EQ(c.qids.count(qid), 0u) << "queue id " << qid << " of the dead process was not freed: " << c.raw;
  Control(trid, "clear");
}

// Item 6 (ii): the device never completes the first two Delete I/O SQ. The dead
// process's queue id stays out of the free pool and its rings' DMA record
// is kept (quarantined) until a later delete is confirmed; then both are
// freed and another process gets queues and does I/O.
TEST_F(ReaperTest, UnconfirmedQueueDeletionKeepsIdRingsAndBuffersUntilTheDeviceConfirms) {
  std::string trid = StartEmu();
  StartDaemon({trid});
  Subprocess& victim = Io(trid, 0, 60);
  uint32_t qid = ExpectReady(victim);
  // Two drops: the reap and the first retry (1 s later) time out, so the
  // census sees the quarantine for several seconds.
  Control(trid, "drop opc=0x00 queue=admin count=2");
  int victim_pid = victim.pid();
  Kill9(victim);
  // Reaped after the dropped delete's admin timeout (5 s).
  ReapCensus c = WaitCensus([&](const ReapCensus& x) { return x.Reaped(victim_pid); }, std::chrono::seconds(30));
  ASSERT_TRUE(c.Reaped(victim_pid)) << c.raw;
  ASSERT_EQ(c.qids.count(qid), 1u) << "queue id " << qid
                                   << " was freed although the device never confirmed its deletion: " << c.raw;
  EXPECT_EQ(c.qids[qid].state, 3u) << c.raw;
  EXPECT_EQ(c.qids[qid].on_device, 1u) << c.raw;
  EXPECT_GE(c.quarantined_records, 1u) << "the dead process's rings were freed: " << c.raw;
  // Commands still on the queue may write into their data buffers: kept too.
  EXPECT_GE(c.quarantined_data, 1u) << "the dead process's data buffers were freed: " << c.raw;
  // The second retry's Delete I/O SQ completes: id, rings and buffers are freed.
  c = WaitCensus(
      [&](const ReapCensus& x) { return x.qids.empty() && x.quarantined_records == 0 && x.quarantined_data == 0; },
      std::chrono::seconds(40));
  EXPECT_TRUE(c.qids.empty()) << c.raw;
  EXPECT_EQ(c.quarantined_records, 0u) << c.raw;
  EXPECT_EQ(c.quarantined_data, 0u) << c.raw;
  Subprocess& next = Io(trid, 2048, 1);
  ExpectReady(next);
  ExpectCleanFinish(next, "a secondary after the quarantine");
}

// Item 6: a namespace-change event that arrives while the reaper waits on
// the device (a 3 s Delete I/O SQ) is handled by nvmuxd's next ordinary
// poll: it reads the Changed Namespace List, which unmasks the event type
// on the device, so the next namespace change reaches the secondaries too.
// (Handled inside the reaper's nested poll under the group lock, reading
// the log failed with EDEADLK and no later namespace event ever came.)
TEST_F(ReaperTest, NamespaceEventDuringReapingIsHandledAndTheNextOneArrives) {
  std::string trid = StartEmu();
  StartDaemon({trid});
  Subprocess& observer = Io(trid, 0, 120);
  ExpectReady(observer);
  Subprocess& victim = Io(trid, 2048, 60);
  ExpectReady(victim);
  Control(trid, "delay us=3000000 opc=0x00 queue=admin");
  int victim_pid = victim.pid();
  Kill9(victim);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // inside the delayed delete
  Control(trid, "aen type=2 info=0 lid=4");
  auto first = observer.ReadUntil("aen", std::chrono::seconds(20));
  ASSERT_TRUE(first) << "the first namespace event did not reach the secondary";
  ReapCensus c = WaitCensus([&](const ReapCensus& x) { return x.Reaped(victim_pid); }, std::chrono::seconds(30));
  ASSERT_TRUE(c.Reaped(victim_pid)) << c.raw;
  Control(trid, "clear");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // nvmuxd's ordinary polls
  Control(trid, "aen type=2 info=0 lid=4");
  auto second = observer.ReadUntil("aen", std::chrono::seconds(10));
  EXPECT_TRUE(second) << "a later namespace event never arrived: the Changed Namespace List was not read";
  Stop(observer, "the observing secondary");
}

// Item 6: nvmuxd killed at each step of reaping a dead secondary; the
// restarted nvmuxd takes the group over and finishes the reap (a repeated
// delete that the device answers "Invalid Queue Identifier" counts as
// confirmed); a surviving secondary's verified I/O never fails.
std::string PointName(const ::testing::TestParamInfo<const char*>& point) {
  std::string n = point.param;
  for (char& ch : n)
    if (ch == '.') ch = '_';
  return n;
}

class ReaperCrashTest : public ReaperTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(ReaperCrashTest, RestartedNvmuxdFinishesAReapItsPredecessorWasKilledIn) {
  const std::string point = GetParam();
  std::string trid = StartEmu();
  StartDaemon({trid}, point);
  ASSERT_TRUE(daemon_->ReadUntil("nvmuxd: group", std::chrono::seconds(30)));
  Subprocess& survivor = Io(trid, 0, 120);
  uint32_t survivor_qid = ExpectReady(survivor);
  Subprocess& victim = Io(trid, 2048, 60);
  uint32_t victim_qid = ExpectReady(victim);
  int victim_pid = victim.pid();
  Kill9(victim);
  ExpectDaemonDied(point);
  StartDaemon({trid});
  ReapCensus c = WaitCensus(
      [&](const ReapCensus& x) { return x.Reaped(victim_pid) && x.qids.count(victim_qid) == 0; },
      std::chrono::seconds(30));
  EXPECT_TRUE(c.Reaped(victim_pid)) << c.raw;
  EXPECT_EQ(c.qids.count(victim_qid), 0u) << c.raw;
  EXPECT_EQ(c.qids.count(survivor_qid), 1u) << c.raw;
  EXPECT_EQ(c.quarantined_records, 0u) << c.raw;
  EXPECT_EQ(c.quarantined_data, 0u) << c.raw;
  Stop(survivor, "the surviving secondary");
  Subprocess& next = Io(trid, 4096, 1);
  ExpectReady(next);
  ExpectCleanFinish(next, "a secondary after the restart");
}

INSTANTIATE_TEST_SUITE_P(Points, ReaperCrashTest,
                         ::testing::Values("reap.intent.recorded", "reap.queue.deleted", "reap.freed"),
                         PointName);

// A restarted nvmuxd that takes a live group over but cannot attach one of
// its -r controllers (the device is not there yet) keeps serving the group:
// exiting would shut the adopted controller down under the member using it.
// Hotplug attaches the missing controller when it appears.
TEST_F(ReaperTest, TakeoverMissingAControllerKeepsTheGroupAndAttachesItWhenItAppears) {
  std::string a = StartEmu();
  const std::string dir_b = test::MakeTempDir("reap");
  ASSERT_FALSE(dir_b.empty());
  dirs_.push_back(dir_b);
  const std::string b = "trtype:vfiouser traddr:" + dir_b;
  StartDaemon({a});
  Subprocess& member = Io(a, 0, 120);
  ExpectReady(member);
  Kill9(*daemon_);
  daemon_.reset();
  StartDaemon({a, b});  // up, without B
  auto emu = test::StartEmu({NVMUX_EMU, "--socket", dir_b}, dir_b);
  ASSERT_TRUE(emu);
  emus_.push_back(std::move(emu));
  auto attached = daemon_->ReadUntil("nvmuxd: hotplug: attached", std::chrono::seconds(30));
  ASSERT_TRUE(attached) << "nvmuxd did not attach the controller that appeared";
  EXPECT_NE(attached->find(dir_b), std::string::npos) << *attached;
  Subprocess& user = Io(b, 0, 1);
  ExpectReady(user);
  ExpectCleanFinish(user, "a secondary on the controller that appeared after the takeover");
  Stop(member, "the member whose controller the takeover adopted");
}

// Item 5: a primary killed while attaching a controller (after reserving its
// group entry, after initialising it, just before publishing it) while a
// secondary keeps the group alive. The next nvmuxd reclaims the entry,
// attaches the controller and a secondary does I/O on it. The first
// controller (A) keeps the group alive; the second (B) is the one attached
// when the primary dies.
class AttachCrashTest : public ReaperTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(AttachCrashTest, ControllerHalfAttachedByAKilledPrimaryIsAttachedByTheNext) {
  const std::string point = GetParam();
  std::string a = StartEmu();
  std::string b = StartEmu();
  StartDaemon({a});
  Subprocess& member = Io(a, 0, 120);
  ExpectReady(member);
  Kill9(*daemon_);
  daemon_.reset();
  // Takes the group over, adopts A, dies attaching B.
  StartDaemon({a, b}, point);
  ExpectDaemonDied(point);
  StartDaemon({a, b});
  Subprocess& user = Io(b, 0, 1);
  ExpectReady(user);
  ExpectCleanFinish(user, "a secondary on the controller the killed primary was attaching");
  Stop(member, "the member that kept the group alive");
}

INSTANTIATE_TEST_SUITE_P(Points, AttachCrashTest,
                         ::testing::Values("ctrl.attach.reserved", "ctrl.attach.initialised", "ctrl.attach.published"),
                         PointName);

// Takeover: a restarted nvmuxd killed while adopting a published controller;
// the one after it adopts it, and secondaries keep working.
class AdoptCrashTest : public ReaperTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(AdoptCrashTest, ControllerHalfAdoptedByAKilledPrimaryIsAdoptedByTheNext) {
  const std::string point = GetParam();
  std::string a = StartEmu();
  StartDaemon({a});
  Subprocess& member = Io(a, 0, 120);
  ExpectReady(member);
  Kill9(*daemon_);
  daemon_.reset();
  StartDaemon({a}, point);
  ExpectDaemonDied(point);
  StartDaemon({a});
  Subprocess& user = Io(a, 2048, 1);
  ExpectReady(user);
  ExpectCleanFinish(user, "a secondary after two takeovers");
  Stop(member, "the member that kept the group alive");
}

INSTANTIATE_TEST_SUITE_P(Points, AdoptCrashTest,
                         ::testing::Values("takeover.adopt.begin", "takeover.adopt.memory", "takeover.adopt.ready",
                                           "takeover.adopt.published"),
                         PointName);

}  // namespace
}  // namespace nvmux
