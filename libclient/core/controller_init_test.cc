#include "controller_init.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>

namespace nvmux {
namespace {

// A register file that behaves like a controller's: CSTS.RDY follows CC.EN
// after `delay` reads of CSTS; faults on demand.
class FakeRegisters final : public RegisterIo {
 public:
  FakeRegisters() {
    cap.set_mqes(1023);
    cap.set_cqr(1);
    cap.set_to(2);  // 1 s
    cap.set_css(spec::kCapCssNvm);
  }
  Result<uint32_t> Read32(uint32_t off) override {
    reads++;
    if (vanished) return 0xFFFFFFFFu;
    switch (off) {
      case spec::kRegVs: return spec::kVersion1_4;
      case spec::kRegCc: return cc.raw;
      case spec::kRegCsts:
        if (countdown > 0 && --countdown == 0 && !never_ready) {
          csts.set_rdy(cc.en());
          if (cc.en() && cfs_on_enable) csts.set_cfs(1);
        }
        return csts.raw;
      case spec::kRegAqa: return aqa;
      default: return Fail(EINVAL, "unexpected read");
    }
  }
  Result<uint64_t> Read64(uint32_t off) override {
    if (vanished) return ~0ull;
    if (off == spec::kRegCap) return cap.raw;
    return Fail(EINVAL, "unexpected read64");
  }
  Status Write32(uint32_t off, uint32_t v) override {
    writes.push_back(off);
    if (off == spec::kRegCc) {
      spec::Cc next{v};
      if (next.en() != cc.en()) countdown = delay;
      cc = next;
    } else if (off == spec::kRegAqa) {
      aqa = v;
    }
    return Ok();
  }
  Status Write64(uint32_t off, uint64_t v) override {
    writes.push_back(off);
    (off == spec::kRegAsq ? asq : acq) = v;
    return Ok();
  }

  spec::Cap cap;
  spec::Cc cc;
  spec::Csts csts;
  uint32_t aqa = 0;
  uint64_t asq = 0, acq = 0;
  int delay = 3, countdown = 0, reads = 0;
  bool never_ready = false, cfs_on_enable = false, vanished = false;
  std::vector<uint32_t> writes;
};

// Admin commands answered on the next Poll(), writing identify data into the
// buffer as a controller would by DMA.
class FakeAdmin final : public AdminChannel {
 public:
  explicit FakeAdmin(void* buffer) : buffer_(buffer) {
    ctrlr.sqes = 0x66;
    ctrlr.cqes = 0x44;
    ctrlr.nn = 4;
    ctrlr.mdts = 5;
    std::memcpy(ctrlr.mn, "nvmux fake", 10);
    nsids = {1, 3};
  }
  Status Submit(const spec::Sqe& cmd, Done done) override {
    if (busy > 0) return --busy, Fail(EAGAIN, "admin queue full");
    submitted.push_back(cmd);
    pending.emplace_back(cmd, std::move(done));
    return Ok();
  }
  Status Poll() override {
    polls++;
    while (!pending.empty()) {
      auto [cmd, done] = std::move(pending.front());
      pending.pop_front();
      if (drop_opcode && *drop_opcode == cmd.opc) continue;  // never completes
      spec::Cqe c;
      if (fail_opcode && *fail_opcode == cmd.opc) c.status = static_cast<uint16_t>((0x02u << 1) | (1u << 15));
      else Answer(cmd, c);
      done(c);
    }
    return Ok();
  }
  void Answer(const spec::Sqe& cmd, spec::Cqe& c) {
    if (cmd.opc == spec::admin::kIdentify) {
      std::memset(buffer_, 0, 4096);
      if (cmd.cdw10 == spec::cns::kController) std::memcpy(buffer_, &ctrlr, sizeof(ctrlr));
      if (cmd.cdw10 == spec::cns::kActiveNamespaceList) std::memcpy(buffer_, nsids.data(), nsids.size() * 4);
      if (cmd.cdw10 == spec::cns::kNamespace) {
        spec::IdentifyNamespace ns{};
        ns.nsze = 1000u * cmd.nsid;
        std::memcpy(buffer_, &ns, sizeof(ns));
      }
    } else if (cmd.opc == spec::admin::kSetFeatures) {
      c.cdw0 = (7u << 16) | 15u;  // 16 SQs, 8 CQs granted
    }
  }

