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

}  // namespace
}  // namespace nvmux::test
