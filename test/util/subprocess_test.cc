// Subprocess against real children: a wait that times out reports where the
// child was stuck, then kills and reaps it.
#include "test/util/subprocess.h"

#include <gtest/gtest.h>
#include <signal.h>

namespace nvmux::test {
namespace {

TEST(SubprocessTest, WaitThatTimesOutReportsTheChildsThreadsAndKillsIt) {
  auto child = Subprocess::Spawn({"/bin/sleep", "60"});
  ASSERT_TRUE(child) << child.error().message;
  const pid_t pid = child->pid();
  testing::internal::CaptureStderr();
  auto st = child->Wait(std::chrono::milliseconds(200));
  const std::string report = testing::internal::GetCapturedStderr();
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ETIMEDOUT);
  EXPECT_NE(report.find("subprocess " + std::to_string(pid) + " did not exit in time"), std::string::npos) << report;
  EXPECT_NE(report.find("(sleep) state S"), std::string::npos) << report;
  EXPECT_FALSE(child->running());
  EXPECT_NE(::kill(pid, 0), 0) << "the child is still there";
}

TEST(SubprocessTest, WaitReturnsTheExitStatus) {
  auto child = Subprocess::Spawn({"/bin/sh", "-c", "exit 3"});
  ASSERT_TRUE(child) << child.error().message;
  auto st = child->Wait();
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(DescribeStatus(*st), "exited 3");
}

}  // namespace
}  // namespace nvmux::test
