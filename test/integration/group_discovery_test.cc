// A secondary finds its group's controllers by the group id alone: every tool
// with -i N and no -r works on the controllers nvmuxd -i N published, as
// SPDK's tools do with -i; a probe with no transport id (or trtype alone)
// attaches them; a group with no controllers is an error naming nvmuxd's -r.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "nvmux/controller.h"
#include "nvmux/env.h"
#include "nvmux/probe.h"
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

class GroupDiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    id_ = static_cast<int>((static_cast<long>(getpid()) * 16 + 11 + counter++) % 900'000) + 10'000;
    ASSERT_TRUE(shm::CleanStaleGroup(id_));
    dir_ = "/tmp/nvmux-discovery-" + std::to_string(::getpid()) + "-" + std::to_string(counter);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
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
    std::filesystem::remove_all(dir_, ec);
  }
  Subprocess& Spawn(std::vector<std::string> argv) {
    auto p = Subprocess::Spawn(argv);
    EXPECT_TRUE(p) << p.error().ToString();
    procs_.push_back(std::make_unique<Subprocess>(std::move(*p)));
    return *procs_.back();
  }
  // nvmux-emu at dir_ and nvmuxd -i id_ serving it (or none with `with_controller` false).
  void StartGroup(bool with_controller) {
    std::vector<std::string> daemon = {NVMUXD, "-i", I()};
    if (with_controller) {
      Spawn({"/usr/bin/setpriv", "--pdeathsig", "TERM", "--", NVMUX_EMU, "--socket", dir_, "--ns", "size=64M"});
      for (int i = 0; i < 1000 && !std::filesystem::exists(dir_ + "/cntrl"); ++i) std::this_thread::sleep_for(10ms);
      ASSERT_TRUE(std::filesystem::exists(dir_ + "/cntrl"));
      daemon.insert(daemon.end(), {"-r", Trid()});
    }
    Subprocess& d = Spawn(daemon);
    auto line = d.ReadUntil("nvmuxd: group", 30s);
    ASSERT_TRUE(line) << line.error().ToString();
  }
  std::string I() const { return std::to_string(id_); }
  std::string Trid() const { return "trtype:vfiouser traddr:" + dir_; }

  int id_ = 0;
  std::string dir_;
  std::vector<std::unique_ptr<Subprocess>> procs_;
};

TEST_F(GroupDiscoveryTest, EveryToolWorksWithTheGroupIdAlone) {
  ASSERT_NO_FATAL_FAILURE(StartGroup(true));
  auto [id_rc, id_out] = RunCommand(std::string(NVMUX_IDENTIFY) + " -i " + I());
  EXPECT_EQ(id_rc, 0) << id_out;
  EXPECT_TRUE(Contains(id_out, "NVMe Controller at " + Trid())) << id_out;
  EXPECT_TRUE(Contains(id_out, "NVMUXEMU0001")) << id_out;

  auto [perf_rc, perf_out] = RunCommand(std::string(NVMUX_PERF) + " -i " + I() +
                                        " -q 4 -o 4096 -w randread -t 1 --no-live");
  EXPECT_EQ(perf_rc, 0) << perf_out;
  EXPECT_TRUE(Contains(perf_out, "Attached to " + Trid())) << perf_out;
  EXPECT_TRUE(Contains(perf_out, "Total")) << perf_out;

  auto [hello_rc, hello_out] = RunCommand(std::string(NVMUX_HELLO_WORLD) + " -i " + I());
  EXPECT_EQ(hello_rc, 0) << hello_out;
  EXPECT_TRUE(Contains(hello_out, "Hello world!")) << hello_out;

  auto [list_rc, list_out] = RunCommand(std::string(NVMUX_MANAGE) + " list -i " + I());
  EXPECT_EQ(list_rc, 0) << list_out;
  EXPECT_TRUE(Contains(list_out, Trid())) << list_out;
}

TEST_F(GroupDiscoveryTest, AGroupWithNoControllersIsAnErrorNamingNvmuxdsR) {
  ASSERT_NO_FATAL_FAILURE(StartGroup(false));
  for (std::string tool : {std::string(NVMUX_IDENTIFY), std::string(NVMUX_PERF) + " -q 1 -o 4096 -w read -t 1",
                           std::string(NVMUX_HELLO_WORLD), std::string(NVMUX_MANAGE) + " list"}) {
    auto [rc, out] = RunCommand(tool + " -i " + I());
    EXPECT_NE(rc, 0) << tool << ": " << out;
    EXPECT_TRUE(Contains(out, "group " + I() + " has no controllers: start nvmuxd -i " + I() + " with -r")) << tool
                                                                                                         << ": " << out;
  }
}

// The API: in a secondary, GroupControllers lists what the primary
// published, and a Prober with no transport id, or with trtype alone,
// attaches each (probe_cb and attach_cb called once per controller).
TEST_F(GroupDiscoveryTest, AProbeWithNoTransportIdAttachesThePublishedControllers) {
  ASSERT_NO_FATAL_FAILURE(StartGroup(true));
  EnvOptions options;
  options.name = "discovery-test";
  options.group_id = id_;
  auto env = Env::Init(options);
  ASSERT_TRUE(env) << env.error().ToString();
  {
    auto trids = GroupControllers(**env);
    ASSERT_TRUE(trids) << trids.error().ToString();
    ASSERT_EQ(trids->size(), 1u);
    EXPECT_EQ((*trids)[0].ToString(), Trid());

    Prober prober(**env);
    int probed = 0, attached = 0;
    auto got = prober.Probe([&](const TransportId&, ControllerOptions&) { return ++probed > 0; },
                            [&](const TransportId& trid, Controller&) {
                              ++attached;
                              EXPECT_EQ(trid.ToString(), Trid());
                            });
    ASSERT_TRUE(got) << got.error().ToString();
    EXPECT_EQ(probed, 1);
    EXPECT_EQ(attached, 1);
    ASSERT_EQ(got->size(), 1u);
    EXPECT_EQ((*got)[0]->data().sn[0], 'N');
    // Probing again reports nothing new: the registry knows it.
    auto again = prober.Probe(*TransportId::Parse("trtype:vfiouser"), nullptr, nullptr);
    ASSERT_TRUE(again) << again.error().ToString();
    EXPECT_TRUE(again->empty());
  }
  env->reset();
}

}  // namespace
}  // namespace nvmux::test