  void* buffer_;
  spec::IdentifyController ctrlr{};
  std::vector<uint32_t> nsids;
  std::deque<std::pair<spec::Sqe, Done>> pending;
  std::vector<spec::Sqe> submitted;
  std::optional<uint8_t> fail_opcode, drop_opcode;
  int busy = 0, polls = 0;
};

class ControllerInitTest : public ::testing::Test {
 protected:
  ControllerInitTest() : admin_(buffer_) {
    options_.asq_iova = 0x10000;
    options_.acq_iova = 0x20000;
    options_.admin_entries = 32;
    options_.io_queues = 16;
    options_.admin_timeout = std::chrono::seconds(2);
  }
  ControllerInit Make() { return ControllerInit(regs_, admin_, clock_, options_, IdentifyBuffer{buffer_, 0x30000}); }
  // Steps until a terminal state (or `limit` steps), recording each state entered.
  std::vector<InitState> Run(ControllerInit& init, int limit = 100) {
    std::vector<InitState> seen{init.state()};
    for (int i = 0; i < limit && init.state() != InitState::kReady && init.state() != InitState::kFailed; ++i) {
      InitState s = init.Step();
      if (s != seen.back()) seen.push_back(s);
    }
    return seen;
  }

  alignas(4096) unsigned char buffer_[4096]{};
  FakeRegisters regs_;
  FakeAdmin admin_;
  FakeClock clock_;
  InitOptions options_;
};

TEST_F(ControllerInitTest, ArbitrationIsProgrammedWhenOfferedAndRefusedNamingItWhenNot) {
  options_.arbitration = 1;  // weighted round robin
  auto refused = Make();
  Run(refused);
  ASSERT_EQ(refused.state(), InitState::kFailed);
  EXPECT_EQ(refused.error().code, ENOTSUP);
  EXPECT_NE(refused.error().message.find("weighted round robin"), std::string::npos) << refused.error().message;
  EXPECT_EQ(regs_.cc.en(), 0) << "not enabled with a mechanism the controller lacks";
  regs_.cap.set_ams(1);
  auto wrr = Make();
  Run(wrr);
  ASSERT_EQ(wrr.state(), InitState::kReady) << wrr.error().message;
  EXPECT_EQ(regs_.cc.ams(), 1);
}

TEST_F(ControllerInitTest, BringsADisabledControllerToReadyOneStepAtATime) {
  auto init = Make();
  auto seen = Run(init);
  ASSERT_EQ(init.state(), InitState::kReady) << init.error().message;
  std::vector<InitState> expected = {InitState::kReadCaps,          InitState::kWaitDisabled,
                                     InitState::kConfigureAdminQueue, InitState::kEnable,
                                     InitState::kWaitReady,         InitState::kIdentifyController,
                                     InitState::kSetNumberOfQueues, InitState::kIdentifyActiveNamespaces,
                                     InitState::kIdentifyNamespace, InitState::kReady};
  EXPECT_EQ(seen, expected);
  EXPECT_EQ(regs_.aqa, (31u << 16) | 31u);
  EXPECT_EQ(regs_.asq, 0x10000u);
  EXPECT_EQ(regs_.acq, 0x20000u);
  EXPECT_EQ(regs_.cc.en(), 1);
  EXPECT_EQ(regs_.cc.iosqes(), 6);
  EXPECT_EQ(regs_.cc.iocqes(), 4);
  EXPECT_EQ(regs_.cc.mps(), 0);
  // AQA, ASQ and ACQ are written before CC.EN.
  ASSERT_GE(regs_.writes.size(), 4u);
  EXPECT_EQ(regs_.writes.back(), spec::kRegCc);
  const ControllerData& d = init.data();
  EXPECT_EQ(std::memcmp(d.ctrlr.mn, "nvmux fake", 10), 0);
  EXPECT_EQ(d.io_sq_granted, 16);
  EXPECT_EQ(d.io_cq_granted, 8);
  EXPECT_EQ(d.active_nsids, (std::vector<uint32_t>{1, 3}));
  ASSERT_EQ(d.namespaces.size(), 2u);
  EXPECT_EQ(d.namespaces[1].nsze, 3000u);
  EXPECT_EQ(admin_.submitted[1].cdw11, (15u << 16) | 15u);  // asked for 16 queue pairs
  EXPECT_EQ(admin_.submitted[0].prp1, 0x30000u);
}

TEST_F(ControllerInitTest, DisablesAnEnabledControllerFirst) {
  regs_.cc.set_en(1);
  regs_.csts.set_rdy(1);
  auto init = Make();
  auto seen = Run(init);
  ASSERT_EQ(init.state(), InitState::kReady) << init.error().message;
  EXPECT_EQ(seen[1], InitState::kDisable);
  EXPECT_EQ(seen[2], InitState::kWaitDisabled);
}

TEST_F(ControllerInitTest, WaitsForRdyBeforeDisablingAControllerStillEnabling) {
  regs_.cc.set_en(1);
  regs_.countdown = 2;  // RDY rises after two more CSTS reads
  auto init = Make();
  auto seen = Run(init);
  ASSERT_EQ(init.state(), InitState::kReady) << init.error().message;
  EXPECT_EQ(seen[1], InitState::kWaitReadyBeforeDisable);
  EXPECT_EQ(seen[2], InitState::kDisable);
}

TEST_F(ControllerInitTest, TimesOutAfterCapToWhenRdyNeverRises) {
  regs_.never_ready = true;
  auto init = Make();
  for (int i = 0; i < 10 && init.state() != InitState::kWaitReady; ++i) init.Step();
  ASSERT_EQ(init.state(), InitState::kWaitReady);
  init.Step();
  clock_.Advance(std::chrono::milliseconds(999));
  EXPECT_EQ(init.Step(), InitState::kWaitReady);  // CAP.TO = 2 x 500 ms: not yet
  clock_.Advance(std::chrono::milliseconds(1));
  EXPECT_EQ(init.Step(), InitState::kFailed);
  EXPECT_EQ(init.error().code, ETIMEDOUT);
  EXPECT_NE(init.error().message.find("CAP.TO (1000 ms)"), std::string::npos) << init.error().message;
}

TEST_F(ControllerInitTest, FatalStatusOnEnableFails) {
  regs_.cfs_on_enable = true;
  auto init = Make();
  Run(init);
  ASSERT_EQ(init.state(), InitState::kFailed);
  EXPECT_EQ(init.error().code, ENXIO);
  EXPECT_NE(init.error().message.find("CSTS.CFS"), std::string::npos);
}

TEST_F(ControllerInitTest, VanishedDeviceFailsWithENXIO) {
  regs_.vanished = true;
  auto init = Make();
  Run(init);
  ASSERT_EQ(init.state(), InitState::kFailed);
  EXPECT_EQ(init.error().code, ENXIO);
}

TEST_F(ControllerInitTest, AdminErrorStatusNamesTheCommandAndStatus) {
  admin_.fail_opcode = spec::admin::kSetFeatures;
  auto init = Make();
  Run(init);
  ASSERT_EQ(init.state(), InitState::kFailed);
  EXPECT_EQ(init.error().code, EIO);
  EXPECT_NE(init.error().message.find("Set Features (Number of Queues) failed: status 0/0x2 (do not retry)"),
            std::string::npos)
      << init.error().message;
}

TEST_F(ControllerInitTest, AdminCommandThatNeverCompletesTimesOut) {
  admin_.drop_opcode = spec::admin::kIdentify;
  auto init = Make();
  for (int i = 0; i < 20 && init.state() != InitState::kIdentifyController; ++i) init.Step();
  init.Step();
  EXPECT_EQ(init.state(), InitState::kIdentifyController);
  clock_.Advance(std::chrono::seconds(2));
  EXPECT_EQ(init.Step(), InitState::kFailed);
  EXPECT_EQ(init.error().code, ETIMEDOUT);
  EXPECT_NE(init.error().message.find("Identify Controller did not complete within 2000 ms"), std::string::npos);
}

TEST_F(ControllerInitTest, FullAdminQueueIsRetriedNotFailed) {
  admin_.busy = 3;
  auto init = Make();
  Run(init);
  EXPECT_EQ(init.state(), InitState::kReady) << init.error().message;
}

TEST_F(ControllerInitTest, AdminQueueLargerThanMqesIsRefusedNamingTheLimit) {
  regs_.cap.set_mqes(15);
  options_.admin_entries = 64;
  auto init = Make();
  Run(init);
  ASSERT_EQ(init.state(), InitState::kFailed);
  EXPECT_EQ(init.error().code, EINVAL);
  EXPECT_NE(init.error().message.find("64 entries: allowed 2..16"), std::string::npos) << init.error().message;
}

TEST_F(ControllerInitTest, ControllerWithoutNamespacesIsReady) {
  admin_.nsids.clear();
  auto init = Make();
  Run(init);
  ASSERT_EQ(init.state(), InitState::kReady);
  EXPECT_TRUE(init.data().namespaces.empty());
}

TEST_F(ControllerInitTest, WrongEntrySizesAreRefused) {
  admin_.ctrlr.sqes = 0x77;
  auto init = Make();
  Run(init);
  ASSERT_EQ(init.state(), InitState::kFailed);
  EXPECT_EQ(init.error().code, ENODEV);
  EXPECT_NE(init.error().message.find("SQES 0x77"), std::string::npos);
}

}  // namespace
}  // namespace nvmux

