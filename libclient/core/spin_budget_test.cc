#include "nvmux/spin_budget.h"

#include <gtest/gtest.h>

namespace nvmux {
namespace {

TEST(SpinBudgetTest, SpinsAsConfiguredWhileSpinningPays) {
  SpinBudget spin(50);
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(spin.BeginWait(), 50'000);
    spin.Paid();
  }
}

TEST(SpinBudgetTest, WastedSpinsHalveTheBudgetDownToTheFloor) {
  SpinBudget spin(50);
  const int64_t expected[] = {50'000, 25'000, 12'500, 6'250, 3'125, 1'562, 1'000, 1'000};
  for (int64_t e : expected) {
    EXPECT_EQ(spin.nanos(), e);
    spin.Wasted();
  }
  EXPECT_EQ(spin.nanos(), SpinBudget::kFloorNanos);
}

TEST(SpinBudgetTest, OneSpinThatPaysRestoresTheBudget) {
  SpinBudget spin(50);
  for (int i = 0; i < 10; ++i) spin.Wasted();
  spin.Paid();
  EXPECT_EQ(spin.BeginWait(), 50'000);
}

TEST(SpinBudgetTest, EverySixtyFourthWaitBelowTheBudgetSpinsItWhole) {
  SpinBudget spin(50);
  for (int i = 0; i < 10; ++i) spin.Wasted();
  int full = 0;
  for (uint32_t i = 0; i < 4 * SpinBudget::kProbeEvery; ++i) {
    const int64_t allowed = spin.BeginWait();
    EXPECT_TRUE(allowed == SpinBudget::kFloorNanos || allowed == 50'000) << allowed;
    if (allowed == 50'000) ++full;
    spin.Wasted();  // the probe did not pay either
  }
  EXPECT_EQ(full, 4);
}

TEST(SpinBudgetTest, ABudgetBelowTheFloorStaysWhatWasAsked) {
  SpinBudget none(0);
  EXPECT_EQ(none.BeginWait(), 0);
  none.Wasted();
  EXPECT_EQ(none.BeginWait(), 0);
}

// A wait's account: the allowance is taken once; a block counts the spin
// wasted once, and a completion after it does not count as paid.
TEST(SpinBudgetTest, AWaitSpinsItsAllowanceThenBlocksOnce) {
  SpinBudget spin(50);
  {
    SpinBudget::Wait wait(spin);
    EXPECT_TRUE(wait.Spin(0));
    EXPECT_TRUE(wait.Spin(49'999));
    EXPECT_FALSE(wait.Spin(50'000));
    wait.Blocking();
    wait.Blocking();  // woken with nothing: blocks again
    EXPECT_FALSE(wait.Spin(0));
    wait.Found();
  }
  EXPECT_EQ(spin.nanos(), 25'000);
  {
    SpinBudget::Wait wait(spin);
    EXPECT_TRUE(wait.Spin(24'999));
    EXPECT_FALSE(wait.Spin(25'000));
    wait.Found();  // came as the spin ran out, before arming: it paid
  }
  EXPECT_EQ(spin.nanos(), 50'000);
  {
    SpinBudget::Wait wait(spin);
    wait.Found();  // the first poll found it: no spin, nothing learnt
  }
  EXPECT_EQ(spin.nanos(), 50'000);
}

}  // namespace
}  // namespace nvmux
