// A group's limits (issue 14): process slots, controllers, the DMA pool and
// I/O queue ids are each set when nvmuxd starts (--max-processes,
// --max-controllers, --dma-pool-mb, --io-queues), shown by nvmux-manage
// status, and reaching one is an error naming the limit and the option.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <thread>

#include "shm/group.h"
#include "test/util/subprocess.h"

namespace nvmux::test {
namespace {

using namespace std::chrono_literals;

std::pair<int, std::string> RunCommand(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

bool Contains(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

class LimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    id_ = static_cast<int>((static_cast<long>(getpid()) * 16 + 13 + counter++) % 900'000) + 10'000;
    ASSERT_TRUE(shm::CleanStaleGroup(id_));
    dir_ = "/tmp/nvmux-limits-" + std::to_string(::getpid()) + "-" + std::to_string(counter);
  }
  void TearDown() override {
    for (auto it = procs_.rbegin(); it != procs_.rend(); ++it)
      if ((*it)->running()) {
        (*it)->Kill(SIGTERM);
        (void)(*it)->Wait(20s);
      }
    procs_.clear();
    EXPECT_TRUE(shm::CleanStaleGroup(id_));
    std::error_code ec;
    for (int i = 0; i < 2; ++i) std::filesystem::remove_all(Dir(i), ec);
  }
  Subprocess& Spawn(std::vector<std::string> argv) {
    auto p = Subprocess::Spawn(argv);
    EXPECT_TRUE(p) << p.error().ToString();
    procs_.push_back(std::make_unique<Subprocess>(std::move(*p)));
    return *procs_.back();
  }
  std::string Dir(int k) const { return dir_ + "-" + std::to_string(k); }
  std::string Trid(int k) const { return "trtype:vfiouser traddr:" + Dir(k); }
  void StartEmu(int k) {
    Spawn({"/usr/bin/setpriv", "--pdeathsig", "TERM", "--", NVMUX_EMU, "--socket", Dir(k), "--ns", "size=16M"});
    for (int i = 0; i < 1000 && !std::filesystem::exists(Dir(k) + "/cntrl"); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(std::filesystem::exists(Dir(k) + "/cntrl"));
  }
  // nvmuxd with `args`; returns its first "nvmuxd: group" line.
  std::string StartDaemon(std::vector<std::string> args) {
    std::vector<std::string> argv = {NVMUXD, "-i", I()};
    argv.insert(argv.end(), args.begin(), args.end());
    Subprocess& d = Spawn(argv);
    auto line = d.ReadUntil("nvmuxd: group", 30s);
    EXPECT_TRUE(line) << line.error().ToString();
    return line ? *line : "";
  }
  Subprocess& Child() {
    Subprocess& c = Spawn({NVMUX_SHM_CHILD, "--role", "secondary", "-i", I()});
    return c;
  }
  std::string I() const { return std::to_string(id_); }

  int id_ = 0;
  std::string dir_;
  std::vector<std::unique_ptr<Subprocess>> procs_;
};

TEST_F(LimitsTest, ProcessSlotsAreSetAtStartShownAndFullIsENOSPCNamingTheOption) {
  ASSERT_NE(StartDaemon({"--max-processes", "2", "--dma-pool-mb", "8"}).find("ready"), std::string::npos);
  auto [rc, status] = RunCommand(std::string(NVMUX_MANAGE) + " status -i " + I() + " --json");
  EXPECT_TRUE(Contains(status, "\"max_processes\": 2")) << status;
  EXPECT_TRUE(Contains(status, "\"dma_pool_bytes\": 8388608")) << status;
  EXPECT_TRUE(Contains(status, "\"max_controllers\": 8")) << status;
  Subprocess& first = Child();  // nvmuxd holds slot 0, this one the last
  ASSERT_EQ(first.ReadLine(20s)->rfind("ready", 0), 0u);
  Subprocess& second = Child();
  auto refused = second.ReadLine(20s);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->rfind("error code=" + std::to_string(ENOSPC), 0), 0u) << *refused;
  EXPECT_TRUE(Contains(*refused, "full (2 processes attached")) << *refused;
  EXPECT_TRUE(Contains(*refused, "--max-processes")) << *refused;
  // Once a slot is free again, a process joins.
  ASSERT_TRUE(first.WriteLine("quit"));
  ASSERT_TRUE(first.Wait());
  Subprocess& third = Child();
  EXPECT_EQ(third.ReadLine(20s)->rfind("ready", 0), 0u);
}

TEST_F(LimitsTest, AnExhaustedDmaPoolIsENOMEMNamingTheOption) {
  ASSERT_NE(StartDaemon({"--dma-pool-mb", "4"}).find("ready"), std::string::npos);
  Subprocess& c = Child();
  ASSERT_EQ(c.ReadLine(20s)->rfind("ready", 0), 0u);
  ASSERT_TRUE(c.WriteLine("alloc 2097152"));
  EXPECT_EQ(c.ReadLine()->rfind("allocated", 0), 0u);
  ASSERT_TRUE(c.WriteLine("alloc 4194304"));
  auto refused = c.ReadLine();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->rfind("error code=" + std::to_string(ENOMEM), 0), 0u) << *refused;
  EXPECT_TRUE(Contains(*refused, "DMA pool of 4 MiB (nvmuxd --dma-pool-mb)")) << *refused;
}

TEST_F(LimitsTest, ControllersBeyondTheLimitAreENOSPCNamingTheOption) {
  ASSERT_NO_FATAL_FAILURE(StartEmu(0));
  ASSERT_NO_FATAL_FAILURE(StartEmu(1));
  std::vector<std::string> argv = {NVMUXD, "-i", I(), "--max-controllers", "1", "-r", Trid(0), "-r", Trid(1)};
  std::string cmd;
  for (const auto& a : argv) cmd += "'" + a + "' ";
  auto [rc, out] = RunCommand(cmd);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_TRUE(Contains(out, "attached " + Trid(0))) << out;
  EXPECT_TRUE(Contains(out, "-r '" + Trid(1) + "'")) << out;
  EXPECT_TRUE(Contains(out, "already has 1 controllers, its limit (nvmuxd --max-controllers")) << out;
}

TEST_F(LimitsTest, QueueIdsBeyondIoQueuesAreENOSPCNamingTheOption) {
  ASSERT_NO_FATAL_FAILURE(StartEmu(0));
  ASSERT_NE(StartDaemon({"--io-queues", "2", "-r", Trid(0)}).find("ready"), std::string::npos);
  // One process holds both queue ids (nvmux-perf checks -P against the grant
  // itself, so the group's allocator is reached by a second process).
  Subprocess& holder = Spawn({NVMUX_PERF, "-i", I(), "-P", "2", "-q", "1", "-o", "4096", "-w", "read", "-t", "20",
                              "--no-live"});
  std::string status;
  for (int i = 0; i < 200 && !Contains(status, "\"qpairs\": 2"); ++i) {
    std::this_thread::sleep_for(50ms);
    status = RunCommand(std::string(NVMUX_MANAGE) + " status -i " + I() + " --json").second;
  }
  ASSERT_TRUE(Contains(status, "\"qpairs\": 2")) << status;
  auto [rc, out] = RunCommand(std::string(NVMUX_PERF) + " -i " + I() + " -q 1 -o 4096 -w read -t 1 --no-live");
  EXPECT_NE(rc, 0) << out;
  EXPECT_TRUE(Contains(out, "no free I/O queue id: the controller granted 2 I/O queues")) << out;
  EXPECT_TRUE(Contains(out, "--io-queues")) << out;
  holder.Kill(SIGTERM);
  (void)holder.Wait(20s);
}

TEST_F(LimitsTest, LimitsOutOfRangeAreRefusedNamingTheAllowedRange) {
  for (auto [opt, bad] : {std::pair{"--max-processes", "65"}, {"--max-controllers", "0"}, {"--dma-pool-mb", "1"},
                          {"--io-queues", "256"}}) {
    auto [rc, out] = RunCommand(std::string(NVMUXD) + " -i " + I() + " " + opt + " " + bad);
    EXPECT_NE(rc, 0) << opt << ": " << out;
    EXPECT_TRUE(Contains(out, opt)) << out;
    EXPECT_TRUE(Contains(out, "not in range")) << out;
  }
}

}  // namespace
}  // namespace nvmux::test
