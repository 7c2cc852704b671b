// A group with IOVA = physical addresses (what a controller bound to
// uio_pci_generic imposes, shm/eal.h), on the host: NVMUX_IOVA_MODE=pa makes
// nvmux-emu's clients (nvmuxd and nvmux-perf secondaries) give the device
// physical addresses, which nvmux-emu maps like any other IOVA. The group's
// DMA pool is then not one physically contiguous range: the driver must
// translate every buffer page by page and split I/O at physical breaks
// (96 KiB buffers straddle 2 MiB pages), and the addresses the group shares
// (admin and I/O rings, shadow doorbells) must be ones every process can
// use. Two verifying secondaries, one killed with SIGKILL and reaped, a new
// one after it; nvmuxd killed with SIGKILL and restarted under a running
// secondary (it adopts the admin queue by its group address).
// Skipped where this process cannot read physical addresses (no
// CAP_SYS_ADMIN: /proc/self/pagemap hides them, and DPDK refuses PA mode).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <thread>

#include "shm/group.h"
#include "test/util/group_fixture.h"
#include "test/util/subprocess.h"

namespace nvmux {
namespace {

using test::Subprocess;
using namespace std::chrono_literals;

// True when /proc/self/pagemap shows this process the frame of a page it touched.
bool PhysicalAddressesVisible() {
  static volatile uint8_t page[4096];
  page[0] = 1;
  int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  uint64_t entry = 0;
  off_t at = static_cast<off_t>(reinterpret_cast<uintptr_t>(&page[0]) / 4096 * sizeof(entry));
  bool ok = ::pread(fd, &entry, sizeof(entry), at) == sizeof(entry);
  ::close(fd);
  return ok && (entry & (1ull << 63)) != 0 && (entry & ((1ull << 55) - 1)) != 0;
}

class IovaPaGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!PhysicalAddressesVisible()) GTEST_SKIP() << "physical addresses are not visible to this process";
    id_ = test::FreshGroupId(13);
    dir_ = test::MakeTempDir("iovapa");
    ASSERT_FALSE(dir_.empty());
    trid_ = "trtype:vfiouser traddr:" + dir_;
    emu_ = test::StartEmu({NVMUX_EMU, "--socket", dir_, "--ns", "size=64M"}, dir_);
    ASSERT_TRUE(emu_);
    daemon_ = StartDaemon();
    ASSERT_TRUE(daemon_);
  }
  void TearDown() override {
    test::KillAll(secondaries_);
    if (daemon_) test::StopCleanly(daemon_, "nvmuxd");
    if (emu_) test::StopCleanly(emu_, "nvmux-emu");
    if (id_ != 0) {
      EXPECT_TRUE(shm::CleanStaleGroup(id_));
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<Subprocess> StartDaemon() {
    return test::StartNvmuxd({NVMUXD, "-i", std::to_string(id_), "-r", trid_}, {"NVMUX_IOVA_MODE=pa"});
  }
  // A secondary writing and reading back (--verify) `seconds` of 96 KiB
  // I/Os in its own 40,000 blocks from `lba`; waits until its workers run.
  // 32 buffers of 96 KiB: 3 MiB, so buffers straddle 2 MiB pages (on this
  // host most neighbouring hugepages of a group are not physically adjacent).
  Subprocess* StartSecondary(int lba, int seconds) {
    auto p = test::StartProcess({NVMUX_PERF, "-i", std::to_string(id_), "-r", trid_, "-q", "32", "-o", "96k", "-w",
                                 "randrw", "-M", "50", "-t", std::to_string(seconds), "--lba-range",
                                 std::to_string(lba) + ":40000", "--verify", "--no-live"},
                                {"NVMUX_IOVA_MODE=pa"});
    if (!p) return nullptr;
    auto line = p->ReadUntil("Initialization complete", 30s);
    EXPECT_TRUE(line) << "nvmux-perf (secondary from LBA " << lba << ") did not start its workers";
    secondaries_.push_back(std::move(p));
    return secondaries_.back().get();
  }
  static void ExpectSuccess(Subprocess& p, const std::string& what, Nanos timeout = 60s) {
    auto st = p.Wait(timeout);
    ASSERT_TRUE(st) << what << ": " << st.error().message;
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << what << ": " << test::DescribeStatus(*st);
  }

  int id_ = 0;
  std::string dir_, trid_;
  std::unique_ptr<Subprocess> emu_, daemon_;
  std::vector<std::unique_ptr<Subprocess>> secondaries_;
};

TEST_F(IovaPaGroupTest, VerifyingSecondariesSurviveAKilledPeerAndAPrimaryTakeover) {
  Subprocess* s1 = StartSecondary(0, 4);
  ASSERT_NE(s1, nullptr);
  Subprocess* s2 = StartSecondary(40'000, 60);
  ASSERT_NE(s2, nullptr);
  std::this_thread::sleep_for(500ms);
  s2->Kill(SIGKILL);
  ASSERT_TRUE(s2->Wait());
  ExpectSuccess(*s1, "the surviving secondary's verified I/O");
  // Reaped: its queues deleted, a new secondary's I/O verifies.
  Subprocess* s3 = StartSecondary(80'000, 1);
  ASSERT_NE(s3, nullptr);
  ExpectSuccess(*s3, "a new secondary after the kill");

  // nvmuxd killed under a running secondary; a new one adopts the controller.
  Subprocess* s4 = StartSecondary(0, 8);
  ASSERT_NE(s4, nullptr);
  daemon_->Kill(SIGKILL);
  ASSERT_TRUE(daemon_->Wait());
  daemon_ = StartDaemon();
  ASSERT_TRUE(daemon_);
  ExpectSuccess(*s4, "a secondary's verified I/O through nvmuxd's death and takeover");
  Subprocess* s5 = StartSecondary(40'000, 1);
  ASSERT_NE(s5, nullptr);
  ExpectSuccess(*s5, "a new secondary after the takeover");
}

}  // namespace
}  // namespace nvmux
