// The systematic crash test (issue 16): for every crash point in the sources
// (NVMUX_TEST_POINT("name"), listed at build time by scan_points.cmake), one
// case runs a whole group with NVMUX_DIE_AT=<point> and NVMUX_DIE_ONCE=<file>
// in every driver process's environment, so the first process to reach the
// point dies there with SIGKILL (holding whatever it holds) and the file says
// who. The scenario reaches the places points sit in:
//   nvmuxd starts and attaches the controller; two secondaries (mp_child io)
//   do verified I/O on their own LBA ranges and read a log page every 50 ms
//   (admin commands from secondaries); an admin client joins, identifies,
//   reads a log page, creates and deletes queue pairs and leaves; an AEN is
//   raised on the device (emulator control `aen`) and must reach every
//   secondary; a third secondary is killed so the reaper runs; nvmuxd is
//   killed and restarted (takeover and adoption); another AEN; a last admin
//   client; the I/O secondaries stop.
// Whenever nvmuxd is found dead (the point was in it) it is restarted, as an
// operator would. Then the group's invariants are checked:
//   - the point was reached (a point the scenario never reaches fails its
//     case: extend the scenario, never let it pass silently);
//   - no admin tracker in flight without a live owner (every process that
//     submitted is gone and reaped);
//   - every group AER outstanding on the device (emulator `status` aers=);
//   - the admin queue usable: the last admin client's commands completed;
//   - no queue on the device that the group does not record as in use
//     (emulator `status` sqs=/cqs= against the census' qids): a qid recorded
//     free while its queue exists, or a queue whose memory was freed while
//     the device may still write into it;
//   - no DMA record leaked (census, as the multi-process tests);
//   - the secondaries that did not die finished their verified I/O (exit 0,
//     no mismatch, no error).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "shm/base/clock.h"
#include "shm/group.h"
#include "test/util/census.h"
#include "test/util/emu_control.h"
#include "test/util/group_fixture.h"
#include "test/util/subprocess.h"

namespace nvmux {
namespace {

using test::Census;
using test::Subprocess;

const char* const kPointList[] = {
#include "crash_points.inc"
    nullptr};

std::vector<std::string> Points() {
  std::vector<std::string> out;
  for (const char* const* p = kPointList; *p != nullptr; ++p) out.emplace_back(*p);
  return out;
}

// AERL of nvmux-emu is 3: the group keeps 4 AERs outstanding.
constexpr size_t kGroupAers = 4;

// The emulator's `status` reply, split into what the test compares.
struct DeviceQueues {
  size_t aers = 0;
  std::set<uint32_t> sqs, cqs;
  std::string raw;
};

std::set<uint32_t> IdList(const std::string& text, const std::string& key) {
  std::set<uint32_t> out;
  size_t at = text.find(" " + key + "=");
  if (at == std::string::npos) return out;
  std::string list = text.substr(at + key.size() + 2, text.find(' ', at + 1) - (at + key.size() + 2));
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty() && item != "-") out.insert(static_cast<uint32_t>(std::stoul(item)));
  return out;
}

class CrashPointTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    static int counter = 0;
    id_ = static_cast<int>((static_cast<long>(getpid()) * 16 + 7 + counter++) % 900'000) + 10'000;
    ASSERT_TRUE(shm::CleanStaleGroup(id_));
    char tmpl[] = "/tmp/nvmux-crash-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    trid_ = "trtype:vfiouser traddr:" + dir_;
    died_file_ = dir_ + "/died-at";
    env_ = {"NVMUX_DIE_AT=" + GetParam(), "NVMUX_DIE_ONCE=" + died_file_};
    emu_ = test::StartEmu({NVMUX_EMU, "--socket", dir_}, dir_);
    ASSERT_TRUE(emu_);
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

  std::unique_ptr<Subprocess> Start(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
    auto p = Subprocess::Spawn(argv, env);
    EXPECT_TRUE(p) << p.error().message;
    return std::make_unique<Subprocess>(std::move(*p));
  }
  void Step(const char* what) {
    std::printf("[%s] %.2f s: %s\n", GetParam().c_str(),
                static_cast<double>(MonotonicNanos() - t0_) / 1e9, what);
    std::fflush(stdout);
  }

  // The process that died at the point: "<pid> <comm> <point>", or "".
  std::string Died() const {
    std::ifstream in(died_file_);
    std::string line;
    std::getline(in, line);
    return line;
  }
  int DiedPid() const {
    std::string d = Died();
    return d.empty() ? 0 : std::atoi(d.c_str());
  }
  // Whether `pid` is the process the point killed.
  bool KilledByPoint(int pid) const { return pid != 0 && DiedPid() == pid; }

  // Makes sure a primary runs: restarts nvmuxd (with the same environment)
  // when it is found dead, as an operator would; a primary that dies at the
  // point while starting is started again. Any other death of nvmuxd fails
  // the test.
  void EnsureDaemon() {
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (daemon_ && daemon_->running()) {
        auto st = daemon_->TryWait();
        if (!st) return;
        const int pid = daemon_pid_;
        ASSERT_TRUE(KilledByPoint(pid))
            << "nvmuxd (pid " << pid << ") " << test::DescribeStatus(*st) << ", not at the crash point ("
            << (Died().empty() ? "nobody died there yet" : Died()) << ")";
        Step("nvmuxd died at the point: restarting it");
      }
      daemon_ = Start({NVMUXD, "-i", std::to_string(id_), "-r", trid_}, env_);
      daemon_pid_ = daemon_->pid();
      auto line = daemon_->ReadUntil("nvmuxd: group", std::chrono::seconds(20));
      if (line) return;
      auto st = daemon_->Wait(std::chrono::seconds(5));
      ASSERT_TRUE(st && KilledByPoint(daemon_pid_))
          << "nvmuxd (pid " << daemon_pid_ << ") did not come up: " << line.error().message << "; "
          << (st ? test::DescribeStatus(*st) : st.error().message);
      Step("nvmuxd died at the point while starting: starting it again");
    }
    FAIL() << "nvmuxd did not come up in three attempts";
  }

