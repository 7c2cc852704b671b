// BarGuard against a real SIGBUS: a shared file mapping whose file is
// truncated under it faults like a BAR whose device was removed.
#include "libclient/core/bar_guard.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

namespace nvmux {
namespace {

struct VanishingMapping {
  VanishingMapping() {
    fd = ::memfd_create("bar-guard-test", MFD_CLOEXEC);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::ftruncate(fd, 2 * 4096), 0);
    void* p = ::mmap(nullptr, 2 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    EXPECT_NE(p, MAP_FAILED);
    bar = static_cast<volatile uint32_t*>(p);
  }
  ~VanishingMapping() {
    ::munmap(const_cast<uint32_t*>(bar), 2 * 4096);
    ::close(fd);
  }
  void Vanish() { ASSERT_EQ(::ftruncate(fd, 0), 0); }  // every later access: SIGBUS
  int fd = -1;
  volatile uint32_t* bar = nullptr;
};

TEST(BarGuard, AVanishedMappingReadsAllOnesAndSetsLost) {
  VanishingMapping m;
  std::atomic<bool> lost{false};
  auto guard = BarGuard::Guard(const_cast<uint32_t*>(m.bar), 2 * 4096, &lost);
  ASSERT_TRUE(guard) << guard.error().message;
  m.bar[0] = 0x1234;
  EXPECT_EQ(m.bar[0], 0x1234u);
  EXPECT_FALSE(lost.load());
  uint64_t before = BarGuard::Absorbed();
  m.Vanish();
  EXPECT_EQ(m.bar[1024 + 3], 0xFFFFFFFFu);  // the second page: the whole mapping was replaced
  EXPECT_TRUE(lost.load());
  EXPECT_EQ(BarGuard::Absorbed(), before + 1);
  m.bar[5] = 7;  // a doorbell write on the placeholder goes nowhere, without a fault
  EXPECT_EQ(BarGuard::Absorbed(), before + 1);
}

// A fault in a mapping nobody guards, while another is guarded.
[[noreturn]] void FaultOutsideTheGuardedMapping() {
  VanishingMapping guarded;
  VanishingMapping other;
  std::atomic<bool> lost{false};
  auto guard = BarGuard::Guard(const_cast<uint32_t*>(guarded.bar), 2 * 4096, &lost);
  if (!guard) std::_Exit(3);
  other.Vanish();
  (void)other.bar[0];
  std::_Exit(0);
}

// A fault in a mapping whose guard was dropped.
[[noreturn]] void FaultAfterUnguard() {
  VanishingMapping m;
  std::atomic<bool> lost{false};
  {
    auto guard = BarGuard::Guard(const_cast<uint32_t*>(m.bar), 2 * 4096, &lost);
    if (!guard) std::_Exit(3);
  }
  m.Vanish();
  (void)m.bar[0];
  std::_Exit(0);
}

// The child exits 0 only if the fault was absorbed. Killed by SIGBUS when
// run plainly; under ASan (whose SIGBUS handler we chain to) it reports and
// exits 1, or aborts (SIGABRT) with ASAN_OPTIONS=abort_on_error=1, as CI runs.
bool FaultWasNotAbsorbed(int status) {
  return (WIFSIGNALED(status) && (WTERMSIG(status) == SIGBUS || WTERMSIG(status) == SIGABRT)) ||
         (WIFEXITED(status) && WEXITSTATUS(status) == 1);
}

TEST(BarGuard, ASigbusOutsideGuardedMappingsStillKills) {
  EXPECT_EXIT(FaultOutsideTheGuardedMapping(), FaultWasNotAbsorbed, "");
}

TEST(BarGuard, AnUnguardedMappingIsNoLongerCaught) {
  EXPECT_EXIT(FaultAfterUnguard(), FaultWasNotAbsorbed, "");
}

}  // namespace
}  // namespace nvmux
