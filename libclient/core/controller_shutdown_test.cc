// ControllerShutdown stepped one call at a time against a fake register
// file and a fake clock.
#include "libclient/core/controller_shutdown.h"

#include <gtest/gtest.h>

#include "nvmux/spec/registers.h"

namespace nvmux {
namespace {

using namespace std::chrono_literals;

class FakeRegisters final : public RegisterIo {
 public:
  Result<uint32_t> Read32(uint32_t off) override {
    if (gone) return Fail(ENXIO, "gone");
    if (off == spec::kRegCc) return cc.raw;
    if (off == spec::kRegCsts) {
      if (cc.shn() != 0 && countdown > 0 && --countdown == 0) csts.set_shst(2);
      return csts.raw;
    }
    return Fail(EINVAL, "unexpected read");
  }
  Result<uint64_t> Read64(uint32_t) override { return Fail(EINVAL, "unexpected read64"); }
  Status Write32(uint32_t off, uint32_t v) override {
    if (off != spec::kRegCc) return Fail(EINVAL, "unexpected write");
    cc = spec::Cc{v};
    if (cc.shn() != 0) csts.set_shst(1);  // occurring
    return Ok();
  }
  Status Write64(uint32_t, uint64_t) override { return Fail(EINVAL, "unexpected write64"); }

  spec::Cc cc{0x00460001};  // enabled
  spec::Csts csts{1};
  int countdown = 3;
  bool gone = false;
};

TEST(ControllerShutdownTest, TimeoutIsRtd3eRoundedUpButAtLeastTenSeconds) {
  EXPECT_EQ(ControllerShutdown::Timeout(0), 10s);
  EXPECT_EQ(ControllerShutdown::Timeout(2'000'000), 10s);
  EXPECT_EQ(ControllerShutdown::Timeout(30'000'001), std::chrono::milliseconds(30'001));
}

TEST(ControllerShutdownTest, WritesShnThenWaitsForShstComplete) {
  FakeRegisters regs;
  FakeClock clock;
  ControllerShutdown s(regs, clock, 10s, "fake");
  EXPECT_EQ(s.Step(), ShutdownState::kWaitComplete);
  EXPECT_EQ(regs.cc.shn(), 1);
  EXPECT_EQ(regs.cc.en(), 1) << "CC.EN is left alone";
  EXPECT_EQ(s.Step(), ShutdownState::kWaitComplete);
  EXPECT_EQ(s.Step(), ShutdownState::kWaitComplete);
  EXPECT_FALSE(s.done());
  EXPECT_EQ(s.Step(), ShutdownState::kComplete);
  EXPECT_TRUE(s.done());
  EXPECT_EQ(s.Step(), ShutdownState::kComplete);
}

TEST(ControllerShutdownTest, TimesOutAgainstTheInjectedClock) {
  FakeRegisters regs;
  regs.countdown = -1;  // never completes
  FakeClock clock;
  ControllerShutdown s(regs, clock, 10s, "fake");
  s.Step();
  clock.Advance(9s);
  EXPECT_EQ(s.Step(), ShutdownState::kWaitComplete);
  clock.Advance(1s);
  EXPECT_EQ(s.Step(), ShutdownState::kTimedOut);
  EXPECT_TRUE(s.done());
}

TEST(ControllerShutdownTest, GoneDeviceEndsAtOnce) {
  FakeRegisters regs;
  FakeClock clock;
  ControllerShutdown s(regs, clock, 10s, "fake");
  s.Step();
  regs.gone = true;
  EXPECT_EQ(s.Step(), ShutdownState::kGone);
  FakeRegisters all_ones;
  all_ones.cc = spec::Cc{0xFFFFFFFFu};
  ControllerShutdown t(all_ones, clock, 10s, "fake");
  EXPECT_EQ(t.Step(), ShutdownState::kGone);
}

}  // namespace
}  // namespace nvmux
