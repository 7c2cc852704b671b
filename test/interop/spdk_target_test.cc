// nvmux's tools drive SPDK's vfio-user target (nvmf_tgt with a 512 MiB RAM
// disk, started by the peer's target.sh), with the trid exactly as SPDK
// prints it (upper-case trtype, subnqn). Skipped with the reason when
// NVMUX_SPDK_DIR names no SPDK build. One target at a time (CTest resource
// lock spdk_target).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "shm/group.h"
#include "test/interop/spdk_peer.h"
#include "test/util/group_fixture.h"
#include "test/util/subprocess.h"

namespace nvmux::test {
namespace {

using namespace std::chrono_literals;

bool Contains(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

class SpdkTargetTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string why;
    auto peer = SpdkPeer::Find(why);
    if (!peer) {
      skip_ = why;
      return;
    }
    spdk_.emplace(*peer);
    dir_ = "/tmp/spdk-peer-vfiouser-" + std::to_string(::getpid());
    std::string error;
    auto trid = spdk_->StartTarget("vfiouser", dir_, error);
    if (!trid) {
      start_error_ = error;
      return;
    }
    trid_ = *trid;
  }
  static void TearDownTestSuite() {
    if (spdk_) spdk_->StopTarget();
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
    spdk_.reset();
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_TRUE(start_error_.empty()) << start_error_;
  }

  static inline std::optional<SpdkPeer> spdk_;
  static inline std::string skip_, start_error_, dir_, trid_;
};

TEST_F(SpdkTargetTest, IdentifyReadsSpdksControllerWithSpdksTrid) {
  ASSERT_TRUE(Contains(trid_, "subnqn:nqn.2019-07.io.spdk:cnode1")) << trid_;
  RunResult r = RunCaptured({NVMUX_IDENTIFY, "-r", trid_}, {}, 60s);
  ASSERT_TRUE(r.ok()) << r.Describe();
  EXPECT_TRUE(Contains(r.output, "Serial Number:                         SPDK00000000000001")) << r.output;
  EXPECT_TRUE(Contains(r.output, "Model Number:                          SPDK_Controller1")) << r.output;
  EXPECT_TRUE(Contains(r.output, "nqn.2019-07.io.spdk:cnode1")) << r.output;
  // 512 MiB of 512-byte blocks.
  EXPECT_TRUE(Contains(r.output, "1048576")) << r.output;
}

// The trid names the subsystem: a subnqn that is not the controller's is
// refused, naming both.
TEST_F(SpdkTargetTest, AWrongSubnqnIsRefusedNamingBoth) {
  std::string wrong = "trtype:vfiouser traddr:" + dir_ + " subnqn:nqn.2019-07.io.spdk:cnode9";
  RunResult r = RunCaptured({NVMUX_IDENTIFY, "-r", wrong}, {}, 60s);
  EXPECT_FALSE(r.ok()) << r.Describe();
  EXPECT_TRUE(Contains(r.output, "nqn.2019-07.io.spdk:cnode9")) << r.output;
  EXPECT_TRUE(Contains(r.output, "nqn.2019-07.io.spdk:cnode1")) << r.output;
}

// Writes with a per-block signature, reads back and checks every block.
TEST_F(SpdkTargetTest, PerfVerifyWritesAndReadsBackEveryBlock) {
  RunResult r = RunCaptured({NVMUX_PERF, "-r", trid_, "-q", "16", "-o", "4096", "-w", "randrw", "-M", "50", "-t",
                             "2", "--verify", "--json"},
                            {}, 120s);
  ASSERT_TRUE(r.ok()) << r.Describe();  // a mismatch fails the run, naming the block
  size_t total = r.output.find("\"total\":{\"ios\":");
  ASSERT_NE(total, std::string::npos) << r.output;
  EXPECT_GT(std::strtoull(r.output.c_str() + total + 15, nullptr, 10), 1000u) << r.output;
}

TEST_F(SpdkTargetTest, ManageListsTheControllerAndReadsItsLogs) {
  RunResult list = RunCaptured({NVMUX_MANAGE, "list", "-r", trid_}, {}, 60s);
  ASSERT_TRUE(list.ok()) << list.Describe();
  EXPECT_TRUE(Contains(list.output, "SPDK00000000000001")) << list.output;
  EXPECT_TRUE(Contains(list.output, "SPDK_Controller1")) << list.output;
  RunResult smart = RunCaptured({NVMUX_MANAGE, "smart-log", "-r", trid_}, {}, 60s);
  ASSERT_TRUE(smart.ok()) << smart.Describe();
  EXPECT_TRUE(Contains(smart.output, "critical_warning")) << smart.output;
  RunResult feature = RunCaptured({NVMUX_MANAGE, "get-feature", "-r", trid_, "-f", "7"}, {}, 60s);
  EXPECT_TRUE(feature.ok()) << feature.Describe();
}

// nvmuxd serves SPDK's target to a group: it tells the target of all its
// hugepage memory (160 MiB by default, 80 pages of 2 MiB) in few DMA
// regions, as SPDK's target holds at most 64 (nvmuxd with one region per
// page failed to attach: "hit max regions 64"); a secondary's verified I/O
// and identify run through it.
TEST_F(SpdkTargetTest, NvmuxdServesTheTargetToSecondariesWithinItsDmaRegionLimit) {
  const int group = FreshGroupId(17);
  const std::string g = std::to_string(group);
  auto daemon = StartNvmuxd({NVMUXD, "-i", g, "-r", trid_, "--hugemem", "256"});
  ASSERT_TRUE(daemon) << "nvmuxd did not come up with " << trid_;
  RunResult perf = RunCaptured({NVMUX_PERF, "-i", g, "-q", "8", "-o", "4096", "-w", "randrw", "-M", "50", "-t", "1",
                                "--verify", "--json"},
                               {}, 120s);
  EXPECT_TRUE(perf.ok()) << perf.Describe();
  EXPECT_TRUE(Contains(perf.output, "\"total\":{\"ios\":")) << perf.output;
  RunResult id = RunCaptured({NVMUX_IDENTIFY, "-i", g}, {}, 60s);
  EXPECT_TRUE(id.ok()) << id.Describe();
  EXPECT_TRUE(Contains(id.output, "SPDK_Controller1")) << id.output;
  StopCleanly(daemon, "nvmuxd");
  EXPECT_TRUE(shm::CleanStaleGroup(group));
}

}  // namespace
}  // namespace nvmux::test
