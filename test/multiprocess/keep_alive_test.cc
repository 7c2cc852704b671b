// Keep Alive across the group (issue 16 item 7): nvmux-emu enforces the
// Keep Alive Timer, and whichever process polls the shared admin queue
// sends Keep Alive, so a primary killed and not restarted for longer than
// the KATO does not let the device fail the controller under the
// secondaries.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <thread>

#include "shm/group.h"
#include "test/util/emu_control.h"
#include "test/util/subprocess.h"

namespace nvmux {
namespace {

using test::Subprocess;
using namespace std::chrono_literals;

// KATO nvmuxd sets (1 s: the emulator's granularity); the test then leaves
// the group without a primary for three times that.
constexpr const char* kKatoMs = "1000";

class KeepAliveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    id_ = static_cast<int>((static_cast<long>(getpid()) * 16 + 7 + counter++) % 900'000) + 10'000;
    ASSERT_TRUE(shm::CleanStaleGroup(id_));
    char tmpl[] = "/tmp/nvmux-ka-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    trid_ = "trtype:vfiouser traddr:" + dir_;
    // Keep-alive enforcement is nvmux-emu's default.
    emu_ = Start({NVMUX_EMU, "--socket", dir_, "--backing", "ram-lazy", "--ns", "size=64M"});
    for (int i = 0; i < 500 && !std::filesystem::exists(dir_ + "/control"); ++i) std::this_thread::sleep_for(10ms);
    daemon_ = Start({NVMUXD, "-i", std::to_string(id_), "-r", trid_, "--keep-alive-ms", kKatoMs});
    ASSERT_TRUE(daemon_->ReadUntil("nvmuxd: group", 20s)) << "nvmuxd did not come up";
  }
  void TearDown() override {
    for (auto& c : children_) {
      if (c->running()) {
        c->Kill(SIGKILL);
        (void)c->Wait();
      }
    }
    children_.clear();
    if (daemon_ && daemon_->running()) {
      daemon_->Kill(SIGTERM);
      (void)daemon_->Wait(20s);
    }
    daemon_.reset();
    if (emu_) {
      emu_->Kill(SIGTERM);
      (void)emu_->Wait();
    }
    EXPECT_TRUE(shm::CleanStaleGroup(id_));
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<Subprocess> Start(std::vector<std::string> argv) {
    auto p = Subprocess::Spawn(argv);
    EXPECT_TRUE(p) << p.error().message;
    return std::make_unique<Subprocess>(std::move(*p));
  }
  // A secondary doing verified I/O on its own LBA range; it polls the admin
  // queue every 2 ms (nvmux_mp_child io).
  Subprocess& Secondary(uint64_t lba) {
    children_.push_back(Start({MP_CHILD, "io", "-i", std::to_string(id_), "-r", trid_, "--lba", std::to_string(lba),
                               "--blocks", "1024", "--seconds", "100000"}));
    return *children_.back();
  }
  // CSTS as nvmux-emu's control socket reports it.
  std::string Csts() {
    auto reply = test::EmuControl(dir_, "status");
    if (!reply) return "error: " + reply.error().message;
    size_t at = reply->find("csts=");
    return at == std::string::npos ? *reply : reply->substr(at, 15);
  }

  int id_ = 0;
  std::string dir_, trid_;
  std::unique_ptr<Subprocess> emu_, daemon_;
  std::vector<std::unique_ptr<Subprocess>> children_;
};

TEST_F(KeepAliveTest, SecondariesKeepTheControllerAliveWhileThePrimaryIsDead) {
  Subprocess& a = Secondary(0);
  Subprocess& b = Secondary(4096);
  for (Subprocess* s : {&a, &b}) ASSERT_TRUE(s->ReadUntil("ready", 20s)) << "a secondary did not become ready";
  EXPECT_EQ(Csts(), "csts=0x00000001");
  daemon_->Kill(SIGKILL);
  (void)daemon_->Wait();
  daemon_.reset();
  // Three KATOs without a primary: only the secondaries' Keep Alive
  // commands can keep the emulator from failing the controller.
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(Csts(), "csts=0x00000001") << "the device failed the controller (CFS) without a primary";
  ASSERT_TRUE(a.running() && b.running()) << "a secondary's I/O failed while the primary was dead";
  for (Subprocess* s : {&a, &b}) {
    s->Kill(SIGTERM);
    EXPECT_TRUE(s->ReadUntil("done", 30s)) << "a secondary did not finish its I/O";
    auto st = s->Wait(30s);
    ASSERT_TRUE(st);
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << test::DescribeStatus(*st);
  }
}

// Without any process polling the admin queue, the KATO expires and the
// emulator reports a fatal controller status (the enforcement the test
// above relies on).
TEST_F(KeepAliveTest, ControllerFailsWhenNobodySendsKeepAlive) {
  EXPECT_EQ(Csts(), "csts=0x00000001");
  daemon_->Kill(SIGKILL);
  (void)daemon_->Wait();
  daemon_.reset();
  std::string csts;
  for (int i = 0; i < 1000 && (csts = Csts()) == "csts=0x00000001"; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(csts, "csts=0x00000003") << "RDY and CFS after the KATO passed without Keep Alive";
}

}  // namespace
}  // namespace nvmux
