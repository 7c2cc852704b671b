// CONFORMANCE.md "Admin commands" and the Identify field lists.
#include <cstring>
#include <thread>

#include "test/conformance/harness.h"

namespace nvmux::conformance {
namespace {

using namespace nvmux::spec;

class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override { StartWith({}); }
  void StartWith(emu::EmulatorOptions options) {
    dev_ = std::make_unique<TestDevice>(std::move(options));
    dev_->Start();
    ASSERT_TRUE(dev_->Enable());
  }
  std::optional<Cqe> Admin(Sqe sqe) { return dev_->Admin(sqe); }
  // Admin command that reads `len` bytes into a fresh buffer.
  std::optional<Cqe> AdminRead(Sqe sqe, DmaMemory::Buffer& buf, uint64_t len = 4096) {
    buf = dev_->mem().Alloc(len);
    std::memset(buf.ptr, 0xA5, len);
    sqe.prp1 = buf.iova;
    if (len > 4096) {
      // Enough for 2 pages; larger transfers use a list.
      sqe.prp2 = buf.iova + 4096;
    }
    return Admin(sqe);
  }
  std::unique_ptr<TestDevice> dev_;
};

constexpr uint8_t kCs = sct::kCommandSpecific;
constexpr uint8_t kGen = sct::kGeneric;

// --- Dispatch ---

TEST_F(AdminTest, UnsupportedOpcode) {
  EXPECT_TRUE(HasStatus(Admin(AdminCmd(0x7F)), kGen, sc::kInvalidOpcode, true));
  EXPECT_TRUE(HasStatus(Admin(AdminCmd(admin::kFirmwareCommit)), kGen, sc::kInvalidOpcode, true));
  EXPECT_TRUE(HasStatus(Admin(AdminCmd(admin::kSecuritySend)), kGen, sc::kInvalidOpcode, true));
}

TEST_F(AdminTest, PsdtNotPrpIsInvalidField) {
  Sqe sqe = AdminCmd(admin::kKeepAlive);
  sqe.set_psdt(1);
  EXPECT_TRUE(HasStatus(Admin(sqe), kGen, sc::kInvalidField, true));
}

TEST_F(AdminTest, FusedAdminIsInvalidField) {
  Sqe sqe = AdminCmd(admin::kKeepAlive);
  sqe.set_fuse(kFuseFirst);
  EXPECT_TRUE(HasStatus(Admin(sqe), kGen, sc::kInvalidField));
}

TEST_F(AdminTest, KeepAliveAccepted) { EXPECT_TRUE(IsSuccess(Admin(AdminCmd(admin::kKeepAlive)))); }

// --- Create / Delete I/O CQ ---

TEST_F(AdminTest, CreateCqChecksInOrder) {
  DmaMemory::Buffer mem = dev_->mem().Alloc(64 * 16);
  const uint16_t mqes = Cap{dev_->Reg64(kRegCap)}.mqes();
  // Invalid queue identifier: 0, above the allocated count; beats a bad size.
  EXPECT_TRUE(HasStatus(Admin(CreateCq(0, 16, mem.iova)), kCs, sc::kInvalidQueueIdentifier, true));
  EXPECT_TRUE(HasStatus(Admin(CreateCq(65, 16, mem.iova)), kCs, sc::kInvalidQueueIdentifier, true));
  EXPECT_TRUE(HasStatus(Admin(CreateCq(0, 1, mem.iova + 8)), kCs, sc::kInvalidQueueIdentifier, true));
  // Size 1 (QSIZE 0) or above MQES + 1.
  EXPECT_TRUE(HasStatus(Admin(CreateCq(1, 1, mem.iova)), kCs, sc::kInvalidQueueSize, true));
  EXPECT_TRUE(HasStatus(Admin(CreateCq(1, static_cast<uint16_t>(mqes + 2), mem.iova)), kCs,
                        sc::kInvalidQueueSize, true));
  // Size beats alignment; alignment beats the interrupt vector; vector beats PC.
  EXPECT_TRUE(HasStatus(Admin(CreateCq(1, 1, mem.iova + 8)), kCs, sc::kInvalidQueueSize, true));
  EXPECT_TRUE(HasStatus(Admin(CreateCq(1, 16, mem.iova + 512, true, true, 4000)), kGen, sc::kPrpOffsetInvalid, true));
  EXPECT_TRUE(HasStatus(Admin(CreateCq(1, 16, mem.iova, false, true, 4000)), kCs, sc::kInvalidInterruptVector, true));
  EXPECT_TRUE(HasStatus(Admin(CreateCq(1, 16, mem.iova, false)), kGen, sc::kInvalidField, true));
  // Success, then in use.
  EXPECT_TRUE(IsSuccess(Admin(CreateCq(1, 16, mem.iova))));
  EXPECT_TRUE(HasStatus(Admin(CreateCq(1, 16, mem.iova)), kCs, sc::kInvalidQueueIdentifier, true));
}

TEST_F(AdminTest, CreateCqRequiresIoEntrySizes) {
  dev_->Disable();
  Cc cc;
  cc.set_en(1);  // IOSQES = IOCQES = 0
  ASSERT_TRUE(dev_->Enable(32, 32, cc.raw));
  DmaMemory::Buffer mem = dev_->mem().Alloc(64 * 16);
  EXPECT_TRUE(HasStatus(Admin(CreateCq(1, 16, mem.iova)), kCs, sc::kInvalidQueueSize, true));
}

TEST_F(AdminTest, DeleteCq) {
  DmaMemory::Buffer cq = dev_->mem().Alloc(16 * 16);
  DmaMemory::Buffer sq = dev_->mem().Alloc(16 * 64);
  Sqe del = AdminCmd(admin::kDeleteIoCq);
  del.cdw10 = 0;
  EXPECT_TRUE(HasStatus(Admin(del), kCs, sc::kInvalidQueueIdentifier, true));
  del.cdw10 = 3;
  EXPECT_TRUE(HasStatus(Admin(del), kCs, sc::kInvalidQueueIdentifier, true));
  ASSERT_TRUE(IsSuccess(Admin(CreateCq(3, 16, cq.iova))));
  ASSERT_TRUE(IsSuccess(Admin(CreateSq(3, 16, sq.iova, 3))));
  EXPECT_TRUE(HasStatus(Admin(del), kCs, sc::kInvalidQueueDeletion));
  Sqe del_sq = AdminCmd(admin::kDeleteIoSq);
  del_sq.cdw10 = 3;
  ASSERT_TRUE(IsSuccess(Admin(del_sq)));
  EXPECT_TRUE(IsSuccess(Admin(del)));
  EXPECT_TRUE(HasStatus(Admin(del), kCs, sc::kInvalidQueueIdentifier, true));
}

// --- Create / Delete I/O SQ ---

TEST_F(AdminTest, CreateSqChecksInOrder) {
  DmaMemory::Buffer cq = dev_->mem().Alloc(16 * 16);
  DmaMemory::Buffer sq = dev_->mem().Alloc(64 * 64);
  const uint16_t mqes = Cap{dev_->Reg64(kRegCap)}.mqes();
  // Restrict the allocation so "above NCQR/NSQR" is testable.
  Sqe noq = AdminCmd(admin::kSetFeatures);
  noq.cdw10 = fid::kNumberOfQueues;
  noq.cdw11 = (3u << 16) | 3u;  // 4 SQs, 4 CQs
  auto noq_cqe = Admin(noq);
  ASSERT_TRUE(IsSuccess(noq_cqe));
  EXPECT_EQ(noq_cqe->cdw0, (3u << 16) | 3u);

  // CQID 0 or above NCQR: invalid queue identifier (before anything else).
  EXPECT_TRUE(HasStatus(Admin(CreateSq(0, 1, sq.iova + 8, 0)), kCs, sc::kInvalidQueueIdentifier, true));
  EXPECT_TRUE(HasStatus(Admin(CreateSq(1, 16, sq.iova, 5)), kCs, sc::kInvalidQueueIdentifier, true));
  // CQID in range but not created: completion queue invalid (beats a bad SQID).
  EXPECT_TRUE(HasStatus(Admin(CreateSq(0, 16, sq.iova, 2)), kCs, sc::kCompletionQueueInvalid, true));
  ASSERT_TRUE(IsSuccess(Admin(CreateCq(2, 16, cq.iova))));
  // SQID 0 or above NSQR.
  EXPECT_TRUE(HasStatus(Admin(CreateSq(0, 16, sq.iova, 2)), kCs, sc::kInvalidQueueIdentifier, true));
  EXPECT_TRUE(HasStatus(Admin(CreateSq(5, 1, sq.iova, 2)), kCs, sc::kInvalidQueueIdentifier, true));
  // QSIZE 0 or above MQES (beats alignment).
  EXPECT_TRUE(HasStatus(Admin(CreateSq(1, 1, sq.iova + 8, 2)), kCs, sc::kInvalidQueueSize, true));
  EXPECT_TRUE(HasStatus(Admin(CreateSq(1, static_cast<uint16_t>(mqes + 2), sq.iova, 2)), kCs,
                        sc::kInvalidQueueSize, true));
  // Misaligned PRP1 (beats PC).
  EXPECT_TRUE(HasStatus(Admin(CreateSq(1, 16, sq.iova + 64, 2, false)), kGen, sc::kPrpOffsetInvalid, true));
  EXPECT_TRUE(HasStatus(Admin(CreateSq(1, 16, sq.iova, 2, false)), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(IsSuccess(Admin(CreateSq(1, 16, sq.iova, 2))));
  // In use.
  EXPECT_TRUE(HasStatus(Admin(CreateSq(1, 16, sq.iova, 2)), kCs, sc::kInvalidQueueIdentifier, true));
  // Several SQs may share one CQ.
  EXPECT_TRUE(IsSuccess(Admin(CreateSq(4, 16, sq.iova + 4096, 2))));
}

TEST_F(AdminTest, DeleteSq) {
  Sqe del = AdminCmd(admin::kDeleteIoSq);
  del.cdw10 = 0;
  EXPECT_TRUE(HasStatus(Admin(del), kCs, sc::kInvalidQueueIdentifier, true));
  del.cdw10 = 1;
  EXPECT_TRUE(HasStatus(Admin(del), kCs, sc::kInvalidQueueIdentifier, true));
  del.cdw10 = 0xFFFF;
  EXPECT_TRUE(HasStatus(Admin(del), kCs, sc::kInvalidQueueIdentifier, true));
  dev_->CreateIoQueuePair(1, 16);
  del.cdw10 = 1;
  EXPECT_TRUE(IsSuccess(Admin(del)));
  EXPECT_TRUE(HasStatus(Admin(del), kCs, sc::kInvalidQueueIdentifier, true));
}

// --- Identify ---

TEST_F(AdminTest, IdentifyController) {
  DmaMemory::Buffer buf;
  Sqe sqe = AdminCmd(admin::kIdentify);
  sqe.cdw10 = cns::kController;
  ASSERT_TRUE(IsSuccess(AdminRead(sqe, buf)));
  IdentifyController id;
  std::memcpy(&id, buf.ptr, sizeof(id));
  EXPECT_NE(id.vid, 0);
  EXPECT_EQ(id.ssvid, id.vid);
  EXPECT_EQ(std::string(id.sn, 12), "NVMUXEMU0001");
  EXPECT_EQ(std::string(id.mn, 5), "nvmux");
  EXPECT_NE(id.fr[0], ' ');
  EXPECT_EQ(id.ver, 0x00010400u);
  EXPECT_EQ(id.cntrltype, kCntrltypeIo);
  EXPECT_EQ(id.mdts, 5);
  EXPECT_EQ(id.sqes, 0x66);
  EXPECT_EQ(id.cqes, 0x44);
  EXPECT_EQ(id.nn, 32u);
  EXPECT_EQ(id.aerl, 3);
  EXPECT_EQ(id.lpa & (kLpaSmartPerNamespace | kLpaCommandEffects), kLpaSmartPerNamespace | kLpaCommandEffects);
  EXPECT_EQ(id.oncs & (kOncsCompare | kOncsDsm | kOncsWriteZeroes | kOncsVerify | kOncsWriteUncorrectable),
            kOncsCompare | kOncsDsm | kOncsWriteZeroes | kOncsVerify | kOncsWriteUncorrectable);
  EXPECT_EQ(id.oacs & (kOacsNsMgmt | kOacsFormat | kOacsDbcs), kOacsNsMgmt | kOacsFormat | kOacsDbcs);
  EXPECT_EQ(id.cntlid, 1);
  EXPECT_NE(id.tnvmcap[0] | id.tnvmcap[4] | id.tnvmcap[5], 0);
  EXPECT_EQ(id.vwc & 1, 1);
  EXPECT_NE(id.kas, 0);
  EXPECT_EQ(std::string(id.subnqn).rfind("nqn.", 0), 0u);
  EXPECT_NE(id.psd[0].mp, 0);
  EXPECT_EQ(id.npss, 0);
}

TEST_F(AdminTest, IdentifyMdtsFollowsOption) {
  emu::EmulatorOptions options;
  options.mdts = 2;
  StartWith(options);
  DmaMemory::Buffer buf;
  Sqe sqe = AdminCmd(admin::kIdentify);
  sqe.cdw10 = cns::kController;
  ASSERT_TRUE(IsSuccess(AdminRead(sqe, buf)));
  EXPECT_EQ(reinterpret_cast<IdentifyController*>(buf.ptr)->mdts, 2);
}

TEST_F(AdminTest, IdentifyNamespace) {
  emu::EmulatorOptions options;
  options.namespaces.push_back({64ull << 20, 512, 0, false});
  options.namespaces.push_back({32ull << 20, 4096, 8, false});
  StartWith(options);
  DmaMemory::Buffer buf;
  Sqe sqe = AdminCmd(admin::kIdentify, 1);
  sqe.cdw10 = cns::kNamespace;
  ASSERT_TRUE(IsSuccess(AdminRead(sqe, buf)));
  IdentifyNamespace id;
  std::memcpy(&id, buf.ptr, sizeof(id));
  EXPECT_EQ(id.nsze, (64ull << 20) / 512);
  EXPECT_EQ(id.ncap, id.nsze);
  EXPECT_EQ(id.nlbaf, 7);
  const LbaFormat& f = id.lbaf[id.flbas & 0xF];
  EXPECT_EQ(f.lbads, 9);
  EXPECT_EQ(f.ms, 0);
  EXPECT_EQ(id.flbas & kFlbasExtended, 0);
  EXPECT_EQ(id.dlfeat & 0x7, kDlfeatReadZeroes);
  EXPECT_NE(id.noiob, 0);
  bool has512 = false, has4k = false;
  for (int i = 0; i <= id.nlbaf; ++i) {
    has512 |= id.lbaf[i].lbads == 9;
    has4k |= id.lbaf[i].lbads == 12;
  }
  EXPECT_TRUE(has512 && has4k);
  EXPECT_NE(std::memcmp(id.nguid, std::string(16, '\0').data(), 16), 0);

  sqe.nsid = 2;
  ASSERT_TRUE(IsSuccess(AdminRead(sqe, buf)));
  std::memcpy(&id, buf.ptr, sizeof(id));
  EXPECT_EQ(id.nsze, (32ull << 20) / 4096);
  EXPECT_EQ(id.lbaf[id.flbas & 0xF].lbads, 12);
  EXPECT_EQ(id.lbaf[id.flbas & 0xF].ms, 8);
  EXPECT_NE(id.mc & kMcSeparate, 0);
}

TEST_F(AdminTest, IdentifyNamespaceIdErrors) {
  DmaMemory::Buffer buf;
  for (uint8_t c : {cns::kNamespace, cns::kNamespaceIdDescriptors}) {
    for (uint32_t nsid : {0u, 0xFFFFFFFFu, 33u, 1000u}) {
      // CNS 00h with FFFFFFFFh is the common capabilities (OACS.NMS is
      // set): FeaturesTest.IdentifyNamespaceBroadcastReturnsCommonCapabilities.
      if (c == cns::kNamespace && nsid == 0xFFFFFFFFu) continue;
      Sqe sqe = AdminCmd(admin::kIdentify, nsid);
      sqe.cdw10 = c;
      EXPECT_TRUE(HasStatus(AdminRead(sqe, buf), kGen, sc::kInvalidNamespaceOrFormat, true))
          << "cns " << int{c} << " nsid " << nsid;
    }
  }
  Sqe list = AdminCmd(admin::kIdentify, 0xFFFFFFFE);
  list.cdw10 = cns::kActiveNamespaceList;
  EXPECT_TRUE(HasStatus(AdminRead(list, buf), kGen, sc::kInvalidNamespaceOrFormat, true));
}

TEST_F(AdminTest, IdentifyInactiveNamespaceIsZeroFilled) {
  DmaMemory::Buffer buf;
  Sqe sqe = AdminCmd(admin::kIdentify, 7);
  sqe.cdw10 = cns::kNamespace;
  ASSERT_TRUE(IsSuccess(AdminRead(sqe, buf)));
  for (size_t i = 0; i < 4096; ++i) ASSERT_EQ(buf.ptr[i], 0) << i;
}

TEST_F(AdminTest, IdentifyActiveNamespaceList) {
  emu::EmulatorOptions options;
  for (int i = 0; i < 3; ++i) options.namespaces.push_back({1ull << 20, 512, 0, false});
  StartWith(options);
  DmaMemory::Buffer buf;
  Sqe sqe = AdminCmd(admin::kIdentify, 0);
  sqe.cdw10 = cns::kActiveNamespaceList;
  ASSERT_TRUE(IsSuccess(AdminRead(sqe, buf)));
  const auto* ids = reinterpret_cast<const uint32_t*>(buf.ptr);
  EXPECT_EQ(ids[0], 1u);
  EXPECT_EQ(ids[1], 2u);
  EXPECT_EQ(ids[2], 3u);
  EXPECT_EQ(ids[3], 0u);
  sqe.nsid = 2;
  ASSERT_TRUE(IsSuccess(AdminRead(sqe, buf)));
  ids = reinterpret_cast<const uint32_t*>(buf.ptr);
  EXPECT_EQ(ids[0], 3u);
  EXPECT_EQ(ids[1], 0u);
}

TEST_F(AdminTest, IdentifyNamespaceIdDescriptors) {
  DmaMemory::Buffer buf;
  Sqe sqe = AdminCmd(admin::kIdentify, 1);
  sqe.cdw10 = cns::kNamespaceIdDescriptors;
  ASSERT_TRUE(IsSuccess(AdminRead(sqe, buf)));
  bool nguid = false, uuid = false;
  size_t at = 0;
  while (at + 4 <= 4096 && buf.ptr[at] != 0) {
    uint8_t type = buf.ptr[at];
    uint8_t len = buf.ptr[at + 1];
    nguid |= type == kNidtNguid && len == 16;
    uuid |= type == kNidtUuid && len == 16;
    at += 4 + len;
  }
  EXPECT_TRUE(nguid);
  EXPECT_TRUE(uuid);
}

TEST_F(AdminTest, IdentifyOtherCnsIsInvalidField) {
  DmaMemory::Buffer buf;
  for (uint32_t c : {0x04u, 0x05u, 0x14u, 0x1Fu, 0xFFu}) {
    Sqe sqe = AdminCmd(admin::kIdentify, 1);
    sqe.cdw10 = c;
    EXPECT_TRUE(HasStatus(AdminRead(sqe, buf), kGen, sc::kInvalidField, true)) << c;
  }
}

TEST_F(AdminTest, IdentifyToUnmappedBufferIsDataTransferError) {
  Sqe sqe = AdminCmd(admin::kIdentify);
  sqe.cdw10 = cns::kController;
  sqe.prp1 = 0x6000'0000'0000ull;
  EXPECT_TRUE(HasStatus(Admin(sqe), kGen, sc::kDataTransferError));
}

// --- Abort and Asynchronous Event Request ---

TEST_F(AdminTest, AbortBadSqid) {
  Sqe sqe = AdminCmd(admin::kAbort);
  sqe.cdw10 = 5 | (9u << 16);
  EXPECT_TRUE(HasStatus(Admin(sqe), kGen, sc::kInvalidField, true));
}

TEST_F(AdminTest, AbortOfCompletedCommandReportsNotAborted) {
  dev_->CreateIoQueuePair(1, 16);
  Sqe sqe = AdminCmd(admin::kAbort);
  sqe.cdw10 = 1 | (1234u << 16);
  auto cqe = Admin(sqe);
  ASSERT_TRUE(IsSuccess(cqe));
  EXPECT_EQ(cqe->cdw0 & 1, 1u);
}

TEST_F(AdminTest, AbortOfOutstandingAer) {
  Sqe aer = AdminCmd(admin::kAsyncEventRequest);
  aer.cid = 500;
  dev_->Submit(dev_->sq(0), aer);
  Sqe abort = AdminCmd(admin::kAbort);
  abort.cid = 501;
  abort.cdw10 = 0 | (500u << 16);
  dev_->Submit(dev_->sq(0), abort);
  auto first = dev_->WaitCqe(dev_->cq(0));
  auto second = dev_->WaitCqe(dev_->cq(0));
  ASSERT_TRUE(first && second);
  const Cqe& aer_cqe = first->cid == 500 ? *first : *second;
  const Cqe& abort_cqe = first->cid == 500 ? *second : *first;
  EXPECT_EQ(aer_cqe.cid, 500);
  EXPECT_TRUE(HasStatus(aer_cqe, kGen, sc::kAbortRequested));
  EXPECT_EQ(abort_cqe.cid, 501);
  EXPECT_TRUE(IsSuccess(abort_cqe));
  EXPECT_EQ(abort_cqe.cdw0 & 1, 0u);
}

TEST_F(AdminTest, AerLimit) {
  for (uint16_t i = 0; i < 4; ++i) {  // AERL + 1
    Sqe aer = AdminCmd(admin::kAsyncEventRequest);
    aer.cid = static_cast<uint16_t>(600 + i);
    dev_->Submit(dev_->sq(0), aer);
  }
  Sqe extra = AdminCmd(admin::kAsyncEventRequest);
  extra.cid = 700;
  dev_->Submit(dev_->sq(0), extra);
  auto cqe = dev_->WaitCqe(dev_->cq(0));
  ASSERT_TRUE(cqe);
  EXPECT_EQ(cqe->cid, 700);
  EXPECT_TRUE(HasStatus(cqe, kCs, sc::kAsyncEventRequestLimitExceeded));
  EXPECT_FALSE(dev_->WaitCqe(dev_->cq(0), std::chrono::milliseconds(30)));
}

TEST_F(AdminTest, EventTypeMaskedUntilLogReadWithRaeClear) {
  auto submit_aer = [&](uint16_t cid) {
    Sqe aer = AdminCmd(admin::kAsyncEventRequest);
    aer.cid = cid;
    dev_->Submit(dev_->sq(0), aer);
  };
  submit_aer(800);
  submit_aer(801);
  dev_->WriteDoorbell(2 * 20, 1);  // nonexistent SQ 20
  auto first = dev_->WaitCqe(dev_->cq(0));
  ASSERT_TRUE(IsSuccess(first));
  EXPECT_EQ(first->cid, 800);
  // A second error event stays pending while the type is masked.
  dev_->WriteDoorbell(2 * 21, 1);
  EXPECT_FALSE(dev_->WaitCqe(dev_->cq(0), std::chrono::milliseconds(80)));
  // Reading the error log with RAE=1 keeps the mask.
  DmaMemory::Buffer buf;
  Sqe log = AdminCmd(admin::kGetLogPage);
  log.cdw10 = lid::kErrorInformation | (1u << 15) | ((64u * 64 / 4 - 1) << 16);
  log.cid = 802;
  ASSERT_TRUE(IsSuccess(AdminRead(log, buf, 4096)));
  EXPECT_FALSE(dev_->WaitCqe(dev_->cq(0), std::chrono::milliseconds(30)));
  // RAE=0 re-arms: the pending event completes the outstanding AER.
  log.cdw10 &= ~(1u << 15);
  log.cid = 803;
  dev_->Submit(dev_->sq(0), [&] {
    buf = dev_->mem().Alloc(4096);
    log.prp1 = buf.iova;
    return log;
  }());
  auto a = dev_->WaitCqe(dev_->cq(0));
  auto b = dev_->WaitCqe(dev_->cq(0));
  ASSERT_TRUE(a && b);
  const Cqe& aer = a->cid == 801 ? *a : *b;
  EXPECT_EQ(aer.cid, 801);
  EXPECT_EQ(aer.cdw0 & 0x7, aer::kTypeError);
}

// --- Features ---

Sqe GetFeature(uint8_t fid, uint8_t sel = 0, uint32_t cdw11 = 0) {
  Sqe sqe = AdminCmd(admin::kGetFeatures);
  sqe.cdw10 = fid | (static_cast<uint32_t>(sel) << 8);
  sqe.cdw11 = cdw11;
  return sqe;
}

Sqe SetFeature(uint8_t fid, uint32_t value, bool save = false) {
  Sqe sqe = AdminCmd(admin::kSetFeatures);
  sqe.cdw10 = fid | (save ? 1u << 31 : 0u);
  sqe.cdw11 = value;
  return sqe;
}

TEST_F(AdminTest, FeaturesUnknownFidAndReservedSel) {
  EXPECT_TRUE(HasStatus(Admin(GetFeature(0x77)), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(HasStatus(Admin(SetFeature(0x77, 0)), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(HasStatus(Admin(GetFeature(fid::kArbitration, 4)), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(HasStatus(Admin(GetFeature(fid::kArbitration, 7)), kGen, sc::kInvalidField, true));
}

TEST_F(AdminTest, FeaturesSaveAndChangeability) {
  EXPECT_TRUE(HasStatus(Admin(SetFeature(fid::kArbitration, 1, true)), kCs, sc::kFeatureIdNotSaveable, true));
  EXPECT_TRUE(HasStatus(Admin(SetFeature(fid::kWriteAtomicityNormal, 1)), kCs, sc::kFeatureNotChangeable, true));
  auto caps = Admin(GetFeature(fid::kArbitration, sel::kSupportedCapabilities));
  ASSERT_TRUE(IsSuccess(caps));
  EXPECT_EQ(caps->cdw0, kFeatureCapChangeable);
  auto fixed = Admin(GetFeature(fid::kWriteAtomicityNormal, sel::kSupportedCapabilities));
  ASSERT_TRUE(IsSuccess(fixed));
  EXPECT_EQ(fixed->cdw0, 0u);
}

TEST_F(AdminTest, FeaturesCurrentDefaultSaved) {
  for (auto [f, value] : {std::pair<uint8_t, uint32_t>{fid::kArbitration, 0x03020103},
                          {fid::kInterruptCoalescing, 0x0A05},
                          {fid::kAsyncEventConfig, 0x1F},
                          {fid::kKeepAliveTimer, 15000},
                          {fid::kVolatileWriteCache, 0},
                          {fid::kErrorRecovery, 100}}) {
    ASSERT_TRUE(IsSuccess(Admin(SetFeature(f, value)))) << int{f};
    auto cur = Admin(GetFeature(f, sel::kCurrent));
    ASSERT_TRUE(IsSuccess(cur));
    EXPECT_EQ(cur->cdw0, value) << int{f};
    auto def = Admin(GetFeature(f, sel::kDefault));
    auto saved = Admin(GetFeature(f, sel::kSaved));
    ASSERT_TRUE(IsSuccess(def) && IsSuccess(saved));
    EXPECT_EQ(def->cdw0, saved->cdw0) << int{f};
  }
}

TEST_F(AdminTest, FeaturePowerManagementAndErrorRecoveryLimits) {
  EXPECT_TRUE(IsSuccess(Admin(SetFeature(fid::kPowerManagement, 0))));
  EXPECT_TRUE(HasStatus(Admin(SetFeature(fid::kPowerManagement, 1)), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(HasStatus(Admin(SetFeature(fid::kErrorRecovery, 1u << 16)), kGen, sc::kInvalidField, true));
}

TEST_F(AdminTest, FeatureTemperatureThreshold) {
  const uint32_t under = 1u << 20;
  ASSERT_TRUE(IsSuccess(Admin(SetFeature(fid::kTemperatureThreshold, 0x150))));
  ASSERT_TRUE(IsSuccess(Admin(SetFeature(fid::kTemperatureThreshold, under | 0x100))));
  auto over_cqe = Admin(GetFeature(fid::kTemperatureThreshold, 0, 0));
  auto under_cqe = Admin(GetFeature(fid::kTemperatureThreshold, 0, under));
  ASSERT_TRUE(IsSuccess(over_cqe) && IsSuccess(under_cqe));
  EXPECT_EQ(over_cqe->cdw0, 0x150u);
  EXPECT_EQ(under_cqe->cdw0, 0x100u);
  EXPECT_TRUE(HasStatus(Admin(SetFeature(fid::kTemperatureThreshold, 3u << 16)), kGen, sc::kInvalidField, true));
}

TEST_F(AdminTest, FeatureNumberOfQueues) {
  auto get = Admin(GetFeature(fid::kNumberOfQueues));
  ASSERT_TRUE(IsSuccess(get));
  EXPECT_EQ(get->cdw0, (63u << 16) | 63u);  // 64 of each by default
  EXPECT_TRUE(HasStatus(Admin(SetFeature(fid::kNumberOfQueues, 0xFFFF)), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(HasStatus(Admin(SetFeature(fid::kNumberOfQueues, 0xFFFFu << 16)), kGen, sc::kInvalidField, true));
  auto set = Admin(SetFeature(fid::kNumberOfQueues, (999u << 16) | 7u));
  ASSERT_TRUE(IsSuccess(set));
  EXPECT_EQ(set->cdw0, (63u << 16) | 7u);  // NCQA capped at the maximum
  dev_->CreateIoQueuePair(1, 16);
  EXPECT_TRUE(HasStatus(Admin(SetFeature(fid::kNumberOfQueues, 1)), kGen, sc::kCommandSequenceError, true));
}

TEST_F(AdminTest, FeatureTimestamp) {
  DmaMemory::Buffer data = dev_->mem().Alloc(4096);
  const uint64_t ms = 1'700'000'000'000ull;
  std::memcpy(data.ptr, &ms, 6);
  Sqe set = SetFeature(fid::kTimestamp, 0);
  set.prp1 = data.iova;
  ASSERT_TRUE(IsSuccess(Admin(set)));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  DmaMemory::Buffer out;
  auto cqe = AdminRead(GetFeature(fid::kTimestamp), out);
  ASSERT_TRUE(IsSuccess(cqe));
  uint64_t got = 0;
  std::memcpy(&got, out.ptr, 6);
  EXPECT_GE(got, ms + 15);
  EXPECT_LT(got, ms + 5000);
  EXPECT_EQ((out.ptr[6] >> 1) & 0x7, 1) << "origin: set by Set Features";
}

// --- Get Log Page ---

Sqe GetLog(uint8_t lid, uint32_t bytes, uint64_t offset = 0, uint32_t nsid = 0xFFFFFFFF, bool rae = false) {
  Sqe sqe = AdminCmd(admin::kGetLogPage, nsid);
  const uint32_t numd = bytes / 4 - 1;
  sqe.cdw10 = lid | (rae ? 1u << 15 : 0u) | ((numd & 0xFFFF) << 16);
  sqe.cdw11 = numd >> 16;
  sqe.cdw12 = static_cast<uint32_t>(offset);
  sqe.cdw13 = static_cast<uint32_t>(offset >> 32);
  return sqe;
}

TEST_F(AdminTest, LogPageOffsetRules) {
  DmaMemory::Buffer buf;
  EXPECT_TRUE(HasStatus(AdminRead(GetLog(lid::kSmartHealth, 512, 2), buf), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(HasStatus(AdminRead(GetLog(lid::kSmartHealth, 512, 512), buf), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(HasStatus(AdminRead(GetLog(lid::kSmartHealth, 4, 1ull << 40), buf), kGen, sc::kInvalidField, true));
  // A valid offset returns the tail of the page.
  EXPECT_TRUE(IsSuccess(AdminRead(GetLog(lid::kSmartHealth, 8, 504), buf)));
}

TEST_F(AdminTest, LogPageUnknownLid) {
  DmaMemory::Buffer buf;
  EXPECT_TRUE(HasStatus(AdminRead(GetLog(0x70, 512), buf), kCs, sc::kInvalidLogPage, true));
}

TEST_F(AdminTest, LogPageLargerThanMdtsIsInvalidField) {
  DmaMemory::Buffer buf;
  Sqe sqe = GetLog(lid::kErrorInformation, 4096);
  const uint32_t numd = (256u * 1024) / 4 - 1;  // 256 KiB > 128 KiB
  sqe.cdw10 = (sqe.cdw10 & 0xFFFF) | (numd << 16);
  sqe.cdw11 = numd >> 16;
  EXPECT_TRUE(HasStatus(AdminRead(sqe, buf), kGen, sc::kInvalidField, true));
}

TEST_F(AdminTest, ErrorLogRecordsFailedCommands) {
  Sqe bad = AdminCmd(0x7F);
  bad.cid = 0x4242;
  ASSERT_TRUE(HasStatus(Admin(bad), kGen, sc::kInvalidOpcode));
  DmaMemory::Buffer buf;
  ASSERT_TRUE(IsSuccess(AdminRead(GetLog(lid::kErrorInformation, 4096), buf)));
  ErrorInformationEntry e;
  std::memcpy(&e, buf.ptr, sizeof(e));
  EXPECT_GE(e.error_count, 1u);
  EXPECT_EQ(e.cid, 0x4242);
  EXPECT_EQ(e.sqid, 0);
  EXPECT_EQ((e.status >> 1) & 0xFF, sc::kInvalidOpcode);
}

TEST_F(AdminTest, SmartLogNamespaceRules) {
  DmaMemory::Buffer buf;
  EXPECT_TRUE(IsSuccess(AdminRead(GetLog(lid::kSmartHealth, 512, 0, 0xFFFFFFFF), buf)));
  SmartHealthLog log;
  std::memcpy(&log, buf.ptr, sizeof(log));
  EXPECT_EQ(log.avail_spare, 100);
  EXPECT_NE(log.composite_temperature[0] | log.composite_temperature[1], 0);
  EXPECT_TRUE(IsSuccess(AdminRead(GetLog(lid::kSmartHealth, 512, 0, 1), buf)));
  EXPECT_TRUE(HasStatus(AdminRead(GetLog(lid::kSmartHealth, 512, 0, 9), buf), kGen, sc::kInvalidNamespaceOrFormat, true));
}

TEST_F(AdminTest, SmartLogCountsIo) {
  dev_->CreateIoQueuePair(1, 16);
  DmaMemory::Buffer data = dev_->mem().Alloc(4096);
  for (int i = 0; i < 3; ++i) {
    Sqe w = IoCmd(nvm::kWrite, 1, 0, 8);
    w.prp1 = data.iova;
    ASSERT_TRUE(IsSuccess(dev_->Io(1, w)));
  }
  Sqe r = IoCmd(nvm::kRead, 1, 0, 8);
  r.prp1 = data.iova;
  ASSERT_TRUE(IsSuccess(dev_->Io(1, r)));
  DmaMemory::Buffer buf;
  ASSERT_TRUE(IsSuccess(AdminRead(GetLog(lid::kSmartHealth, 512), buf)));
  SmartHealthLog log;
  std::memcpy(&log, buf.ptr, sizeof(log));
  EXPECT_EQ(log.host_write_commands[0], 3);
  EXPECT_EQ(log.host_read_commands[0], 1);
  EXPECT_EQ(log.data_units_written[0], 1);  // 24 units, rounded up to 1 thousand
}

TEST_F(AdminTest, FirmwareSlotLog) {
  DmaMemory::Buffer buf;
  ASSERT_TRUE(IsSuccess(AdminRead(GetLog(lid::kFirmwareSlot, 512), buf)));
  FirmwareSlotLog log;
  std::memcpy(&log, buf.ptr, sizeof(log));
  EXPECT_EQ(log.afi & 0x7, 1);
  EXPECT_EQ(log.frs[0][0], '0');
}

TEST_F(AdminTest, ChangedNamespaceListReadsEmpty) {
  DmaMemory::Buffer buf;
  ASSERT_TRUE(IsSuccess(AdminRead(GetLog(lid::kChangedNamespaceList, 4096), buf)));
  for (int i = 0; i < 16; ++i) EXPECT_EQ(buf.ptr[i], 0);
}

TEST_F(AdminTest, CommandsSupportedAndEffectsLog) {
  DmaMemory::Buffer buf;
  ASSERT_TRUE(IsSuccess(AdminRead(GetLog(lid::kCommandsSupportedAndEffects, 4096), buf)));
  CommandsSupportedAndEffectsLog log;
  std::memcpy(&log, buf.ptr, sizeof(log));
  EXPECT_NE(log.acs[admin::kIdentify] & kEffectCsupp, 0u);
  EXPECT_NE(log.acs[admin::kCreateIoSq] & kEffectCsupp, 0u);
  EXPECT_EQ(log.acs[admin::kSecuritySend], 0u);
  EXPECT_NE(log.acs[admin::kNamespaceAttachment] & kEffectNic, 0u);
  EXPECT_NE(log.iocs[nvm::kRead] & kEffectCsupp, 0u);
  EXPECT_NE(log.iocs[nvm::kWrite] & kEffectLbcc, 0u);
  EXPECT_NE(log.iocs[nvm::kCopy] & kEffectCsupp, 0u);
  EXPECT_EQ(log.iocs[0x7F], 0u);
}

TEST_F(AdminTest, LogPageWithPrpList) {
  // 8 KiB of the commands-and-effects + zero fill: PRP1 + PRP2 as pages.
  DmaMemory::Buffer buf = dev_->mem().Alloc(8192);
  std::memset(buf.ptr, 0xEE, 8192);
  Sqe sqe = GetLog(lid::kCommandsSupportedAndEffects, 8192);
  sqe.prp1 = buf.iova;
  sqe.prp2 = buf.iova + 4096;
  ASSERT_TRUE(IsSuccess(Admin(sqe)));
  for (size_t i = 4096; i < 8192; ++i) ASSERT_EQ(buf.ptr[i], 0) << "zero fill past the log at " << i;
}

}  // namespace
}  // namespace nvmux::conformance

namespace nvmux::conformance {
namespace {

using namespace nvmux::spec;

TEST(AdminDeleteSqTest, UnfetchedCommandsCompleteAbortedBySqDeletion) {
  TestDevice dev;
  dev.Start();
  ASSERT_TRUE(dev.Enable());
  // A CQ holding one entry: the device stops fetching once it is full.
  QueueState cq;
  cq.qid = 1;
  cq.size = 2;
  cq.mem = dev.mem().Alloc(2 * 16);
  ASSERT_TRUE(IsSuccess(dev.Admin(CreateCq(1, 2, cq.mem.iova))));
  QueueState sq;
  sq.qid = 1;
  sq.size = 8;
  sq.mem = dev.mem().Alloc(8 * 64);
  ASSERT_TRUE(IsSuccess(dev.Admin(CreateSq(1, 8, sq.mem.iova, 1))));
  for (uint16_t i = 0; i < 4; ++i) {
    Sqe flush = IoCmd(nvm::kFlush, 1, 0, 1);
    flush.cid = static_cast<uint16_t>(40 + i);
    dev.Submit(sq, flush);
  }
  auto first = dev.WaitCqe(cq, std::chrono::seconds(2), /*ring=*/false);
  ASSERT_TRUE(IsSuccess(first));
  EXPECT_EQ(first->cid, 40);
  Sqe del = AdminCmd(admin::kDeleteIoSq);
  del.cdw10 = 1;
  ASSERT_TRUE(IsSuccess(dev.Admin(del)));
  dev.RingCq(cq);
  for (uint16_t i = 1; i < 4; ++i) {
    auto cqe = dev.WaitCqe(cq);
    ASSERT_TRUE(cqe) << i;
    EXPECT_EQ(cqe->cid, 40 + i);
    EXPECT_TRUE(HasStatus(cqe, sct::kGeneric, sc::kAbortedSqDeletion));
  }
}

TEST(AdminFlrTest, FunctionLevelResetThroughConfigSpace) {
  TestDevice dev;
  dev.Start();
  ASSERT_TRUE(dev.Enable());
  // PCIe capability: find it, then set Device Control bit 15.
  auto cfg = dev.client().ReadRegion(vfiouser::kPciConfigRegion, 0, 256);
  ASSERT_TRUE(cfg);
  uint8_t cap = (*cfg)[0x34];
  while (cap != 0 && (*cfg)[cap] != 0x10) cap = (*cfg)[cap + 1u];
  ASSERT_NE(cap, 0);
  ASSERT_TRUE(dev.client().WriteRegion(vfiouser::kPciConfigRegion, cap + 9u, std::vector<uint8_t>{0x80}));
  EXPECT_EQ(dev.Csts().rdy(), 0);
  EXPECT_EQ(Cc{dev.Reg32(kRegCc)}.en(), 0);
}

}  // namespace
}  // namespace nvmux::conformance
