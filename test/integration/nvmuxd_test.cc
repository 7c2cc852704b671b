// nvmuxd and nvmux-manage as users run them: real processes, each test with
// its own group id, cleaned up on failure.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <memory>
#include <thread>

#include "shm/group.h"
#include "test/util/subprocess.h"

namespace nvmux {
namespace {

using test::Subprocess;

// Runs a command to completion; returns (exit code, stdout+stderr).
std::pair<int, std::string> RunCommand(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

class NvmuxdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    id_ = static_cast<int>((static_cast<long>(getpid()) * 16 + 8 + counter++) % 900'000) + 10'000;
    ASSERT_TRUE(shm::CleanStaleGroup(id_));
  }
  void TearDown() override {
    procs_.clear();
    EXPECT_TRUE(shm::CleanStaleGroup(id_));
  }
  Subprocess& Spawn(std::vector<std::string> argv) {
    auto p = Subprocess::Spawn(argv);
    EXPECT_TRUE(p);
    procs_.push_back(std::make_unique<Subprocess>(std::move(*p)));
    return *procs_.back();
  }
  Subprocess& StartDaemon() {
    Subprocess& d = Spawn({NVMUXD, "-i", std::to_string(id_)});
    auto line = d.ReadLine(std::chrono::seconds(20));
    EXPECT_TRUE(line);
    if (line) {
      EXPECT_EQ(*line, "nvmuxd: group " + std::to_string(id_) + " ready (pid " + std::to_string(d.pid()) + ", " +
                           shm::GroupPaths::For(id_)->runtime_dir + ")");
    }
    return d;
  }
  std::string Manage(const std::string& args) { return RunCommand(std::string(NVMUX_MANAGE) + " " + args).second; }
  std::string I() const { return std::to_string(id_); }

  int id_ = 0;
  std::vector<std::unique_ptr<Subprocess>> procs_;
};

TEST_F(NvmuxdTest, ServesReapsAKilledSecondaryAndStopsCleanlyOnSigterm) {
  Subprocess& daemon = StartDaemon();
  Subprocess& victim = Spawn({NVMUX_SHM_CHILD, "--role", "secondary", "-i", I(), "--name", "victim"});
  ASSERT_EQ(victim.ReadLine()->rfind("ready", 0), 0u);
  ASSERT_TRUE(victim.WriteLine("alloc 4096"));
  ASSERT_EQ(victim.ReadLine()->rfind("allocated", 0), 0u);
  std::string status = Manage("status -i " + I() + " --json");
  EXPECT_NE(status.find("\"name\": \"victim\""), std::string::npos) << status;
  EXPECT_NE(status.find("\"allocations\": 1"), std::string::npos) << status;

  pid_t victim_pid = victim.pid();
  victim.Kill(SIGKILL);
  ASSERT_TRUE(victim.Wait());
  // No one attaches or detaches: nvmuxd's reaper alone must clean up.
  std::string after;
  for (int i = 0; i < 50; ++i) {
    after = Manage("status -i " + I() + " --json");
    if (after.find("\"name\": \"victim\", \"released\": 1") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_NE(after.find("{\"pid\": " + std::to_string(victim_pid) + ", \"name\": \"victim\", \"released\": 1"),
            std::string::npos) << after;
  EXPECT_NE(after.find("\"allocations\": 0"), std::string::npos) << after;

  daemon.Kill(SIGTERM);
  auto st = daemon.Wait();
  ASSERT_TRUE(st);
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << test::DescribeStatus(*st);
  EXPECT_TRUE(shm::ListGroupFiles(*shm::GroupPaths::For(id_)).empty());
  EXPECT_NE(Manage("status -i " + I()).find("absent"), std::string::npos);
}

TEST_F(NvmuxdTest, SecondDaemonOnTheSameGroupIsRefusedNamingTheFirst) {
  Subprocess& first = StartDaemon();
  auto [code, out] = RunCommand(std::string(NVMUXD) + " -i " + I());
  EXPECT_NE(code, 0);
  EXPECT_NE(out.find("already has a primary (pid " + std::to_string(first.pid()) + ")"), std::string::npos) << out;
  first.Kill(SIGTERM);
  EXPECT_TRUE(first.Wait());
}

TEST_F(NvmuxdTest, ManageCleansAKilledGroupButNotALiveOne) {
  Subprocess& daemon = StartDaemon();
  std::string refused = Manage("cleanup -i " + I());
  EXPECT_NE(refused.find("is alive"), std::string::npos) << refused;
  daemon.Kill(SIGKILL);
  ASSERT_TRUE(daemon.Wait());
  EXPECT_NE(Manage("status -i " + I()).find("stale"), std::string::npos);
  std::string cleaned = Manage("cleanup -i " + I() + " --yes");  // removing needs confirmation
  EXPECT_NE(cleaned.find("removed"), std::string::npos) << cleaned;
  EXPECT_TRUE(shm::ListGroupFiles(*shm::GroupPaths::For(id_)).empty());
  EXPECT_NE(Manage("cleanup -i " + I()).find("nothing to clean"), std::string::npos);
}

TEST_F(NvmuxdTest, BadArgumentsNameTheValueAndWhatIsAllowed) {
  auto [c1, o1] = RunCommand(std::string(NVMUXD) + " -i -5");
  EXPECT_NE(c1, 0);
  EXPECT_NE(o1.find("-5"), std::string::npos) << o1;
  auto [c2, o2] = RunCommand(std::string(NVMUXD) + " -i " + I() + " -m 0xZ");
  EXPECT_NE(c2, 0);
  EXPECT_NE(o2.find("'0xZ'"), std::string::npos) << o2;
  auto [c3, o3] = RunCommand(std::string(NVMUXD) + " -i " + I() + " --log-level loud");
  EXPECT_NE(c3, 0);
  EXPECT_NE(o3.find("'loud'"), std::string::npos) << o3;
  EXPECT_NE(o3.find("debug"), std::string::npos) << o3;
  auto [c4, o4] = RunCommand(std::string(NVMUX_MANAGE) + " status -i 99999999");
  EXPECT_NE(c4, 0);
  EXPECT_NE(o4.find("99999999"), std::string::npos) << o4;
  EXPECT_TRUE(shm::ListGroupFiles(*shm::GroupPaths::For(id_)).empty());
}

}  // namespace
}  // namespace nvmux
