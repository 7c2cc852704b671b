// SPDK's host (v25.09's tools, a peer nobody here wrote) drives nvmux-emu as
// it drives any vfio-user controller. Each test runs one of SPDK's programs
// against a fresh emulator, checks what it printed, and then checks that the
// emulator survived: its control socket answers and nvmux's own driver can
// attach and identify it. Skipped with the reason when NVMUX_SPDK_DIR names
// no SPDK build.
//
// Not run: SPDK's nvme_manage (PCIe only: it takes no transport id) and
// nvme_abort (no -g option, so its DMA_MAPs name more bytes than the fd it
// sends; it crashes the same way against SPDK's own vfio-user target).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <thread>

#include "test/interop/spdk_peer.h"
#include "test/util/emu_control.h"
#include "test/util/subprocess.h"

namespace nvmux::test {
namespace {

using namespace std::chrono_literals;

// The numbers on the first line of `text` that starts (after blanks) with `label`.
std::vector<double> NumbersAfter(const std::string& text, const std::string& label) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line.compare(start, label.size(), label) != 0) continue;
    std::vector<double> out;
    std::istringstream fields(line.substr(start + label.size()));
    std::string f;
    while (fields >> f) {
      while (!f.empty() && f.back() == ',') f.pop_back();
      char* end = nullptr;
      double v = std::strtod(f.c_str(), &end);
      if (end != f.c_str() && *end == '\0') out.push_back(v);
    }
    return out;
  }
  return {};
}

bool Contains(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

class SpdkHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    auto peer = SpdkPeer::Find(why);
    if (!peer) GTEST_SKIP() << why;
    spdk_.emplace(*peer);
    static int counter = 0;
    dir_ = "/tmp/nvmux-interop-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    auto emu = Subprocess::Spawn({"/usr/bin/setpriv", "--pdeathsig", "TERM", "--", NVMUX_EMU, "--socket", dir_,
                                  "--ns", "size=256M"});
    ASSERT_TRUE(emu) << emu.error().ToString();
    emu_ = std::make_unique<Subprocess>(std::move(*emu));
    for (int i = 0; i < 1000 && !std::filesystem::exists(dir_ + "/cntrl"); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(std::filesystem::exists(dir_ + "/cntrl")) << "nvmux-emu did not create its socket";
    // The emulator's own NQN (Identify SUBNQN), as nvmux's tools check it too.
    trid_ = SpdkVfioUserTrid(dir_, "nqn.2024-01.io.nvmux:emu:NVMUXEMU0001");
  }

  void TearDown() override {
    if (emu_) {
      if (!HasFatalFailure() && !IsSkipped()) ExpectEmulatorSurvived();
      emu_->Kill(SIGTERM);
      auto st = emu_->Wait(20s);
      EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
          << "nvmux-emu did not stop cleanly: " << (st ? DescribeStatus(*st) : st.error().ToString());
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    SpdkPeer::CleanLeftovers();
  }

  // The emulator still runs, answers on its control socket, and serves a new
  // client (nvmux's driver) with the namespace it had.
  void ExpectEmulatorSurvived() {
    ASSERT_TRUE(emu_->running());
    EXPECT_EQ(::waitpid(emu_->pid(), nullptr, WNOHANG), 0) << "nvmux-emu exited during the test";
    auto status = EmuControl(dir_, "status");
    ASSERT_TRUE(status) << status.error().ToString();
    EXPECT_EQ(status->rfind("ok", 0), 0u) << *status;
    EXPECT_TRUE(Contains(*status, "removed=0")) << *status;
    RunResult id = RunCaptured({NVMUX_IDENTIFY, "-r", trid_}, {}, 60s);
    EXPECT_TRUE(id.ok()) << "nvmux-identify after SPDK's program: " << id.Describe();
    EXPECT_TRUE(Contains(id.output, "NVMUXEMU0001")) << id.output;
    EXPECT_TRUE(Contains(id.output, "524288 (256MiB)")) << id.output;
  }

  // SPDK's program ran, exited 0 and logged no SPDK error.
  RunResult RunSpdk(const std::string& program, std::vector<std::string> args, std::chrono::seconds timeout = 120s) {
    RunResult r = spdk_->Run(program, std::move(args), timeout);
    EXPECT_TRUE(r.ok()) << program << ": " << r.Describe();
    EXPECT_FALSE(Contains(r.output, "*ERROR*")) << program << " logged an error:\n" << r.output;
    return r;
  }

  std::optional<SpdkPeer> spdk_;
  std::string dir_;
  std::string trid_;
  std::unique_ptr<Subprocess> emu_;
};

