// The example programs run as users run them: each against a fresh
// nvmux-emu process on its own /tmp/nvmux-* directory (removed even when the
// test fails), output checked.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "test/util/subprocess.h"

namespace nvmux::test {
namespace {

using namespace std::chrono_literals;

class ExamplesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The emulator creates the directory and removes it when it exits, also
    // when it gets SIGTERM because this process died (setpriv --pdeathsig).
    dir_ = "/tmp/nvmux-examples-" + std::to_string(::getpid());
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    auto emu = Subprocess::Spawn({"/usr/bin/setpriv", "--pdeathsig", "TERM", "--", NVMUX_EMU, "--socket", dir_,
                                  "--ns", "size=64M"});
    ASSERT_TRUE(emu) << emu.error().ToString();
    emu_ = std::make_unique<Subprocess>(std::move(*emu));
    int64_t deadline = MonotonicNanos() + 10'000'000'000;
    while (!std::filesystem::exists(dir_ + "/cntrl") && MonotonicNanos() < deadline)
      std::this_thread::sleep_for(1ms);
    ASSERT_TRUE(std::filesystem::exists(dir_ + "/cntrl")) << "nvmux-emu did not create its socket";
  }
  void TearDown() override {
    if (emu_) {
      emu_->Kill(SIGTERM);
      auto st = emu_->Wait();
      EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  // Runs `argv`, collecting its stdout until it closes (30 s at most).
  // Returns the lines and the wait status.
  std::pair<std::vector<std::string>, int> RunToEnd(const std::vector<std::string>& argv) {
    auto child = Subprocess::Spawn(argv);
    EXPECT_TRUE(child) << child.error().ToString();
    if (!child) return {{}, -1};
    std::vector<std::string> lines;
    int64_t deadline = MonotonicNanos() + 30'000'000'000;
    for (;;) {
      auto line = child->ReadLine(Nanos(std::max<int64_t>(deadline - MonotonicNanos(), 0)));
      if (!line) {
        EXPECT_EQ(line.error().code, EPIPE) << line.error().ToString();
        break;
      }
      lines.push_back(*line);
    }
    auto st = child->Wait();
    EXPECT_TRUE(st) << st.error().ToString();
    return {lines, st ? *st : -1};
  }

  std::string dir_;
  std::unique_ptr<Subprocess> emu_;
};

TEST_F(ExamplesTest, HelloWorldWritesAndReadsBackItsGreeting) {
  auto [lines, status] = RunToEnd({NVMUX_HELLO_WORLD, "-r", "trtype:vfiouser traddr:" + dir_});
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << DescribeStatus(status);
  std::string all;
  for (const std::string& l : lines) all += l + "\n";
  EXPECT_NE(std::find(lines.begin(), lines.end(), "Hello world!"), lines.end()) << "output:\n" << all;
  EXPECT_NE(all.find("Attached to trtype:vfiouser traddr:" + dir_), std::string::npos) << all;
  EXPECT_NE(all.find("Namespace ID: 1"), std::string::npos) << all;
}

TEST_F(ExamplesTest, HelloWorldExplainsAMissingController) {
  auto [lines, status] = RunToEnd({NVMUX_HELLO_WORLD, "-r", "trtype:vfiouser traddr:" + dir_ + "/nothing-here"});
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << DescribeStatus(status);
  EXPECT_TRUE(lines.empty());
}

// Event mode in the application's own epoll loop: the reads are woken by
// the queue's interrupt, and once idle the loop sleeps: over the idle
// second nothing wakes it (a loop that polled or spun would count wakeups
// here; keep-alive's timer is due only after a quarter of the KATO, 2.5 s).
TEST_F(ExamplesTest, EventLoopIsWokenByItsReadsThenSleepsWhileIdle) {
  auto [lines, status] =
      RunToEnd({NVMUX_EVENT_LOOP, "-r", "trtype:vfiouser traddr:" + dir_, "--reads", "50", "--seconds", "1"});
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << DescribeStatus(status);
  std::string all;
  for (const std::string& l : lines) all += l + "\n";
  EXPECT_NE(std::find(lines.begin(), lines.end(), "reads done 50"), lines.end()) << all;
  unsigned long io = 0, admin = 0, timer = 0, idle = 0;
  auto w = std::find_if(lines.begin(), lines.end(), [](const std::string& l) { return l.rfind("wakeups ", 0) == 0; });
  ASSERT_NE(w, lines.end()) << all;
  ASSERT_EQ(std::sscanf(w->c_str(), "wakeups io %lu admin %lu timer %lu idle %lu", &io, &admin, &timer, &idle), 4)
      << *w;
  EXPECT_GE(io, 1u) << "no read was woken by the queue's event fd: " << all;
  EXPECT_EQ(idle, 0u) << "the idle loop woke up: " << all;
}

// SIGTERM ends an idle loop (--seconds 0: until a signal) cleanly.
TEST_F(ExamplesTest, EventLoopStopsOnSigterm) {
  auto child = Subprocess::Spawn({NVMUX_EVENT_LOOP, "-r", "trtype:vfiouser traddr:" + dir_});
  ASSERT_TRUE(child) << child.error().ToString();
  bool idle = false;
  for (int i = 0; i < 10 && !idle; ++i) {
    auto line = child->ReadLine(Nanos(30'000'000'000));
    ASSERT_TRUE(line) << line.error().ToString();
    idle = *line == "idle";
  }
  ASSERT_TRUE(idle);
  child->Kill(SIGTERM);
  auto st = child->Wait();
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << DescribeStatus(*st);
}

TEST_F(ExamplesTest, EventLoopExplainsAMissingController) {
  auto [lines, status] = RunToEnd({NVMUX_EVENT_LOOP});
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << DescribeStatus(status);
}

}  // namespace
}  // namespace nvmux::test