namespace nvmux {
namespace {

// ---- shadow doorbells (Doorbell Buffer Config) ----

class ShadowDoorbellInitTest : public ControllerInitTest {
 protected:
  ShadowDoorbellInitTest() {
    admin_.ctrlr.oacs = spec::kOacsDbcs;
    options_.shadow_doorbell_iova = 0x40000;
    options_.eventidx_iova = 0x41000;
  }
};

TEST_F(ShadowDoorbellInitTest, ConfiguresShadowDoorbellsWhenOacsOffersThem) {
  auto init = Make();
  auto seen = Run(init);
  ASSERT_EQ(init.state(), InitState::kReady) << init.error().message;
  std::vector<InitState> expected = {InitState::kReadCaps,           InitState::kWaitDisabled,
                                     InitState::kConfigureAdminQueue,  InitState::kEnable,
                                     InitState::kWaitReady,          InitState::kIdentifyController,
                                     InitState::kSetNumberOfQueues,  InitState::kDoorbellBufferConfig,
                                     InitState::kIdentifyActiveNamespaces, InitState::kIdentifyNamespace,
                                     InitState::kReady};
  EXPECT_EQ(seen, expected);
  ASSERT_GE(admin_.submitted.size(), 3u);
  const spec::Sqe& dbbc = admin_.submitted[2];
  EXPECT_EQ(dbbc.opc, spec::admin::kDoorbellBufferConfig);
  EXPECT_EQ(dbbc.prp1, 0x40000u);
  EXPECT_EQ(dbbc.prp2, 0x41000u);
  EXPECT_TRUE(init.data().shadow_doorbells);
  EXPECT_STREQ(ToString(InitState::kDoorbellBufferConfig), "doorbell-buffer-config");
}

TEST_F(ShadowDoorbellInitTest, SkippedWhenTheControllerDoesNotOfferThem) {
  admin_.ctrlr.oacs = spec::kOacsFormat | spec::kOacsNsMgmt;
  auto init = Make();
  auto seen = Run(init);
  ASSERT_EQ(init.state(), InitState::kReady) << init.error().message;
  EXPECT_EQ(std::count(seen.begin(), seen.end(), InitState::kDoorbellBufferConfig), 0);
  for (const spec::Sqe& c : admin_.submitted) EXPECT_NE(c.opc, spec::admin::kDoorbellBufferConfig);
  EXPECT_FALSE(init.data().shadow_doorbells);
}

TEST_F(ShadowDoorbellInitTest, SkippedWhenTheHostGaveNoPages) {
  options_.shadow_doorbell_iova = 0;
  options_.eventidx_iova = 0;
  auto init = Make();
  Run(init);
  ASSERT_EQ(init.state(), InitState::kReady) << init.error().message;
  for (const spec::Sqe& c : admin_.submitted) EXPECT_NE(c.opc, spec::admin::kDoorbellBufferConfig);
  EXPECT_FALSE(init.data().shadow_doorbells);
}

TEST_F(ShadowDoorbellInitTest, AFailedConfigLeavesShadowDoorbellsOffAndInitCarriesOn) {
  admin_.fail_opcode = spec::admin::kDoorbellBufferConfig;
  auto init = Make();
  auto seen = Run(init);
  ASSERT_EQ(init.state(), InitState::kReady) << init.error().message;
  EXPECT_EQ(std::count(seen.begin(), seen.end(), InitState::kDoorbellBufferConfig), 1);
  EXPECT_FALSE(init.data().shadow_doorbells);
  EXPECT_EQ(init.data().namespaces.size(), 2u) << "the namespaces are still identified";
}

TEST_F(ShadowDoorbellInitTest, OneStepSubmitsThenCompletes) {
  auto init = Make();
  for (int i = 0; i < 50 && init.state() != InitState::kDoorbellBufferConfig; ++i) init.Step();
  ASSERT_EQ(init.state(), InitState::kDoorbellBufferConfig);
  size_t before = admin_.submitted.size();
  // The fake answers on the poll of the submitting step: one step completes it.
  EXPECT_EQ(init.Step(), InitState::kIdentifyActiveNamespaces);
  EXPECT_EQ(admin_.submitted.size(), before + 1);
  EXPECT_TRUE(init.data().shadow_doorbells);
}

TEST_F(ShadowDoorbellInitTest, AConfigThatNeverCompletesTimesOutLikeAnyCommand) {
  admin_.drop_opcode = spec::admin::kDoorbellBufferConfig;
  auto init = Make();
  for (int i = 0; i < 50 && init.state() != InitState::kDoorbellBufferConfig; ++i) init.Step();
  ASSERT_EQ(init.state(), InitState::kDoorbellBufferConfig);
  EXPECT_EQ(init.Step(), InitState::kDoorbellBufferConfig);
  clock_.Advance(std::chrono::seconds(2));
  EXPECT_EQ(init.Step(), InitState::kFailed);
  EXPECT_EQ(init.error().code, ETIMEDOUT);
  EXPECT_NE(init.error().message.find("Doorbell Buffer Config did not complete"), std::string::npos)
      << init.error().message;
}

}  // namespace
}  // namespace nvmux
