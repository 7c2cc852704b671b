// CONFORMANCE.md: fused Compare and Write, Format NVM, Doorbell Buffer Config.
#include <atomic>
#include <cstring>
#include <thread>

#include "test/conformance/harness.h"

namespace nvmux::conformance {
namespace {

using namespace nvmux::spec;

constexpr uint8_t kGen = sct::kGeneric;
constexpr uint8_t kCs = sct::kCommandSpecific;

class OptionalFeaturesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    emu::EmulatorOptions options;
    options.namespaces.push_back({8ull << 20, 512, 0, false});
    options.namespaces.push_back({8ull << 20, 512, 0, false});
    dev_ = std::make_unique<TestDevice>(options);
    dev_->Start();
    ASSERT_TRUE(dev_->Enable());
    dev_->CreateIoQueuePair(1, 32);
  }
  std::optional<Cqe> Io(Sqe sqe) { return dev_->Io(1, sqe); }
  Sqe Rw(uint8_t opc, uint64_t slba, uint32_t nlb, const DmaMemory::Buffer& buf, uint32_t nsid = 1) {
    Sqe sqe = IoCmd(opc, nsid, slba, nlb);
    sqe.prp1 = buf.iova;
    return sqe;
  }
  // Submits two commands back to back and returns both completions by cid.
  std::pair<std::optional<Cqe>, std::optional<Cqe>> SubmitPair(Sqe a, Sqe b) {
    a.cid = 1001;
    b.cid = 1002;
    dev_->Submit(dev_->sq(1), a, false);
    dev_->Submit(dev_->sq(1), b, true);
    auto x = dev_->WaitCqe(dev_->cq(1));
    auto y = dev_->WaitCqe(dev_->cq(1));
    if (x && y && x->cid == 1002) std::swap(x, y);
    return {x, y};
  }
  std::unique_ptr<TestDevice> dev_;
};

// --- Fused Compare and Write ---

TEST_F(OptionalFeaturesTest, FusedCompareAndWriteSucceeds) {
  DmaMemory::Buffer old_data = dev_->mem().Alloc(4096);
  DmaMemory::Buffer new_data = dev_->mem().Alloc(4096);
  std::memset(old_data.ptr, 0x11, 4096);
  std::memset(new_data.ptr, 0x22, 4096);
  ASSERT_TRUE(IsSuccess(Io(Rw(nvm::kWrite, 40, 8, old_data))));
  Sqe cmp = Rw(nvm::kCompare, 40, 8, old_data);
  cmp.set_fuse(kFuseFirst);
  Sqe wr = Rw(nvm::kWrite, 40, 8, new_data);
  wr.set_fuse(kFuseSecond);
  auto [c, w] = SubmitPair(cmp, wr);
  EXPECT_TRUE(IsSuccess(c));
  EXPECT_TRUE(IsSuccess(w));
  DmaMemory::Buffer out = dev_->mem().Alloc(4096);
  ASSERT_TRUE(IsSuccess(Io(Rw(nvm::kRead, 40, 8, out))));
  EXPECT_EQ(std::memcmp(out.ptr, new_data.ptr, 4096), 0);
}

TEST_F(OptionalFeaturesTest, FusedCompareFailureAbortsTheWrite) {
  DmaMemory::Buffer media = dev_->mem().Alloc(4096);
  DmaMemory::Buffer wrong = dev_->mem().Alloc(4096);
  DmaMemory::Buffer new_data = dev_->mem().Alloc(4096);
  std::memset(media.ptr, 0x11, 4096);
  std::memset(wrong.ptr, 0x33, 4096);
  std::memset(new_data.ptr, 0x22, 4096);
  ASSERT_TRUE(IsSuccess(Io(Rw(nvm::kWrite, 40, 8, media))));
  Sqe cmp = Rw(nvm::kCompare, 40, 8, wrong);
  cmp.set_fuse(kFuseFirst);
  Sqe wr = Rw(nvm::kWrite, 40, 8, new_data);
  wr.set_fuse(kFuseSecond);
  auto [c, w] = SubmitPair(cmp, wr);
  EXPECT_TRUE(HasStatus(c, sct::kMediaError, sc::kCompareFailure, true));
  EXPECT_TRUE(HasStatus(w, kGen, sc::kAbortedFailedFused));
  DmaMemory::Buffer out = dev_->mem().Alloc(4096);
  ASSERT_TRUE(IsSuccess(Io(Rw(nvm::kRead, 40, 8, out))));
  EXPECT_EQ(std::memcmp(out.ptr, media.ptr, 4096), 0) << "the write must not have happened";
}