  // An I/O secondary: verified writes and reads on [lba, lba+1024), a log
  // page every 50 ms. Returns nullptr when it died at the point while
  // starting (fails the test when it failed otherwise).
  Subprocess* StartIo(uint64_t lba) {
    for (int attempt = 0;; ++attempt) {
      const size_t before = children_.size();
      Subprocess* c = StartIoOnce(lba);
      if (c != nullptr || attempt == 1 || !PrimaryDiedAtPoint()) return c;
      // The secondary could not join because nvmuxd died at the point
      // meanwhile (joining a group with no primary is refused): restart
      // it as an operator would and join again.
      if (children_.size() > before) children_.pop_back();
      Step("nvmuxd died at the point while a secondary joined: restarting it");
      EnsureDaemon();
      if (HasFatalFailure()) return nullptr;
    }
  }
  // Whether nvmuxd has exited because the point killed it (reaps it).
  bool PrimaryDiedAtPoint() {
    if (!daemon_ || !daemon_->running()) return false;
    auto st = daemon_->TryWait();
    if (!st) {
      // It may be exiting right now: give the exit a moment.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      st = daemon_->TryWait();
    }
    if (st && !KilledByPoint(daemon_pid_))
      ADD_FAILURE() << "nvmuxd (pid " << daemon_pid_ << ") " << test::DescribeStatus(*st)
                    << ", not at the crash point (" << (Died().empty() ? "nobody died there yet" : Died()) << ")";
    return st && KilledByPoint(daemon_pid_);
  }
  Subprocess* StartIoOnce(uint64_t lba) {
    children_.push_back(Start({MP_CHILD, "io", "-i", std::to_string(id_), "-r", trid_, "--lba", std::to_string(lba),
                               "--blocks", "1024", "--seconds", "100000", "--admin-ms", "50"},
                              env_));
    Subprocess* c = children_.back().get();
    const int pid = c->pid();
    auto ready = c->ReadUntil("ready", std::chrono::seconds(20));
    if (ready) return c;
    auto st = c->Wait(std::chrono::seconds(5));
    if (st && KilledByPoint(pid)) return nullptr;
    if (PrimaryDiedAtPoint()) return nullptr;  // StartIo joins again
    EXPECT_TRUE(false) << "secondary (pid " << pid << ") did not become ready: "
                                          << ready.error().message << "; "
                                          << (st ? test::DescribeStatus(*st) : st.error().message);
    return nullptr;
  }

