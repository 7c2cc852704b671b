// NVMe/TCP in a group (ARCHITECTURE.md "NVMe/TCP in a group"), against
// SPDK's nvmf_tgt on 127.0.0.1 (the peer's target.sh), with real processes:
// nvmuxd owns the admin connection; secondaries' admin commands go through
// the shared admin ring (nvmuxd's engine sends them), their I/O queues are
// their own connections; a secondary killed with SIGKILL has its queue ids
// reaped without admin commands; a restarted nvmuxd takes the group over
// with a new association and the old association's secondaries fail with
// ENXIO. Skipped with the reason when NVMUX_SPDK_DIR names no SPDK build.
// One target at a time (CTest resource lock spdk_target).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <thread>

#include "shm/base/clock.h"
#include "shm/group.h"
#include "test/interop/spdk_peer.h"
#include "test/util/group_fixture.h"
#include "test/util/subprocess.h"

namespace nvmux::test {
namespace {

using namespace std::chrono_literals;

bool Contains(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

int FreePort() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (s >= 0) ::close(s);
    return 0;
  }
  ::close(s);
  return ntohs(a.sin_port);
}

// A number after `key` in `text` ("submitted 40" -> 40), or -1.
// (No std::regex: GCC 12's <regex> trips -Wmaybe-uninitialized under ASan.)
long NumberAfter(const std::string& text, const std::string& key) {
  for (size_t at = text.find(key + " "); at != std::string::npos; at = text.find(key + " ", at + 1)) {
    size_t digits = at + key.size() + 1;
    if (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits])) != 0)
      return std::stol(text.substr(digits));
  }
  return -1;
}

class SpdkTcpGroupTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string why;
    auto peer = SpdkPeer::Find(why);
    if (!peer) {
      skip_ = why;
      return;
    }
    spdk_.emplace(*peer);
    std::string error;
    auto trid = spdk_->StartTarget("tcp", std::to_string(FreePort()), error);
    if (!trid) {
      start_error_ = error;
      return;
    }
    trid_ = *trid;
  }
  static void TearDownTestSuite() {
    if (spdk_) spdk_->StopTarget();
    spdk_.reset();
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_TRUE(start_error_.empty()) << start_error_;
    group_ = FreshGroupId(11);
  }
  void TearDown() override {
    KillAll(children_);
    if (daemon_) StopCleanly(daemon_, "nvmuxd");
    if (group_ != 0) {
      EXPECT_TRUE(shm::CleanStaleGroup(group_));
    }
  }
  std::string G() const { return std::to_string(group_); }
  // nvmuxd without keep-alive: the admin queue carries only what the test
  // (and the group's AERs) put there, so its counters say what was sent.
  void StartDaemon() {
    daemon_ = StartNvmuxd({NVMUXD, "-i", G(), "-r", trid_, "--keep-alive-ms", "0"});
    ASSERT_TRUE(daemon_) << "nvmuxd did not come up with " << trid_;
  }
  std::string Status() {
    RunResult r = RunCaptured({NVMUX_MANAGE, "status", "-i", G()}, {}, 30s);
    EXPECT_TRUE(r.ok()) << r.Describe();
    return r.output;
  }
  Subprocess& Io(double seconds) {
    children_.push_back(StartProcess({MP_CHILD, "io", "-i", G(), "-r", trid_, "--lba", std::to_string(next_lba_),
                                      "--blocks", "1024", "--seconds", std::to_string(seconds)}));
    next_lba_ += 4096;
    return *children_.back();
  }
  static int Ready(Subprocess& c) {
    auto line = c.ReadUntil("ready", 30s);
    EXPECT_TRUE(line) << "the secondary did not become ready";
    return line ? std::stoi(line->substr(6)) : -1;
  }
  template <typename Pred>
  std::string WaitStatus(Pred pred) {
    const int64_t deadline = MonotonicNanos() + 10'000'000'000;
    std::string s = Status();
    while (!pred(s) && MonotonicNanos() < deadline) {
      std::this_thread::sleep_for(50ms);
      s = Status();
    }
    return s;
  }

  static inline std::optional<SpdkPeer> spdk_;
  static inline std::string skip_, start_error_, trid_;
  int group_ = 0;
  uint64_t next_lba_ = 0;
  std::unique_ptr<Subprocess> daemon_;
  std::vector<std::unique_ptr<Subprocess>> children_;
};

