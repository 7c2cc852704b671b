// Who may join a group (issue 14): real processes run as another user
// (`setpriv --reuid=nobody`) against a group whose nvmuxd runs as root.
// Without --access-group they are refused before they touch anything, and
// nvmux-manage's status and cleanup say what they could not read instead of
// calling a live group stale; with it, the access group's members join.
// Needs root (to run processes as another user): skipped otherwise.
#include <gtest/gtest.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include "shm/group.h"
#include "test/util/subprocess.h"

namespace nvmux {
namespace {

using test::Subprocess;

std::pair<int, std::string> RunCommand(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

class AccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: runs processes as user nobody with setpriv";
    if (getgrnam("nogroup") == nullptr) GTEST_SKIP() << "needs the Unix group nogroup";
    static int counter = 0;
    id_ = static_cast<int>((static_cast<long>(getpid()) * 16 + 4 + counter++) % 900'000) + 10'000;
    // A run dir of its own, searchable by everyone (as scripts/setup.sh
    // makes the default one): the machine's /var/run/dpdk may be 0700.
    run_dir_ = "/tmp/nvmux-access-test-" + std::to_string(getpid());
    std::filesystem::create_directories(run_dir_ + "/dpdk");
    ::chmod(run_dir_.c_str(), 0755);
    ::chmod((run_dir_ + "/dpdk").c_str(), 0755);
    ASSERT_TRUE(shm::SetRunDir(run_dir_));
    ASSERT_TRUE(shm::CleanStaleGroup(id_));
  }
  void TearDown() override {
    if (run_dir_.empty()) return;
    procs_.clear();
    EXPECT_TRUE(shm::CleanStaleGroup(id_));
    std::error_code ec;
    std::filesystem::remove_all(run_dir_, ec);
  }
  std::vector<std::string> Env() const { return {"NVMUX_RUN_DIR=" + run_dir_}; }
  Subprocess& Spawn(std::vector<std::string> argv) {
    auto p = Subprocess::Spawn(argv, Env());
    EXPECT_TRUE(p);
    procs_.push_back(std::make_unique<Subprocess>(std::move(*p)));
    return *procs_.back();
  }
  Subprocess& StartDaemon(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {NVMUXD, "-i", I(), "--dma-pool-mb", "16"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    Subprocess& d = Spawn(argv);
    auto line = d.ReadUntil("nvmuxd: group", std::chrono::seconds(20));
    EXPECT_TRUE(line);
    if (line) {
      EXPECT_NE(line->find("ready"), std::string::npos) << *line;
    }
    return d;
  }
  // As user nobody, group `group` only.
  static std::string As(const std::string& group) {
    return "setpriv --reuid=nobody --regid=" + group + " --clear-groups ";
  }
  std::pair<int, std::string> Run(const std::string& who, const std::string& cmd) {
    return RunCommand("NVMUX_RUN_DIR=" + run_dir_ + " " + who + cmd);
  }
  std::string I() const { return std::to_string(id_); }
  std::string Runtime() const { return shm::GroupPaths::For(id_)->runtime_dir; }

  int id_ = 0;
  std::string run_dir_;
  std::vector<std::unique_ptr<Subprocess>> procs_;
};

TEST_F(AccessTest, AnotherUsersStatusOfAPrivateGroupIsUnknownNeverStale) {
  StartDaemon();
  auto [code, out] = Run(As("nogroup"), std::string(NVMUX_MANAGE) + " status -i " + I());
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("cannot tell whether it is live"), std::string::npos) << out;
  EXPECT_NE(out.find(Runtime() + "/nvmux.lock: Permission denied"), std::string::npos) << out;
  EXPECT_NE(out.find("uid 0 (root)"), std::string::npos) << out;
  EXPECT_EQ(out.find("stale"), std::string::npos) << out;
  EXPECT_EQ(out.find("cleanup"), std::string::npos) << out;  // no destructive advice
}

TEST_F(AccessTest, AnotherUsersCleanupIsRefusedAndRemovesNothing) {
  StartDaemon();
  size_t before = shm::ListGroupFiles(*shm::GroupPaths::For(id_)).size();
  auto [code, out] = Run(As("nogroup"), std::string(NVMUX_MANAGE) + " cleanup -i " + I() + " --yes");
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("cannot prove group " + I() + " dead"), std::string::npos) << out;
  EXPECT_EQ(out.find("removed"), std::string::npos) << out;
  EXPECT_EQ(shm::ListGroupFiles(*shm::GroupPaths::For(id_)).size(), before);
}

TEST_F(AccessTest, AnotherUserIsRefusedBeforeJoiningAndTheGroupIsUntouched) {
  StartDaemon();
  auto [code, out] = Run(As("nogroup"), std::string(NVMUX_SHM_CHILD) + " --role secondary -i " + I());
  EXPECT_NE(out.find("error code=" + std::to_string(EACCES)), std::string::npos) << out;
  EXPECT_NE(out.find("permission denied: group " + I() + " belongs to uid 0 (root)"), std::string::npos) << out;
  EXPECT_NE(out.find("mode 0700"), std::string::npos) << out;
  EXPECT_NE(out.find("--access-group"), std::string::npos) << out;
  auto status = RunCommand("NVMUX_RUN_DIR=" + run_dir_ + " " + NVMUX_MANAGE + " status -i " + I() + " --json");
  EXPECT_EQ(status.second.find("shm_child"), std::string::npos) << status.second;
  EXPECT_NE(status.second.find("\"name\": \"nvmuxd\""), std::string::npos) << status.second;
}

TEST_F(AccessTest, MembersOfTheAccessGroupJoinAllocateAndAreReaped) {
  StartDaemon({"--access-group", "nogroup"});
  struct stat st {};
  ASSERT_EQ(::stat(Runtime().c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, getgrnam("nogroup")->gr_gid);
  EXPECT_EQ(st.st_mode & 07777, 02770u);
  // A member of nogroup: joins, allocates DMA memory, and is reaped when killed.
  auto member = Subprocess::Spawn({"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", NVMUX_SHM_CHILD,
                                   "--role", "secondary", "-i", I(), "--name", "member"},
                                  Env());
  ASSERT_TRUE(member);
  auto ready = member->ReadLine(std::chrono::seconds(20));
  ASSERT_TRUE(ready);
  ASSERT_EQ(ready->rfind("ready", 0), 0u) << *ready;
  ASSERT_TRUE(member->WriteLine("alloc 4096"));
  ASSERT_EQ(member->ReadLine()->rfind("allocated", 0), 0u);
  // Its status, read as nobody, is the live group's.
  auto [code, out] = Run(As("nogroup"), std::string(NVMUX_MANAGE) + " status -i " + I());
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("live, primary pid"), std::string::npos) << out;
  EXPECT_NE(out.find("member"), std::string::npos) << out;
  member->Kill(SIGKILL);
  ASSERT_TRUE(member->Wait());
  std::string after;
  for (int i = 0; i < 100; ++i) {
    after = RunCommand("NVMUX_RUN_DIR=" + run_dir_ + " " + NVMUX_MANAGE + " status -i " + I() + " --json").second;
    if (after.find("\"allocations\": 0") != std::string::npos && after.find("\"name\": \"member\", \"released\"") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_NE(after.find("\"allocations\": 0"), std::string::npos) << after;
  // A user outside the access group is still refused.
  auto outsider = Run("setpriv --reuid=nobody --regid=daemon --clear-groups ",
                      std::string(NVMUX_SHM_CHILD) + " --role secondary -i " + I());
  EXPECT_NE(outsider.second.find("permission denied: group " + I()), std::string::npos) << outsider.second;
}

// The read-only role: with --status-readable anyone proves the group live
// and sees its primary, but still may not join.
TEST_F(AccessTest, StatusReadableLetsAnyoneSeeTheGroupLiveButNotJoin) {
  Subprocess& d = StartDaemon({"--status-readable"});
  auto [code, out] = Run(As("nogroup"), std::string(NVMUX_MANAGE) + " status -i " + I());
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("group " + I() + ": live, primary pid " + std::to_string(d.pid()) +
                     "; details not readable by this process"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("permission denied: group " + I()), std::string::npos) << out;
  auto join = Run(As("nogroup"), std::string(NVMUX_SHM_CHILD) + " --role secondary -i " + I());
  EXPECT_NE(join.second.find("error code=" + std::to_string(EACCES)), std::string::npos) << join.second;
}

TEST_F(AccessTest, StaleGroupIsProvedDeadButCleanupRefusesFilesItCannotRemove) {
  Subprocess& d = StartDaemon({"--access-group", "nogroup"});
  d.Kill(SIGKILL);
  ASSERT_TRUE(d.Wait());
  // The lock checks prove it dead (the lock file is readable by the group).
  auto [code, out] = Run(As("nogroup"), std::string(NVMUX_MANAGE) + " status -i " + I());
  EXPECT_NE(out.find("stale (its processes are dead)"), std::string::npos) << out;
  EXPECT_NE(out.find("looked in " + Runtime()), std::string::npos) << out;
  // Its hugepage files are root's, in a directory nobody may not write.
  size_t before = shm::ListGroupFiles(*shm::GroupPaths::For(id_)).size();
  auto clean = Run(As("nogroup"), std::string(NVMUX_MANAGE) + " cleanup -i " + I() + " --yes");
  EXPECT_EQ(clean.first, 1) << clean.second;
  EXPECT_NE(clean.second.find("belongs to uid 0 (root)"), std::string::npos) << clean.second;
  EXPECT_NE(clean.second.find("cannot remove it"), std::string::npos) << clean.second;
  EXPECT_EQ(shm::ListGroupFiles(*shm::GroupPaths::For(id_)).size(), before);
}

}  // namespace
}  // namespace nvmux