  // The admin client (identify, log page, two queue pairs created and
  // deleted). Returns whether it ran to the end; dying at the point is
  // allowed, any other failure fails the test.
  bool RunAdmin() {
    for (int attempt = 0;; ++attempt) {
      std::optional<bool> done = RunAdminOnce(attempt == 0);
      if (done) return *done;
      Step("nvmuxd died at the point while the admin client joined: restarting it");
      EnsureDaemon();
      if (HasFatalFailure()) return false;
    }
  }
  // Whether the admin client ran to the end; nullopt when it failed because
  // nvmuxd died at the point meanwhile and `may_retry`.
  std::optional<bool> RunAdminOnce(bool may_retry) {
    auto admin = Start({MP_CHILD, "admin", "-i", std::to_string(id_), "-r", trid_}, env_);
    const int pid = admin->pid();
    auto ok = admin->ReadUntil("admin ok", std::chrono::seconds(20));
    auto st = admin->Wait(std::chrono::seconds(20));
    if (ok && st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) return true;
    if (st && KilledByPoint(pid)) return false;
    if (may_retry && PrimaryDiedAtPoint()) return std::nullopt;
    EXPECT_TRUE(st && KilledByPoint(pid)) << "the admin client (pid " << pid << ") failed: "
                                          << (ok ? "" : ok.error().message + "; ")
                                          << (st ? test::DescribeStatus(*st) : st.error().message);
    return false;
  }

  // Raises an AEN and checks every live I/O secondary sees it.
  void ExpectAenReachesEverySecondary(const char* when) {
    auto reply = test::EmuControl(dir_, "aen type=1 info=0 lid=2");
    ASSERT_TRUE(reply && reply->rfind("ok", 0) == 0) << (reply ? *reply : reply.error().message);
    for (Subprocess* s : io_) {
      if (!s->running()) continue;
      const int pid = s->pid();
      auto aen = s->ReadUntil("aen ", std::chrono::seconds(5));
      if (!aen && KilledByPoint(pid)) continue;
      EXPECT_TRUE(aen) << "secondary " << pid << " did not receive the AEN raised " << when << ": "
                       << aen.error().message;
    }
  }

  DeviceQueues Device() {
    DeviceQueues d;
    auto reply = test::EmuControl(dir_, "status");
    if (!reply) {
      d.raw = reply.error().message;
      return d;
    }
    d.raw = *reply;
    size_t at = reply->find(" aers=");
    if (at != std::string::npos) d.aers = std::strtoul(reply->c_str() + at + 6, nullptr, 10);
    d.sqs = IdList(*reply, "sqs");
    d.cqs = IdList(*reply, "cqs");
    return d;
  }

  // The device holds every group AER (a re-arm may be on its way: waits up
  // to 2 s). Checked before the takeover too, since a new primary re-arms
  // what the group's count says is missing and would hide a loss.
  void ExpectGroupAersOutstanding(const char* when) {
    DeviceQueues d = Device();
    for (int i = 0; i < 40 && d.aers != kGroupAers; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      d = Device();
    }
    EXPECT_EQ(d.aers, kGroupAers) << when << ": the group's AERs are not all outstanding on the device: " << d.raw;
  }

  // Every queue on the device is one the group records as in use.
  void ExpectDeviceQueuesRecorded(const char* when) {
    Census c = test::TakeCensus(MP_CHILD, id_);
    DeviceQueues d = Device();
    std::set<uint32_t> recorded;
    for (const auto& q : c.qids) recorded.insert(q[0]);
    for (uint32_t q : d.sqs)
      EXPECT_TRUE(recorded.count(q)) << when << ": SQ " << q << " exists on the device but qid " << q
                                     << " is recorded free\ndevice: " << d.raw << "\ncensus: " << c.raw;
    for (uint32_t q : d.cqs)
      EXPECT_TRUE(recorded.count(q)) << when << ": CQ " << q << " exists on the device but qid " << q
                                     << " is recorded free\ndevice: " << d.raw << "\ncensus: " << c.raw;
  }

  int id_ = 0;
  int daemon_pid_ = 0;
  int64_t t0_ = MonotonicNanos();
  std::string dir_, trid_, died_file_;
  std::vector<std::string> env_;
  std::unique_ptr<Subprocess> emu_, daemon_;
  std::vector<std::unique_ptr<Subprocess>> children_;
  std::vector<Subprocess*> io_;  // the long-running I/O secondaries
};

