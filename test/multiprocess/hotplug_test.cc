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
#include "test/util/group_fixture.h"
#include "test/util/subprocess.h"

namespace nvmux {
namespace {

using test::Subprocess;
using namespace std::chrono_literals;

class HotplugTest : public ::testing::Test {
 protected:
  void SetUp() override {
    id_ = test::FreshGroupId(11);
    dir_ = test::MakeTempDir("hp");
    ASSERT_FALSE(dir_.empty());
    trid_ = "trtype:vfiouser traddr:" + dir_;
    StartEmu();
    ASSERT_TRUE(emu_);
    daemon_ = test::StartNvmuxd({NVMUXD, "-i", std::to_string(id_), "-r", trid_});
    ASSERT_TRUE(daemon_);
  }
  void TearDown() override {
    if (child_ && child_->running()) {
      child_->Kill(SIGKILL);
      (void)child_->Wait();
    }
    test::StopCleanly(daemon_, "nvmuxd");
    test::StopCleanly(emu_, "nvmux-emu");
    EXPECT_TRUE(shm::CleanStaleGroup(id_));
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<Subprocess> Start(const std::vector<std::string>& argv) { return test::StartProcess(argv); }
  void StartEmu() { emu_ = test::StartEmu({NVMUX_EMU, "--socket", dir_, "--ns", "size=64M"}, dir_); }
  void StopEmu() { test::StopCleanly(emu_, "nvmux-emu"); }
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
  ASSERT_TRUE(emu_);
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