TEST_F(OptionalFeaturesTest, LoneOrMismatchedFusedCommands) {
  DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
  Sqe first = Rw(nvm::kCompare, 0, 8, buf);
  first.set_fuse(kFuseFirst);
  EXPECT_TRUE(HasStatus(Io(first), kGen, sc::kAbortedMissingFused));
  Sqe second = Rw(nvm::kWrite, 0, 8, buf);
  second.set_fuse(kFuseSecond);
  EXPECT_TRUE(HasStatus(Io(second), kGen, sc::kAbortedMissingFused));
  // Different LBA ranges.
  Sqe wr = Rw(nvm::kWrite, 8, 8, buf);
  wr.set_fuse(kFuseSecond);
  auto [c, w] = SubmitPair(first, wr);
  EXPECT_TRUE(HasStatus(c, kGen, sc::kAbortedMissingFused));
  EXPECT_TRUE(HasStatus(w, kGen, sc::kAbortedMissingFused));
  // A first half followed by an ordinary command: that command runs normally.
  Sqe plain = Rw(nvm::kRead, 0, 8, buf);
  auto [f, p] = SubmitPair(first, plain);
  EXPECT_TRUE(HasStatus(f, kGen, sc::kAbortedMissingFused));
  EXPECT_TRUE(IsSuccess(p));
}

TEST_F(OptionalFeaturesTest, IdentifyAdvertisesFusesFormatAndDbcs) {
  DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
  Sqe id = AdminCmd(admin::kIdentify);
  id.cdw10 = cns::kController;
  id.prp1 = buf.iova;
  ASSERT_TRUE(IsSuccess(dev_->Admin(id)));
  const auto* ctrl = reinterpret_cast<const IdentifyController*>(buf.ptr);
  EXPECT_NE(ctrl->fuses & kFusesCompareAndWrite, 0);
  EXPECT_NE(ctrl->oacs & kOacsFormat, 0);
  EXPECT_NE(ctrl->oacs & kOacsDbcs, 0);
}

// --- Format NVM ---

Sqe Format(uint32_t nsid, uint32_t lbaf, bool mset = false, uint32_t pi = 0, uint32_t ses = 0) {
  Sqe sqe = AdminCmd(admin::kFormatNvm, nsid);
  sqe.cdw10 = lbaf | (mset ? 1u << 4 : 0u) | (pi << 5) | (ses << 9);
  return sqe;
}

IdentifyNamespace IdentifyNs(TestDevice& dev, uint32_t nsid) {
  DmaMemory::Buffer buf = dev.mem().Alloc(4096);
  Sqe id = AdminCmd(admin::kIdentify, nsid);
  id.prp1 = buf.iova;
  EXPECT_TRUE(IsSuccess(dev.Admin(id)));
  IdentifyNamespace ns;
  std::memcpy(&ns, buf.ptr, sizeof(ns));
  return ns;
}