TEST_P(CrashPointTest, GroupKeepsItsInvariants) {
  Step("nvmuxd");
  EnsureDaemon();
  if (HasFatalFailure()) return;
  Census baseline = test::TakeCensus(MP_CHILD, id_);
  const int baseline_daemon = daemon_pid_;

  Step("two I/O secondaries");
  for (uint64_t lba : {uint64_t{0}, uint64_t{4096}})
    if (Subprocess* s = StartIo(lba)) io_.push_back(s);
  EnsureDaemon();
  if (HasFatalFailure()) return;

  Step("admin client");
  (void)RunAdmin();
  EnsureDaemon();
  if (HasFatalFailure()) return;

  Step("AEN");
  ExpectAenReachesEverySecondary("with the first primary");
  EnsureDaemon();
  if (HasFatalFailure()) return;

  Step("a secondary killed, the reaper runs");
  if (Subprocess* victim = StartIo(8192)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // mid-I/O
    const int pid = victim->pid();
    victim->Kill(SIGKILL);
    (void)victim->Wait();
    int64_t deadline = MonotonicNanos() + 10'000'000'000;
    Census c = test::TakeCensus(MP_CHILD, id_);
    while (!c.Reaped(pid) && MonotonicNanos() < deadline) {
      EnsureDaemon();  // the reaper may die at the point: its successor reaps
      if (HasFatalFailure()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      c = test::TakeCensus(MP_CHILD, id_);
    }
    EXPECT_TRUE(c.Reaped(pid)) << "the killed secondary " << pid << " was not reaped: " << c.raw;
    ExpectDeviceQueuesRecorded("after the reaper ran");
  }
  ExpectGroupAersOutstanding("before the takeover");
  EnsureDaemon();
  if (HasFatalFailure()) return;

  Step("takeover: nvmuxd killed and restarted");
  if (daemon_ && daemon_->running()) {
    daemon_->Kill(SIGKILL);
    (void)daemon_->Wait();
  }
  daemon_.reset();
  EnsureDaemon();
  if (HasFatalFailure()) return;
  EXPECT_NE(daemon_pid_, baseline_daemon);

  Step("AEN after the takeover");
  ExpectAenReachesEverySecondary("after the takeover");
  EnsureDaemon();
  if (HasFatalFailure()) return;

  Step("last admin client: the admin queue is usable");
  bool usable = RunAdmin();
  if (!usable) usable = RunAdmin();  // the first one died at the point: once more
  EXPECT_TRUE(usable) << "no admin client completed its commands at the end";

  Step("the I/O secondaries stop");
  for (Subprocess* s : io_) {
    if (!s->running()) continue;
    const int pid = s->pid();
    s->Kill(SIGTERM);
    auto done = s->ReadUntil("done", std::chrono::seconds(30));
    auto st = s->Wait(std::chrono::seconds(30));
    if (KilledByPoint(pid)) continue;
    EXPECT_TRUE(done) << "secondary " << pid << " did not finish its I/O";
    EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
        << "secondary " << pid << "'s verified I/O was disturbed: "
        << (st ? test::DescribeStatus(*st) : st.error().message);
  }
  EnsureDaemon();
  if (HasFatalFailure()) return;

  Step("invariants");
  const std::string died = Died();
  EXPECT_FALSE(died.empty()) << "point " << GetParam()
                             << " not reached by the scenario: extend test/crash/crash_point_test.cc";
  if (!died.empty()) std::printf("[%s] died there: %s\n", GetParam().c_str(), died.c_str());
  // Every member left or was reaped: nothing is in flight, no queue id
  // is in use, the DMA records are the primary's own again.
  int64_t deadline = MonotonicNanos() + 10'000'000'000;
  Census end = test::TakeCensus(MP_CHILD, id_);
  while ((!end.qids.empty() || end.admin_in_flight != 0 || end.dma_records != baseline.dma_records) &&
         MonotonicNanos() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    end = test::TakeCensus(MP_CHILD, id_);
  }
  EXPECT_TRUE(end.qids.empty()) << "queue ids still in use with no live owner: " << end.raw;
  EXPECT_EQ(end.admin_in_flight, 0u) << "admin trackers in flight with no live owner: " << end.raw;
  EXPECT_EQ(end.dma_records, baseline.dma_records) << "DMA records leaked: " << baseline.raw << "\n" << end.raw;
  EXPECT_EQ(end.dma_bytes, baseline.dma_bytes) << "DMA bytes leaked: " << baseline.raw << "\n" << end.raw;
  ExpectDeviceQueuesRecorded("at the end");
  ExpectGroupAersOutstanding("at the end");
  std::printf("[%s] device at the end: %s\n", GetParam().c_str(), Device().raw.c_str());
}

INSTANTIATE_TEST_SUITE_P(Points, CrashPointTest, ::testing::ValuesIn(Points()),
                         [](const ::testing::TestParamInfo<std::string>& point) {
                           std::string name = point.param;
                           std::replace(name.begin(), name.end(), '.', '_');
                           return name;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(CrashPointTest);

}  // namespace
}  // namespace nvmux
