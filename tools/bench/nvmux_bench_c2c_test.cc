// nvmux-bench-c2c as the benchmark scripts run it: a separate process that
// prints one line with a plausible handoff time, and that refuses bad CPUs
// with exit status 2.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "test/util/subprocess.h"

namespace nvmux {
namespace {

int ExitCode(test::Subprocess& p) {
  auto status = p.Wait(std::chrono::seconds(20));
  EXPECT_TRUE(status.has_value());
  return status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
}

TEST(BenchC2cTest, PrintsOneHandoffTimeBetweenTwoCpus) {
  if (sysconf(_SC_NPROCESSORS_ONLN) < 2) GTEST_SKIP() << "needs two CPUs";
  auto p = test::Subprocess::Spawn({NVMUX_BENCH_C2C, "-a", "0", "-b", "1", "--ms", "5"});
  ASSERT_TRUE(p) << p.error().message;
  auto line = p->ReadLine(std::chrono::seconds(20));
  ASSERT_TRUE(line) << line.error().message;
  const std::string prefix = "c2c 0<->1: ";
  ASSERT_EQ(line->rfind(prefix, 0), 0u) << *line;
  const double ns = std::strtod(line->c_str() + prefix.size(), nullptr);
  // A handoff takes tens to hundreds of nanoseconds; never nothing, never
  // a millisecond (that would be a scheduler tick, not a cache line).
  EXPECT_GT(ns, 1.0) << *line;
  EXPECT_LT(ns, 1'000'000.0) << *line;
  EXPECT_NE(line->find("ns per one-way handoff"), std::string::npos) << *line;
  EXPECT_EQ(ExitCode(*p), 0);
}

TEST(BenchC2cTest, RefusesOneCpuTwiceAndACpuThatIsNotThere) {
  auto same = test::Subprocess::Spawn({NVMUX_BENCH_C2C, "-a", "0", "-b", "0"});
  ASSERT_TRUE(same);
  EXPECT_EQ(ExitCode(*same), 2);
  auto absent = test::Subprocess::Spawn({NVMUX_BENCH_C2C, "-a", "0", "-b", "1023"});
  ASSERT_TRUE(absent);
  EXPECT_EQ(ExitCode(*absent), 2);
}

}  // namespace
}  // namespace nvmux