TEST_F(SpdkHostTest, IdentifyReportsTheEmulatorsControllerAndNamespace) {
  RunResult r = RunSpdk("spdk_nvme_identify", {"-g", "-r", trid_});
  EXPECT_TRUE(Contains(r.output, "NVMeoF Controller at VFIOUSER (" + dir_ + ")")) << r.output;
  EXPECT_TRUE(Contains(r.output, "Serial Number:                         NVMUXEMU0001")) << r.output;
  EXPECT_TRUE(Contains(r.output, "Model Number:                          nvmux emulated NVMe controller")) << r.output;
  EXPECT_TRUE(Contains(r.output, "Size (in LBAs):                        524288 (0GiB)")) << r.output;
  EXPECT_TRUE(Contains(r.output, "Current LBA Format:                    LBA Format #00")) << r.output;
}

// Random reads, then a 50/50 read/write mix, at queue depth 16.
TEST_F(SpdkHostTest, PerfRandomReadAndMixedWorkloadsComplete) {
  for (std::string mix : {"randread", "randrw"}) {
    std::vector<std::string> args = {"-g", "-r", trid_, "-q", "16", "-o", "4096", "-w", mix, "-t", "2", "-c", "0x1"};
    if (mix == "randrw") args.insert(args.end(), {"-M", "50"});
    RunResult r = RunSpdk("spdk_nvme_perf", args);
    std::vector<double> total = NumbersAfter(r.output, "Total");
    ASSERT_GE(total.size(), 5u) << mix << ": no Total row:\n" << r.output;
    EXPECT_GT(total[0], 1000.0) << mix << ": IOPS\n" << r.output;  // columns: IOPS MiB/s avg min max
    EXPECT_GT(total[1], 0.0) << r.output;
  }
}

// SPDK's NVMe compliance suite (admin command conformance over vfio-user):
// every test runs and passes.
TEST_F(SpdkHostTest, ComplianceSuiteAllPass) {
  RunResult r = spdk_->Run("nvme_compliance", {"-g", "-r", trid_}, 120s);
  EXPECT_TRUE(r.ok()) << r.Describe();
  std::vector<double> tests = NumbersAfter(r.output, "tests");  // Total Ran Passed Failed Inactive
  ASSERT_GE(tests.size(), 4u) << "no CUnit run summary:\n" << r.output;
  EXPECT_GE(tests[0], 18.0) << r.output;
  EXPECT_EQ(tests[1], tests[0]) << "not every test ran:\n" << r.output;
  EXPECT_EQ(tests[2], tests[0]) << "failed:\n" << r.output;
  EXPECT_EQ(tests[3], 0.0) << r.output;
}

TEST_F(SpdkHostTest, HelloWorldWritesAndReadsBack) {
  RunResult r = RunSpdk("nvme_hello_world", {"-g", "-r", trid_});
  EXPECT_TRUE(Contains(r.output, "Attached to " + dir_)) << r.output;
  EXPECT_TRUE(Contains(r.output, "Namespace ID: 1 size:")) << r.output;
  EXPECT_TRUE(Contains(r.output, "Hello world!")) << r.output;
}

// Arbitration (round robin, the mechanism CAP.AMS offers): a fixed number of
// I/Os on one core.
TEST_F(SpdkHostTest, ArbitrationExampleRunsItsIos) {
  RunResult r = RunSpdk("nvme_arbitration", {"-g", "-r", trid_, "-t", "2", "-c", "0x1", "-n", "1000"});
  EXPECT_TRUE(Contains(r.output, "nvmux emulated NVMe")) << r.output;
  EXPECT_TRUE(Contains(r.output, "IO/s")) << r.output;
  EXPECT_TRUE(Contains(r.output, "secs/1000 ios")) << r.output;
}

// The reconnect example: I/O with the controller reset under it.
TEST_F(SpdkHostTest, ReconnectExampleRunsIoAcrossResets) {
  RunResult r = RunSpdk("nvme_reconnect", {"-g", "-r", trid_, "-q", "8", "-o", "4096", "-w", "randread", "-t", "3",
                                           "-c", "0x1"});
  EXPECT_TRUE(Contains(r.output, "Attached to NVMeoF Controller at VFIOUSER (" + dir_ + ")")) << r.output;
  EXPECT_TRUE(Contains(r.output, "Starting thread on core 0")) << r.output;
}

// SPDK's per-I/O submit/complete cost tool: runs and reports both.
TEST_F(SpdkHostTest, OverheadToolReportsSubmitAndCompleteCost) {
  RunResult r = RunSpdk("nvme_overhead", {"-g", "-r", trid_, "-t", "1", "-o", "4096"});
  std::vector<double> submit = NumbersAfter(r.output, "submit (in ns)   avg, min, max =");
  std::vector<double> complete = NumbersAfter(r.output, "complete (in ns) avg, min, max =");
  ASSERT_EQ(submit.size(), 3u) << r.output;
  ASSERT_EQ(complete.size(), 3u) << r.output;
  EXPECT_GT(submit[0], 0.0) << r.output;
  EXPECT_GT(complete[0], 0.0) << r.output;
}

}  // namespace
}  // namespace nvmux::test
