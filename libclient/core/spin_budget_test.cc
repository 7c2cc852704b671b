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

}  // namespace
}  // namespace nvmux