// Step 1 and 2 of the design: identify's admin commands (Get Log Page) and
// status go through nvmuxd's connection; perf's verified I/O runs on the
// secondary's own connection.
TEST_F(SpdkTcpGroupTest, SecondariesAdminAndVerifiedIoThroughNvmuxd) {
  StartDaemon();
  const long routed_before = NumberAfter(Status(), "routed");
  RunResult id = RunCaptured({NVMUX_IDENTIFY, "-i", G()}, {}, 30s);
  ASSERT_TRUE(id.ok()) << id.Describe();
  EXPECT_TRUE(Contains(id.output, "SPDK00000000000001")) << id.output;
  EXPECT_TRUE(Contains(id.output, "Firmware Slot Information")) << id.output;  // Get Log Page 03h
  std::string status = Status();
  EXPECT_TRUE(Contains(status, "(transport TCP)")) << status;
  // Completions of the secondary's commands, routed from the shared ring.
  EXPECT_GT(NumberAfter(status, "routed"), routed_before) << status;
  RunResult perf = RunCaptured({NVMUX_PERF, "-i", G(), "-q", "16", "-o", "4096", "-w", "randrw", "-M", "50", "-t", "1",
                                "--verify"}, {}, 60s);
  ASSERT_TRUE(perf.ok()) << perf.Describe();
  EXPECT_TRUE(Contains(perf.output, "Total")) << perf.output;
  // 128 KiB writes: beyond the in-capsule size, so R2T and H2CData.
  RunResult big = RunCaptured({NVMUX_PERF, "-i", G(), "-q", "4", "-o", "131072", "-w", "write", "-t", "1",
                               "--verify"}, {}, 60s);
  ASSERT_TRUE(big.ok()) << big.Describe();
}

// Step 3: a secondary killed with SIGKILL: its socket closes, the reaper
// frees its queue id without any admin command, and the next secondary
// connects the same queue id.
TEST_F(SpdkTcpGroupTest, KilledSecondarysQueueIdIsReapedWithoutAdminCommandsAndReused) {
  StartDaemon();
  Subprocess& victim = Io(60);
  const int qid = Ready(victim);
  ASSERT_GT(qid, 0);
  std::string before = Status();
  EXPECT_TRUE(Contains(before, "qid " + std::to_string(qid))) << before;
  const long submitted = NumberAfter(before, "submitted");
  const int pid = victim.pid();
  victim.Kill(SIGKILL);
  (void)victim.Wait();
  std::string after = WaitStatus([&](const std::string& s) {
    return Contains(s, "reaped: pid " + std::to_string(pid)) && Contains(s, "I/O queues: none in use");
  });
  EXPECT_TRUE(Contains(after, "reaped: pid " + std::to_string(pid))) << after;
  EXPECT_TRUE(Contains(after, "I/O queues: none in use")) << after;
  EXPECT_EQ(NumberAfter(after, "submitted"), submitted) << "the reaper sent admin commands:\n" << after;
  Subprocess& next = Io(1);
  EXPECT_EQ(Ready(next), qid);
  EXPECT_TRUE(next.ReadUntil("done", 60s)) << "the next secondary's verified I/O did not finish";
  auto st = next.Wait(30s);
  ASSERT_TRUE(st);
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << DescribeStatus(*st);
}

// Step 4: nvmuxd killed: its admin connection, and with it the association,
// is gone. The restarted nvmuxd takes the group over with a new association
// (a new CNTLID); the old association's secondary fails (ENXIO: exits 1),
// a new secondary's verified I/O works.
TEST_F(SpdkTcpGroupTest, RestartedNvmuxdTakesOverWithANewAssociation) {
  StartDaemon();
  const long cntlid = NumberAfter(Status(), "cntlid");
  Subprocess& old = Io(60);
  ASSERT_GT(Ready(old), 0);
  daemon_->Kill(SIGKILL);
  (void)daemon_->Wait();
  daemon_.reset();
  StartDaemon();
  std::string status = Status();
  EXPECT_NE(NumberAfter(status, "cntlid"), cntlid) << status;
  auto st = old.Wait(30s);
  ASSERT_TRUE(st) << "the old association's secondary did not fail";
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 1) << DescribeStatus(*st);
  Subprocess& fresh = Io(1);
  EXPECT_GT(Ready(fresh), 0);
  EXPECT_TRUE(fresh.ReadUntil("done", 60s)) << "a new secondary's verified I/O did not finish";
  auto fst = fresh.Wait(30s);
  ASSERT_TRUE(fst);
  EXPECT_TRUE(WIFEXITED(*fst) && WEXITSTATUS(*fst) == 0) << DescribeStatus(*fst);
  RunResult id = RunCaptured({NVMUX_IDENTIFY, "-i", G()}, {}, 30s);
  EXPECT_TRUE(id.ok()) << id.Describe();
}

}  // namespace
}  // namespace nvmux::test
