// CONFORMANCE.md "Admin commands": Identify Namespace for NSID FFFFFFFFh,
// the Interrupt Vector Configuration, Host Behavior Support and Keep Alive
// Timer features, and keep-alive expiry (the cases SPDK's nvme_compliance
// checks, per the NVMe base specification).
#include <cstring>
#include <thread>

#include "test/conformance/harness.h"

namespace nvmux::conformance {
namespace {

using namespace nvmux::spec;
using namespace std::chrono_literals;

constexpr uint8_t kGen = sct::kGeneric;

class FeaturesTest : public ::testing::Test {
 protected:
  void SetUp() override { StartWith({}); }
  void StartWith(emu::EmulatorOptions options) {
    dev_ = std::make_unique<TestDevice>(std::move(options));
    dev_->Start();
    ASSERT_TRUE(dev_->Enable());
  }
  std::optional<Cqe> Admin(Sqe sqe) { return dev_->Admin(sqe); }
  std::optional<Cqe> AdminData(Sqe sqe, DmaMemory::Buffer& buf, uint8_t fill = 0xA5) {
    buf = dev_->mem().Alloc(4096);
    std::memset(buf.ptr, fill, 4096);
    sqe.prp1 = buf.iova;
    return Admin(sqe);
  }
  static Sqe GetFeature(uint8_t fid, uint8_t sel = 0, uint32_t cdw11 = 0) {
    Sqe sqe = AdminCmd(admin::kGetFeatures);
    sqe.cdw10 = fid | (static_cast<uint32_t>(sel) << 8);
    sqe.cdw11 = cdw11;
    return sqe;
  }
  static Sqe SetFeature(uint8_t fid, uint32_t value) {
    Sqe sqe = AdminCmd(admin::kSetFeatures);
    sqe.cdw10 = fid;
    sqe.cdw11 = value;
    return sqe;
  }
  // Waits up to `timeout` for CSTS.CFS == cfs.
  bool WaitCfs(bool cfs, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    do {
      if ((dev_->Csts().cfs() != 0) == cfs) return true;
      std::this_thread::sleep_for(10ms);
    } while (std::chrono::steady_clock::now() < end);
    return false;
  }
  std::unique_ptr<TestDevice> dev_;
};

TEST_F(FeaturesTest, IdentifyNamespaceBroadcastReturnsCommonCapabilities) {
  DmaMemory::Buffer ctrl_buf;
  Sqe idc = AdminCmd(admin::kIdentify);
  idc.cdw10 = cns::kController;
  ASSERT_TRUE(IsSuccess(AdminData(idc, ctrl_buf)));
  IdentifyController ctrl;
  std::memcpy(&ctrl, ctrl_buf.ptr, sizeof(ctrl));
  ASSERT_NE(ctrl.oacs & kOacsNsMgmt, 0) << "the broadcast NSID is defined with Namespace Management";

  DmaMemory::Buffer common_buf;
  Sqe sqe = AdminCmd(admin::kIdentify, 0xFFFFFFFF);
  sqe.cdw10 = cns::kNamespace;
  ASSERT_TRUE(IsSuccess(AdminData(sqe, common_buf)));
  IdentifyNamespace common;
  std::memcpy(&common, common_buf.ptr, sizeof(common));
  // Nothing namespace-specific.
  EXPECT_EQ(common.nsze, 0u);
  EXPECT_EQ(common.ncap, 0u);
  EXPECT_EQ(common.nuse, 0u);
  EXPECT_EQ(common.flbas, 0);
  const uint8_t zero16[16] = {};
  EXPECT_EQ(std::memcmp(common.nguid, zero16, 16), 0);
  EXPECT_EQ(std::memcmp(common.eui64, zero16, 8), 0);

  // The capabilities match those of namespace 1 (every namespace here has
  // the same ones).
  DmaMemory::Buffer ns_buf;
  Sqe ns1 = AdminCmd(admin::kIdentify, 1);
  ns1.cdw10 = cns::kNamespace;
  ASSERT_TRUE(IsSuccess(AdminData(ns1, ns_buf)));
  IdentifyNamespace one;
  std::memcpy(&one, ns_buf.ptr, sizeof(one));
  EXPECT_EQ(common.nlbaf, one.nlbaf);
  EXPECT_GT(common.nlbaf, 0);
  for (int i = 0; i <= common.nlbaf; ++i) {
    EXPECT_EQ(common.lbaf[i].lbads, one.lbaf[i].lbads) << i;
    EXPECT_EQ(common.lbaf[i].ms, one.lbaf[i].ms) << i;
  }
  EXPECT_EQ(common.mc, one.mc);
  EXPECT_EQ(common.dlfeat, one.dlfeat);
  EXPECT_EQ(common.rescap, one.rescap);
  EXPECT_EQ(common.mssrl, one.mssrl);
}

TEST_F(FeaturesTest, InterruptVectorConfiguration) {
  // Vector 0 serves the admin CQ, where coalescing never applies: CD = 1.
  auto admin_vec = Admin(GetFeature(fid::kInterruptVectorConfig, sel::kCurrent, 0));
  ASSERT_TRUE(IsSuccess(admin_vec));
  EXPECT_EQ(admin_vec->cdw0, kIvConfigCd);
  // An I/O vector: coalescing applies by default (CD = 0), and CD is settable.
  auto io_vec = Admin(GetFeature(fid::kInterruptVectorConfig, sel::kCurrent, 5));
  ASSERT_TRUE(IsSuccess(io_vec));
  EXPECT_EQ(io_vec->cdw0, 5u);
  ASSERT_TRUE(IsSuccess(Admin(SetFeature(fid::kInterruptVectorConfig, 5 | kIvConfigCd))));
  io_vec = Admin(GetFeature(fid::kInterruptVectorConfig, sel::kCurrent, 5));
  ASSERT_TRUE(IsSuccess(io_vec));
  EXPECT_EQ(io_vec->cdw0, 5u | kIvConfigCd);
  auto def = Admin(GetFeature(fid::kInterruptVectorConfig, sel::kDefault, 5));
  ASSERT_TRUE(IsSuccess(def));
  EXPECT_EQ(def->cdw0, 5u);
  // The other vectors are unchanged.
  auto other = Admin(GetFeature(fid::kInterruptVectorConfig, sel::kCurrent, 6));
  ASSERT_TRUE(IsSuccess(other));
  EXPECT_EQ(other->cdw0, 6u);
  // 64 I/O queues: vectors 0..64 exist, 65 does not.
  EXPECT_TRUE(IsSuccess(Admin(GetFeature(fid::kInterruptVectorConfig, sel::kCurrent, 64))));
  EXPECT_TRUE(HasStatus(Admin(GetFeature(fid::kInterruptVectorConfig, sel::kCurrent, 65)), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(HasStatus(Admin(SetFeature(fid::kInterruptVectorConfig, 65)), kGen, sc::kInvalidField, true));
  // A controller reset returns it to the default.
  dev_->Disable();
  ASSERT_TRUE(dev_->Enable());
  io_vec = Admin(GetFeature(fid::kInterruptVectorConfig, sel::kCurrent, 5));
  ASSERT_TRUE(IsSuccess(io_vec));
  EXPECT_EQ(io_vec->cdw0, 5u);
}

TEST_F(FeaturesTest, HostBehaviorSupportIs512BytesAndStoresAcre) {
  DmaMemory::Buffer buf;
  ASSERT_TRUE(IsSuccess(AdminData(GetFeature(fid::kHostBehaviorSupport), buf)));
  for (uint32_t i = 0; i < kHostBehaviorSupportBytes; ++i) ASSERT_EQ(buf.ptr[i], 0) << "byte " << i;
  EXPECT_EQ(buf.ptr[kHostBehaviorSupportBytes], 0xA5) << "exactly 512 bytes transferred";

  DmaMemory::Buffer in;
  Sqe set = SetFeature(fid::kHostBehaviorSupport, 0);
  in = dev_->mem().Alloc(4096);
  std::memset(in.ptr, 0, 4096);
  in.ptr[0] = 1;  // ACRE
  set.prp1 = in.iova;
  ASSERT_TRUE(IsSuccess(Admin(set)));
  ASSERT_TRUE(IsSuccess(AdminData(GetFeature(fid::kHostBehaviorSupport), buf)));
  EXPECT_EQ(buf.ptr[0], 1);
  DmaMemory::Buffer dflt;
  ASSERT_TRUE(IsSuccess(AdminData(GetFeature(fid::kHostBehaviorSupport, sel::kDefault), dflt)));
  EXPECT_EQ(dflt.ptr[0], 0);
  auto caps = Admin(GetFeature(fid::kHostBehaviorSupport, sel::kSupportedCapabilities));
  ASSERT_TRUE(IsSuccess(caps));
  EXPECT_EQ(caps->cdw0, kFeatureCapChangeable);

  in.ptr[0] = 2;  // reserved value
  EXPECT_TRUE(HasStatus(Admin(set), kGen, sc::kInvalidField, true));
  ASSERT_TRUE(IsSuccess(AdminData(GetFeature(fid::kHostBehaviorSupport), buf)));
  EXPECT_EQ(buf.ptr[0], 1) << "a refused Set changes nothing";
}

TEST_F(FeaturesTest, KeepAliveTimerReportsTheKatoInForce) {
  auto off = Admin(GetFeature(fid::kKeepAliveTimer));
  ASSERT_TRUE(IsSuccess(off));
  EXPECT_EQ(off->cdw0, 0u) << "PCIe: no keep-alive until the host sets KATO";
  // KAS = 10 (100 ms units): KATO is rounded up to whole seconds.
  ASSERT_TRUE(IsSuccess(Admin(SetFeature(fid::kKeepAliveTimer, 2500))));
  auto cur = Admin(GetFeature(fid::kKeepAliveTimer));
  ASSERT_TRUE(IsSuccess(cur));
  EXPECT_EQ(cur->cdw0, 3000u);
  ASSERT_TRUE(IsSuccess(Admin(SetFeature(fid::kKeepAliveTimer, 10000))));
  cur = Admin(GetFeature(fid::kKeepAliveTimer));
  ASSERT_TRUE(IsSuccess(cur));
  EXPECT_EQ(cur->cdw0, 10000u);
  ASSERT_TRUE(IsSuccess(Admin(SetFeature(fid::kKeepAliveTimer, 0))));
  cur = Admin(GetFeature(fid::kKeepAliveTimer));
  ASSERT_TRUE(IsSuccess(cur));
  EXPECT_EQ(cur->cdw0, 0u);
}

// Keep Alive commands within KATO keep the controller alive; none for
// longer than KATO is a fatal controller status, logged as Keep Alive Timer
// Expired. (Timing: Keep Alive every 200 ms against a 1 s KATO, so only a
// stall of 800 ms on this machine could break the first half.)
TEST_F(FeaturesTest, KeepAliveTimerExpiryIsFatal) {
  ASSERT_TRUE(IsSuccess(Admin(SetFeature(fid::kKeepAliveTimer, 1000))));
  for (int i = 0; i < 10; ++i) {
    std::this_thread::sleep_for(200ms);
    ASSERT_TRUE(IsSuccess(Admin(AdminCmd(admin::kKeepAlive)))) << i;
  }
  EXPECT_EQ(dev_->Csts().cfs(), 0u) << "Keep Alive every 200 ms against a 1 s KATO";
  ASSERT_TRUE(WaitCfs(true, 10s)) << "no Keep Alive for longer than KATO must be fatal";
  // Nothing is processed any more; a reset brings the controller back with
  // the timer off.
  dev_->Disable();
  ASSERT_TRUE(dev_->Enable());
  EXPECT_EQ(dev_->Csts().cfs(), 0u);
  DmaMemory::Buffer log;
  Sqe get_log = AdminCmd(admin::kGetLogPage, 0xFFFFFFFF);
  get_log.cdw10 = lid::kErrorInformation | ((sizeof(ErrorInformationEntry) / 4 - 1) << 16);
  ASSERT_TRUE(IsSuccess(AdminData(get_log, log)));
  ErrorInformationEntry e;
  std::memcpy(&e, log.ptr, sizeof(e));
  EXPECT_EQ((e.status >> 1) & 0xFF, sc::kKeepAliveTimerExpired);
  EXPECT_EQ((e.status >> 9) & 0x7, sct::kGeneric);
  EXPECT_EQ(e.cid, 0xFFFF);
  auto cur = Admin(GetFeature(fid::kKeepAliveTimer));
  ASSERT_TRUE(IsSuccess(cur));
  EXPECT_EQ(cur->cdw0, 0u);
}

TEST_F(FeaturesTest, KeepAliveNotEnforcedWhenTurnedOff) {
  emu::EmulatorOptions options;
  options.enforce_keep_alive = false;
  StartWith(options);
  ASSERT_TRUE(IsSuccess(Admin(SetFeature(fid::kKeepAliveTimer, 1000))));
  EXPECT_FALSE(WaitCfs(true, 2500ms));
  EXPECT_TRUE(IsSuccess(Admin(AdminCmd(admin::kKeepAlive))));
}

}  // namespace
}  // namespace nvmux::conformance
