#include <gtest/gtest.h>

#include "nvmux/spec/nvme.h"

namespace nvmux::spec {
namespace {

TEST(SpecRegisters, CapFieldsRoundTrip) {
  Cap cap;
  cap.set_mqes(0x7FF).set_cqr(1).set_to(20).set_css(kCapCssNvm).set_mpsmax(4);
  EXPECT_EQ(cap.raw, 0x0040'0020'1401'07FFull);
  EXPECT_EQ(cap.mqes(), 0x7FF);
  EXPECT_EQ(cap.to(), 20);
  EXPECT_EQ(cap.mpsmin(), 0);
  EXPECT_EQ(cap.mpsmax(), 4);
}

TEST(SpecRegisters, CcAndAqa) {
  Cc cc;
  cc.set_en(1).set_iosqes(6).set_iocqes(4).set_shn(kCcShnNormal);
  EXPECT_EQ(cc.raw, 0x0046'4001u);
  Aqa aqa;
  aqa.set_asqs(31).set_acqs(63);
  EXPECT_EQ(aqa.raw, (63u << 16) | 31u);
  EXPECT_EQ(DoorbellOffset(0, false), 0x1000u);
  EXPECT_EQ(DoorbellOffset(0, true), 0x1004u);
  EXPECT_EQ(DoorbellOffset(3, true), 0x101Cu);
}

TEST(SpecStatus, PacksIntoCqe) {
  Cqe cqe;
  cqe.status = static_cast<uint16_t>(ToStatusField(Dnr(sct::kCommandSpecific, sc::kInvalidQueueIdentifier)) << 1 | 1);
  EXPECT_EQ(cqe.p(), 1);
  EXPECT_EQ(cqe.sct(), sct::kCommandSpecific);
  EXPECT_EQ(cqe.sc(), sc::kInvalidQueueIdentifier);
  EXPECT_TRUE(cqe.dnr());
  EXPECT_FALSE(cqe.m());
}

TEST(SpecCommand, SqeFlags) {
  Sqe sqe;
  sqe.set_fuse(kFuseSecond);
  sqe.set_psdt(1);
  EXPECT_EQ(sqe.flags, 0x42);
  EXPECT_EQ(sqe.fuse(), kFuseSecond);
  EXPECT_EQ(sqe.psdt(), 1);
}

TEST(SpecLog, AerDw0) { EXPECT_EQ(aer::Dw0(aer::kTypeNotice, 0, lid::kChangedNamespaceList), 0x0004'0002u); }

}  // namespace
}  // namespace nvmux::spec
