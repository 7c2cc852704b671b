// Shadow doorbells and the emulator's sleep/wake against a real nvmux-emu:
// the driver negotiates Doorbell Buffer Config and the doorbell ioeventfd,
// its queue pairs then publish tails and heads through the shadow page with
// hardly any real doorbell writes, a controller reset configures them again,
// and an emulator that slept after idling answers the first command within
// microseconds (it used to sleep up to 1-5 ms) while costing no CPU when idle.
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "test/integration/driver_test_support.h"

namespace nvmux::test {
namespace {

using Clock = std::chrono::steady_clock;

class DoorbellTest : public DriverTest {
 protected:
  // Runs `count` 4 KiB reads keeping `depth` in flight.
  void ReadLoad(uint32_t count, uint32_t depth) {
    DmaBuffer buf = Alloc(size_t{depth} * 4096);
    std::vector<Done> done(depth);
    uint32_t submitted = 0, completed = 0;
    auto submit = [&](uint32_t slot) {
      done[slot] = Done{};
      Status st = qpair().Read(ns(), static_cast<uint8_t*>(buf.data()) + size_t{slot} * 4096,
                               uint64_t{submitted % 1024} * 8, 8, OnDone, &done[slot]);
      ASSERT_TRUE(st) << st.error().ToString();
      ++submitted;
    };
    for (uint32_t s = 0; s < depth && submitted < count; ++s) submit(s);
    auto deadline = Clock::now() + 30s;
    while (completed < count && Clock::now() < deadline) {
      auto n = qpair().ProcessCompletions();
      ASSERT_TRUE(n) << n.error().ToString();
      for (uint32_t s = 0; s < depth; ++s) {
        if (!done[s].done()) continue;
        ASSERT_TRUE(done[s].ok()) << StatusOf(done[s].cpl);
        done[s] = Done{};
        ++completed;
        if (submitted < count) submit(s);
        else done[s].calls = -1;  // finished slot: never counted again
      }
    }
    ASSERT_EQ(completed, count);
  }

  // Latency of one QD1 4 KiB read, from submission to its completion seen.
  std::chrono::nanoseconds TimedRead(DmaBuffer& buf, uint64_t lba) {
    Done d;
    auto start = Clock::now();
    Status st = qpair().Read(ns(), buf.data(), lba, 8, OnDone, &d);
    EXPECT_TRUE(st) << st.error().ToString();
    while (!d.done() && Clock::now() - start < 5s) {
      auto n = qpair().ProcessCompletions();
      if (!n) {
        ADD_FAILURE() << n.error().ToString();
        break;
      }
    }
    auto took = Clock::now() - start;
    EXPECT_TRUE(d.ok()) << StatusOf(d.cpl);
    return std::chrono::duration_cast<std::chrono::nanoseconds>(took);
  }


  // The device on its own core, as hardware would be: this thread on the
  // first allowed CPU, every nvmux-emu thread on another. Otherwise, on a
  // small machine, the scheduler may put this spinning thread and the
  // emulator's poller on one CPU, and latency becomes time slicing.
  // Returns false (and pins nothing) with fewer than two CPUs.
  bool PinApart() {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (::sched_getaffinity(0, sizeof(allowed), &allowed) != 0 || CPU_COUNT(&allowed) < 2) return false;
    saved_affinity_ = allowed;
    int first = -1, second = -1;
    for (int c = 0; c < CPU_SETSIZE && second < 0; ++c) {
      if (!CPU_ISSET(c, &allowed)) continue;
      (first < 0 ? first : second) = c;
    }
    cpu_set_t mine, emu;
    CPU_ZERO(&mine);
    CPU_ZERO(&emu);
    CPU_SET(first, &mine);
    CPU_SET(second, &emu);
    for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(emu_->pid()) + "/task"))
      if (::sched_setaffinity(std::stoi(task.path().filename().string()), sizeof(emu), &emu) != 0) return false;
    pinned_ = ::sched_setaffinity(0, sizeof(mine), &mine) == 0;
    return pinned_;
  }
  void TearDown() override {
    if (pinned_) (void)::sched_setaffinity(0, sizeof(saved_affinity_), &saved_affinity_);
    DriverTest::TearDown();
  }
  cpu_set_t saved_affinity_{};
  bool pinned_ = false;
  // CPU time (user + system) of the emulator process so far, in ms.
  double EmulatorCpuMs() {
    std::ifstream stat("/proc/" + std::to_string(emu_->pid()) + "/stat");
    std::string line;
    std::getline(stat, line);
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i)
      if (i == 14 || i == 15) ticks += std::stod(field);
    return ticks * 1000.0 / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }
};

double MedianUs(std::vector<std::chrono::nanoseconds> v) {
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[v.size() / 2].count()) / 1000.0;
}

