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
#include <ctime>
#include <filesystem>
#include <random>
#include <regex>
#include <thread>

#include "shm/base/clock.h"
#include "shm/group.h"
#include "test/util/subprocess.h"

namespace nvmux {
namespace {

using test::Subprocess;

int64_t RealtimeNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

struct Census {
  std::vector<std::array<uint32_t, 3>> qids;  // qid, owner slot, on device
  uint32_t admin_in_flight = 0;
  uint32_t dma_records = 0;
  uint64_t dma_bytes = 0;
  std::vector<std::pair<int, int64_t>> reaped;  // pid, realtime ns
  std::string raw;
};

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
    emu_ = Start({NVMUX_EMU, "--socket", dir_});
    for (int i = 0; i < 200 && !std::filesystem::exists(dir_ + "/cntrl"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
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
  Subprocess& Child(uint64_t lba, double seconds, uint32_t blocks = 1024) {
    children_.push_back(Start({MP_CHILD, "io", "-i", std::to_string(id_), "-r", trid_, "--lba", std::to_string(lba),
                               "--blocks", std::to_string(blocks), "--seconds", std::to_string(seconds)}));
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
  Census TakeCensus() {
    Census c;
    // Bounded: a census that cannot join (a DPDK lock left held) must fail the test, not hang it.
    std::string cmd = "timeout -s KILL 20 " + std::string(MP_CHILD) + " census -i " + std::to_string(id_) + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    char buf[8192];
    while (size_t n = std::fread(buf, 1, sizeof buf, p)) c.raw.append(buf, n);
    ::pclose(p);
    std::smatch m;
    std::string q = c.raw;
    std::regex triple(R"(\[(\d+),(\d+),(\d+)\])");
    auto qs = c.raw.find("\"qids\": [");
    auto qe = c.raw.find("]]", qs);
    std::string qpart = qs == std::string::npos ? "" : c.raw.substr(qs, qe == std::string::npos ? 0 : qe - qs + 2);
    for (auto it = std::sregex_iterator(qpart.begin(), qpart.end(), triple); it != std::sregex_iterator(); ++it)
      c.qids.push_back({static_cast<uint32_t>(std::stoul((*it)[1])), static_cast<uint32_t>(std::stoul((*it)[2])),
                        static_cast<uint32_t>(std::stoul((*it)[3]))});
    if (std::regex_search(c.raw, m, std::regex(R"("admin_in_flight": \[(\d+))")))
      c.admin_in_flight = static_cast<uint32_t>(std::stoul(m[1]));
    if (std::regex_search(c.raw, m, std::regex(R"("dma_records": (\d+))"))) c.dma_records = static_cast<uint32_t>(std::stoul(m[1]));
    if (std::regex_search(c.raw, m, std::regex(R"("dma_bytes": (\d+))"))) c.dma_bytes = std::stoull(m[1]);
    auto rs = c.raw.find("\"reaped\": [");
    std::string rpart = rs == std::string::npos ? "" : c.raw.substr(rs);
    std::regex pair(R"(\[(\d+),(\d+)\])");
    for (auto it = std::sregex_iterator(rpart.begin(), rpart.end(), pair); it != std::sregex_iterator(); ++it)
      c.reaped.emplace_back(std::stoi((*it)[1]), std::stoll((*it)[2]));
    return c;
  }
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
  ASSERT_NE(rec, after.reaped.end()) << after.raw;
  double ms = static_cast<double>(rec->second - killed_at) / 1e6;
  std::printf("reaped %.2f ms after kill -9\n", ms);
  EXPECT_LT(ms, 100.0);
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
    EXPECT_LT(latencies.back(), 100.0);
  }
}

TEST_F(MultiProcessTest, SecondariesKeepDoingIoAfterThePrimaryIsKilled) {
  Subprocess& survivor = Child(0, 100000.0);
  ExpectReady(survivor);
  daemon_->Kill(SIGKILL);
  (void)daemon_->Wait();
  daemon_.reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_TRUE(survivor.running());
  survivor.Kill(SIGTERM);
  ExpectCleanFinish(survivor);
}

}  // namespace
}  // namespace nvmux