TEST_F(OptionalFeaturesTest, FormatErrors) {
  EXPECT_TRUE(HasStatus(dev_->Admin(Format(1, 8)), kCs, sc::kInvalidFormat, true));
  EXPECT_TRUE(HasStatus(dev_->Admin(Format(1, 15)), kCs, sc::kInvalidFormat, true));
  EXPECT_TRUE(HasStatus(dev_->Admin(Format(1, 0, false, 1)), kCs, sc::kInvalidFormat, true));
  EXPECT_TRUE(HasStatus(dev_->Admin(Format(1, 0, false, 0, 2)), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(HasStatus(dev_->Admin(Format(0, 0)), kGen, sc::kInvalidNamespaceOrFormat, true));
  EXPECT_TRUE(HasStatus(dev_->Admin(Format(40, 0)), kGen, sc::kInvalidNamespaceOrFormat, true));
  EXPECT_TRUE(HasStatus(dev_->Admin(Format(9, 0)), kGen, sc::kInvalidNamespaceOrFormat));
}

TEST_F(OptionalFeaturesTest, FormatChangesTheFormatAndErases) {
  DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
  std::memset(buf.ptr, 0x77, 4096);
  ASSERT_TRUE(IsSuccess(Io(Rw(nvm::kWrite, 0, 8, buf))));
  ASSERT_TRUE(IsSuccess(Io(Rw(nvm::kWrite, 0, 8, buf, 2))));
  ASSERT_TRUE(IsSuccess(dev_->Admin(Format(1, 4))));  // 4096-byte blocks
  IdentifyNamespace ns = IdentifyNs(*dev_, 1);
  EXPECT_EQ(ns.flbas & 0xF, 4);
  EXPECT_EQ(ns.nsze, (8ull << 20) / 4096);
  ASSERT_TRUE(IsSuccess(Io(Rw(nvm::kRead, 0, 1, buf))));
  for (int i = 0; i < 4096; ++i) ASSERT_EQ(buf.ptr[i], 0) << i;
  // Namespace 2 untouched.
  EXPECT_EQ(IdentifyNs(*dev_, 2).flbas & 0xF, 0);
  ASSERT_TRUE(IsSuccess(Io(Rw(nvm::kRead, 0, 8, buf, 2))));
  EXPECT_EQ(buf.ptr[0], 0x77);
}

TEST_F(OptionalFeaturesTest, FormatAllNamespacesWithExtendedMetadata) {
  ASSERT_TRUE(IsSuccess(dev_->Admin(Format(0xFFFFFFFF, 1, /*mset=*/true))));  // 512 + 8, extended
  for (uint32_t nsid : {1u, 2u}) {
    IdentifyNamespace ns = IdentifyNs(*dev_, nsid);
    EXPECT_EQ(ns.flbas & 0xF, 1);
    EXPECT_NE(ns.flbas & kFlbasExtended, 0);
  }
  DmaMemory::Buffer buf = dev_->mem().Alloc(2 * 520);
  for (size_t i = 0; i < buf.size; ++i) buf.ptr[i] = static_cast<uint8_t>(i);
  ASSERT_TRUE(IsSuccess(Io(Rw(nvm::kWrite, 3, 2, buf, 2))));
  DmaMemory::Buffer out = dev_->mem().Alloc(2 * 520);
  ASSERT_TRUE(IsSuccess(Io(Rw(nvm::kRead, 3, 2, out, 2))));
  EXPECT_EQ(std::memcmp(buf.ptr, out.ptr, 2 * 520), 0);
}

// --- Doorbell Buffer Config (shadow doorbells) ---

Sqe Dbbc(uint64_t shadow, uint64_t eventidx) {
  Sqe sqe = AdminCmd(admin::kDoorbellBufferConfig);
  sqe.prp1 = shadow;
  sqe.prp2 = eventidx;
  return sqe;
}

TEST_F(OptionalFeaturesTest, DoorbellBufferConfigErrors) {
  DmaMemory::Buffer pages = dev_->mem().Alloc(2 * 4096);
  EXPECT_TRUE(HasStatus(dev_->Admin(Dbbc(pages.iova + 8, pages.iova + 4096)), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(HasStatus(dev_->Admin(Dbbc(pages.iova, pages.iova + 4096 + 16)), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(HasStatus(dev_->Admin(Dbbc(pages.iova, pages.iova)), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(HasStatus(dev_->Admin(Dbbc(0x5000'0000'0000ull, pages.iova)), kGen, sc::kDataTransferError));
}

// A client that goes (QEMU killed) with shadow doorbells and I/O queues
// configured: between clients the device touches none of the gone memory,
// so the next client finds no fatal status (it used to: the new connection
// published EventIdx into the unmapped buffer and set CSTS.CFS).
TEST_F(OptionalFeaturesTest, ClientGoneWithShadowDoorbellsLeavesNoFatalStatus) {
  DmaMemory::Buffer pages = dev_->mem().Alloc(2 * 4096);
  ASSERT_TRUE(IsSuccess(dev_->Admin(Dbbc(pages.iova, pages.iova + 4096))));
  dev_->Reconnect();
  EXPECT_EQ(dev_->Csts().cfs(), 0);
  EXPECT_EQ(dev_->Csts().rdy(), 1);
  EXPECT_TRUE(IsSuccess(dev_->Admin(AdminCmd(admin::kKeepAlive))));
}

TEST_F(OptionalFeaturesTest, ShadowDoorbellsCarryTailsAndHeads) {
  DmaMemory::Buffer data = dev_->mem().Alloc(4096);
  // Some I/O through the real doorbells first so tail/head are not zero.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(IsSuccess(Io(Rw(nvm::kRead, 0, 8, data))));
  DmaMemory::Buffer shadow = dev_->mem().Alloc(4096);
  DmaMemory::Buffer eventidx = dev_->mem().Alloc(4096);
  ASSERT_TRUE(IsSuccess(dev_->Admin(Dbbc(shadow.iova, eventidx.iova))));
  auto* sdb = reinterpret_cast<uint32_t*>(shadow.ptr);
  auto* eix = reinterpret_cast<uint32_t*>(eventidx.ptr);
  // The device copied what it had seen: SQ 1 tail 3, CQ 1 head 3.
  EXPECT_EQ(sdb[2], 3u);
  EXPECT_EQ(sdb[3], 3u);
  EXPECT_EQ(sdb[0], 0u) << "the admin queue keeps the real doorbells";
  // Submit through the shadow page only: no MMIO doorbell write.
  QueueState& sq = dev_->sq(1);
  QueueState& cq = dev_->cq(1);
  for (int i = 0; i < 5; ++i) {
    Sqe r = Rw(nvm::kRead, 0, 8, data);
    r.cid = static_cast<uint16_t>(300 + i);
    dev_->Submit(sq, r, /*ring=*/false);
  }
  std::atomic_ref<uint32_t>(sdb[2]).store(sq.tail, std::memory_order_release);
  for (int i = 0; i < 5; ++i) {
    auto cqe = dev_->WaitCqe(cq, std::chrono::seconds(2), /*ring=*/false);
    ASSERT_TRUE(IsSuccess(cqe)) << i;
    EXPECT_EQ(cqe->cid, 300 + i);
  }
  std::atomic_ref<uint32_t>(sdb[3]).store(cq.head, std::memory_order_release);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while ((std::atomic_ref<uint32_t>(eix[3]).load() != cq.head || std::atomic_ref<uint32_t>(eix[2]).load() != sq.tail) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(eix[2], sq.tail) << "EventIdx follows the SQ tail the device consumed";
  EXPECT_EQ(eix[3], cq.head);
  // The admin queue still works through the real doorbells.
  EXPECT_TRUE(IsSuccess(dev_->Admin(AdminCmd(admin::kKeepAlive))));
}

TEST_F(OptionalFeaturesTest, ResetDisablesShadowDoorbells) {
  DmaMemory::Buffer shadow = dev_->mem().Alloc(4096);
  DmaMemory::Buffer eventidx = dev_->mem().Alloc(4096);
  ASSERT_TRUE(IsSuccess(dev_->Admin(Dbbc(shadow.iova, eventidx.iova))));
  dev_->Disable();
  ASSERT_TRUE(dev_->Enable());
  dev_->CreateIoQueuePair(1, 16);
  // Only the real doorbell counts again.
  DmaMemory::Buffer data = dev_->mem().Alloc(4096);
  EXPECT_TRUE(IsSuccess(dev_->Io(1, Rw(nvm::kRead, 0, 8, data))));
}

}  // namespace
}  // namespace nvmux::conformance

namespace nvmux::conformance {
namespace {

using namespace nvmux::spec;

TEST(ShadowDoorbellTest, RecreatedQueueStartsFromZero) {
  TestDevice dev;
  dev.Start();
  ASSERT_TRUE(dev.Enable());
  dev.CreateIoQueuePair(1, 16);
  DmaMemory::Buffer shadow = dev.mem().Alloc(4096);
  DmaMemory::Buffer eventidx = dev.mem().Alloc(4096);
  Sqe dbbc = AdminCmd(admin::kDoorbellBufferConfig);
  dbbc.prp1 = shadow.iova;
  dbbc.prp2 = eventidx.iova;
  ASSERT_TRUE(IsSuccess(dev.Admin(dbbc)));
  auto* sdb = reinterpret_cast<uint32_t*>(shadow.ptr);
  // Leave stale values behind, delete the pair, create a new one with the same ids.
  std::atomic_ref<uint32_t>(sdb[2]).store(5);
  Sqe del_sq = AdminCmd(admin::kDeleteIoSq);
  del_sq.cdw10 = 1;
  // The stale tail makes the device abort entries 0..4 of the old SQ (all zero): fine.
  ASSERT_TRUE(IsSuccess(dev.Admin(del_sq)));
  Sqe del_cq = AdminCmd(admin::kDeleteIoCq);
  del_cq.cdw10 = 1;
  ASSERT_TRUE(IsSuccess(dev.Admin(del_cq)));
  std::atomic_ref<uint32_t>(sdb[2]).store(5);
  std::atomic_ref<uint32_t>(sdb[3]).store(7);
  dev.CreateIoQueuePair(1, 16);
  EXPECT_EQ(std::atomic_ref<uint32_t>(sdb[2]).load(), 0u);
  EXPECT_EQ(std::atomic_ref<uint32_t>(sdb[3]).load(), 0u);
  // One command through the shadow page completes as the first entry.
  QueueState& sq = dev.sq(1);
  Sqe flush = IoCmd(nvm::kFlush, 1, 0, 1);
  flush.cid = 77;
  dev.Submit(sq, flush, /*ring=*/false);
  std::atomic_ref<uint32_t>(sdb[2]).store(sq.tail);
  auto cqe = dev.WaitCqe(dev.cq(1), std::chrono::seconds(2), /*ring=*/false);
  ASSERT_TRUE(IsSuccess(cqe));
  EXPECT_EQ(cqe->cid, 77);
  EXPECT_EQ(cqe->sqhd, 1);
}

}  // namespace
}  // namespace nvmux::conformance