TEST_F(DoorbellTest, ShadowDoorbellsAreUsedAndRealWritesAreRare) {
  ASSERT_NE(ctrlr().data().oacs & spec::kOacsDbcs, 0) << "nvmux-emu offers Doorbell Buffer Config";
  ReadLoad(4000, 16);
  const QpairStatistics& s = qpair().statistics();
  const uint64_t real = s.sq_doorbell_writes + s.cq_doorbell_writes;
  std::printf("4000 reads at QD16: %lu shadow doorbell updates, %lu real doorbell writes (%lu SQ, %lu CQ)\n",
              static_cast<unsigned long>(s.shadow_doorbell_updates), static_cast<unsigned long>(real),
              static_cast<unsigned long>(s.sq_doorbell_writes), static_cast<unsigned long>(s.cq_doorbell_writes));
  RecordProperty("shadow_doorbell_updates", std::to_string(s.shadow_doorbell_updates));
  RecordProperty("real_doorbell_writes", std::to_string(real));
  EXPECT_GE(s.shadow_doorbell_updates, 4000u / 16) << "at least one SQ update per batch";
  // While the emulator polls, EventIdx asks for nothing: real writes only
  // when it went to sleep (a few wake-ups at most under load).
  EXPECT_LT(real * 20, s.shadow_doorbell_updates) << "real doorbell writes should be rare";
}

TEST_F(DoorbellTest, IoAfterResetStillUsesShadowDoorbells) {
  ReadLoad(500, 8);
  ASSERT_TRUE(ctrlr().Reset());
  const uint64_t shadow_before = qpair().statistics().shadow_doorbell_updates;
  const uint64_t real_before = qpair().statistics().sq_doorbell_writes + qpair().statistics().cq_doorbell_writes;
  WritePattern(ns(), 100, 8, 7);
  ExpectPattern(ns(), 100, 8, 7);
  ReadLoad(2000, 8);
  const QpairStatistics& s = qpair().statistics();
  const uint64_t shadow = s.shadow_doorbell_updates - shadow_before;
  const uint64_t real = s.sq_doorbell_writes + s.cq_doorbell_writes - real_before;
  EXPECT_GE(shadow, 2000u / 8) << "the reset configured shadow doorbells again";
  EXPECT_LT(real * 20, shadow);
  // And twice more, to be sure the buffers are re-issued each time.
  ASSERT_TRUE(ctrlr().Reset());
  ASSERT_TRUE(ctrlr().Reset());
  ExpectPattern(ns(), 100, 8, 7);
}

TEST_F(DoorbellTest, FirstCommandAfterIdleIsServedWithinMicroseconds) {
  DmaBuffer buf = Alloc(4096);
  if (!PinApart()) std::printf("fewer than two CPUs: the driver and the emulator share one\n");
  // Busy figure: back-to-back QD1 reads (the emulator spins between them).
  for (int i = 0; i < 50; ++i) (void)TimedRead(buf, 8);
  std::vector<std::chrono::nanoseconds> busy;
  for (int i = 0; i < 200; ++i) busy.push_back(TimedRead(buf, uint64_t(i % 64) * 8));
  // After idling past the emulator's sleep threshold (it sleeps on the
  // doorbell ioeventfd; before, it slept 1 ms at a time below 1 s of idle).
  std::vector<std::chrono::nanoseconds> woken;
  for (int round = 0; round < 20; ++round) {
    std::this_thread::sleep_for(200ms);
    woken.push_back(TimedRead(buf, uint64_t(round) * 8));
  }
  const double busy_us = MedianUs(busy), woken_us = MedianUs(woken);
  std::printf("QD1 4 KiB read: busy median %.1f us; first after 200 ms idle: median %.1f us, max %.1f us (20 rounds)\n",
              busy_us, woken_us,
              static_cast<double>(std::max_element(woken.begin(), woken.end())->count()) / 1000.0);
  RecordProperty("busy_median_us", std::to_string(busy_us));
  RecordProperty("after_idle_median_us", std::to_string(woken_us));
  // Loose for noisy CI machines (sanitizer builds get more); the old short
  // sleeps (up to 1 ms at a time below 1 s of idleness) gave ~450-500 us.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr double kLimitUs = 350.0;
#else
  constexpr double kLimitUs = 200.0;
#endif
  EXPECT_LT(woken_us, kLimitUs);
}

TEST_F(DoorbellTest, EmulatorIdlesWithoutCpu) {
  ReadLoad(200, 4);
  std::this_thread::sleep_for(200ms);  // past the sleep threshold
  const double before = EmulatorCpuMs();
  auto start = Clock::now();
  std::this_thread::sleep_for(2s);
  const double wall_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  const double percent = (EmulatorCpuMs() - before) / wall_ms * 100.0;
  std::printf("nvmux-emu idle CPU with a driver attached (shadow doorbells, ioeventfd): %.2f%%\n", percent);
  RecordProperty("emu_idle_cpu_percent", std::to_string(percent));
  EXPECT_LT(percent, 1.0);
  // Still answers.
  WritePattern(ns(), 0, 8, 3);
  ExpectPattern(ns(), 0, 8, 3);
}

}  // namespace
}  // namespace nvmux::test
