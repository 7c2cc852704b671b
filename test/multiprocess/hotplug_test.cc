// Hotplug across processes: nvmux-emu, nvmuxd -r (primary/hotplug.h) and a
// secondary that probes repeatedly (nvmux_mp_hotplug_child). The emulator
// is surprise-removed: nvmuxd detaches the controller and retires its group
// entry, the secondary's I/O fails with ENXIO and its remove callback runs,
// nothing crashes. The emulator is then restarted at the same socket
// directory: nvmuxd attaches and publishes it again, and the secondary's
// next probe reports it as new and its I/O works.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <thread>

#include "shm/base/clock.h"
#include "shm/group.h"
#include "test/util/subprocess.h"

namespace nvmux {
namespace {

using test::Subprocess;
using namespace std::chrono_literals;

class HotplugTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    id_ = static_cast<int>((static_cast<long>(getpid()) * 16 + 11 + counter++) % 900'000) + 10'000;
    ASSERT_TRUE(shm::CleanStaleGroup(id_));
    char tmpl[] = "/tmp/nvmux-hp-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    trid_ = "trtype:vfiouser traddr:" + dir_;
    StartEmu();
    daemon_ = Start({NVMUXD, "-i", std::to_string(id_), "-r", trid_});
    ASSERT_TRUE(daemon_);
    auto line = daemon_->ReadUntil("nvmuxd: group", 20s);
    ASSERT_TRUE(line) << "nvmuxd did not come up";
  }
  void TearDown() override {
    if (child_ && child_->running()) {
      child_->Kill(SIGKILL);
      (void)child_->Wait();
    }
    if (daemon_ && daemon_->running()) {
      daemon_->Kill(SIGTERM);
      auto st = daemon_->Wait(20s);
      EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
          << "nvmuxd did not stop cleanly: " << (st ? test::DescribeStatus(*st) : st.error().message);
    }
    daemon_.reset();
    StopEmu();
    EXPECT_TRUE(shm::CleanStaleGroup(id_));
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<Subprocess> Start(const std::vector<std::string>& argv) {
    auto p = Subprocess::Spawn(argv);
    EXPECT_TRUE(p) << p.error().message;
    if (!p) return nullptr;
    return std::make_unique<Subprocess>(std::move(*p));
  }
  void StartEmu() {
    emu_ = Start({NVMUX_EMU, "--socket", dir_, "--ns", "size=64M"});
    int64_t deadline = MonotonicNanos() + 10'000'000'000;
    while (!std::filesystem::exists(dir_ + "/cntrl") && MonotonicNanos() < deadline)
      std::this_thread::sleep_for(5ms);
    ASSERT_TRUE(std::filesystem::exists(dir_ + "/cntrl")) << "nvmux-emu did not start";
  }
  void StopEmu() {
    if (!emu_) return;
    emu_->Kill(SIGTERM);
    auto st = emu_->Wait();
    EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << (st ? test::DescribeStatus(*st) : "");
    emu_.reset();
  }
  // Reads the child's lines until every one of `wanted` (line prefixes) was
  // seen; fails on an "error" line or the deadline.
  void ExpectLines(Subprocess& p, std::set<std::string> wanted, Nanos timeout = 10s) {
    int64_t deadline = MonotonicNanos() + timeout.count();
    while (!wanted.empty()) {
      Nanos left(std::max<int64_t>(deadline - MonotonicNanos(), 1));
      auto line = p.ReadLine(left);
      ASSERT_TRUE(line) << "still waiting for '" << *wanted.begin() << "': " << line.error().message;
      ASSERT_NE(line->rfind("error", 0), 0u) << *line;
      for (auto it = wanted.begin(); it != wanted.end(); ++it)
        if (line->rfind(*it, 0) == 0) {
          wanted.erase(it);
          break;
        }
    }
  }

  int id_ = 0;
  std::string dir_, trid_;
  std::unique_ptr<Subprocess> emu_, daemon_, child_;
};

TEST_F(HotplugTest, SurpriseRemovalThenRestartAtTheSamePath) {
  child_ = Start({MP_HOTPLUG_CHILD, "-i", std::to_string(id_), "-r", trid_, "--seconds", "120"});
  ASSERT_TRUE(child_);
  ExpectLines(*child_, {"attached " + trid_, "io-ok " + trid_}, 20s);

  // Surprise removal (SIGUSR1): the device goes, the emulator process stays.
  emu_->Kill(SIGUSR1);
  ExpectLines(*daemon_, {"nvmuxd: hotplug: removed " + trid_}, 10s);
  ExpectLines(*child_, {"enxio " + trid_, "removed " + trid_}, 10s);
  ASSERT_TRUE(child_->running());

  // A probe finds nothing new while the device is gone (the child prints
  // "attached" only for a new controller): give it a few rounds.
  std::this_thread::sleep_for(300ms);

  // The emulator restarts at the same directory: nvmuxd attaches it again
  // within its probe period, the secondary's next probe reports it as new.
  StopEmu();
  StartEmu();
  ExpectLines(*daemon_, {"nvmuxd: hotplug: attached " + trid_}, 10s);
  ExpectLines(*child_, {"attached " + trid_, "io-ok " + trid_}, 10s);

  // A clean stop: the child detaches, nothing crashed.
  child_->Kill(SIGTERM);
  ExpectLines(*child_, {"done"}, 10s);
  auto st = child_->Wait(10s);
  ASSERT_TRUE(st);
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << test::DescribeStatus(*st);
}

TEST_F(HotplugTest, SecondaryProbeWithoutTraddrFindsThePublishedControllerAndNothingMore) {
  child_ = Start({MP_HOTPLUG_CHILD, "-i", std::to_string(id_), "--seconds", "1.5", "--probe-ms", "20"});
  ASSERT_TRUE(child_);
  ExpectLines(*child_, {"attached " + trid_, "io-ok " + trid_}, 20s);
  // Repeated probes attach nothing more: the next line is the end.
  auto line = child_->ReadLine(10s);
  ASSERT_TRUE(line) << line.error().message;
  EXPECT_EQ(*line, "done");
  auto st = child_->Wait(10s);
  ASSERT_TRUE(st);
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << test::DescribeStatus(*st);
}

}  // namespace
}  // namespace nvmux
