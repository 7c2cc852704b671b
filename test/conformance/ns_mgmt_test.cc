// CONFORMANCE.md: Namespace Management (0D) and Namespace Attachment (15),
// Identify CNS 10h-13h, Changed Namespace List and its AEN.
#include <cstring>

#include "test/conformance/harness.h"

namespace nvmux::conformance {
namespace {

using namespace nvmux::spec;

constexpr uint8_t kGen = sct::kGeneric;
constexpr uint8_t kCs = sct::kCommandSpecific;

class NsMgmtTest : public ::testing::Test {
 protected:
  void SetUp() override {
    emu::EmulatorOptions options;
    options.namespaces.push_back({4ull << 20, 512, 0, false});
    dev_ = std::make_unique<TestDevice>(options);
    dev_->Start();
    ASSERT_TRUE(dev_->Enable());
    dev_->CreateIoQueuePair(1, 16);
  }
  std::optional<Cqe> Create(uint64_t nsze, uint8_t flbas = 0, uint64_t ncap = 0) {
    DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
    auto* id = reinterpret_cast<IdentifyNamespace*>(buf.ptr);
    id->nsze = nsze;
    id->ncap = ncap != 0 ? ncap : nsze;
    id->flbas = flbas;
    Sqe sqe = AdminCmd(admin::kNamespaceManagement, 0);
    sqe.cdw10 = kNsMgmtCreate;
    sqe.prp1 = buf.iova;
    return dev_->Admin(sqe);
  }
  std::optional<Cqe> Delete(uint32_t nsid) {
    Sqe sqe = AdminCmd(admin::kNamespaceManagement, nsid);
    sqe.cdw10 = kNsMgmtDelete;
    return dev_->Admin(sqe);
  }
  std::optional<Cqe> Attach(uint32_t nsid, bool attach, std::vector<uint16_t> ctrls = {1}) {
    DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
    auto* list = reinterpret_cast<ControllerList*>(buf.ptr);
    list->count = static_cast<uint16_t>(ctrls.size());
    for (size_t i = 0; i < ctrls.size(); ++i) list->ids[i] = ctrls[i];
    Sqe sqe = AdminCmd(admin::kNamespaceAttachment, nsid);
    sqe.cdw10 = attach ? kNsAttach : kNsDetach;
    sqe.prp1 = buf.iova;
    return dev_->Admin(sqe);
  }
  std::vector<uint32_t> IdList(uint8_t c, uint32_t nsid = 0) {
    DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
    Sqe sqe = AdminCmd(admin::kIdentify, nsid);
    sqe.cdw10 = c;
    sqe.prp1 = buf.iova;
    EXPECT_TRUE(IsSuccess(dev_->Admin(sqe)));
    std::vector<uint32_t> out;
    const auto* ids = reinterpret_cast<const uint32_t*>(buf.ptr);
    for (int i = 0; i < 1024 && ids[i] != 0; ++i) out.push_back(ids[i]);
    return out;
  }
  IdentifyNamespace Ns(uint8_t c, uint32_t nsid) {
    DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
    Sqe sqe = AdminCmd(admin::kIdentify, nsid);
    sqe.cdw10 = c;
    sqe.prp1 = buf.iova;
    EXPECT_TRUE(IsSuccess(dev_->Admin(sqe)));
    IdentifyNamespace ns;
    std::memcpy(&ns, buf.ptr, sizeof(ns));
    return ns;
  }
  std::vector<uint32_t> ChangedList() {
    DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
    Sqe sqe = AdminCmd(admin::kGetLogPage, 0xFFFFFFFF);
    sqe.cdw10 = lid::kChangedNamespaceList | ((4096u / 4 - 1) << 16);
    sqe.prp1 = buf.iova;
    EXPECT_TRUE(IsSuccess(dev_->Admin(sqe)));
    std::vector<uint32_t> out;
    const auto* ids = reinterpret_cast<const uint32_t*>(buf.ptr);
    for (int i = 0; i < 1024 && ids[i] != 0; ++i) out.push_back(ids[i]);
    return out;
  }
  std::unique_ptr<TestDevice> dev_;
};

TEST_F(NsMgmtTest, CreateAttachIoDetachDelete) {
  auto created = Create(2048, 4);  // 2048 blocks of 4 KiB
  ASSERT_TRUE(IsSuccess(created));
  const uint32_t nsid = created->cdw0;
  EXPECT_EQ(nsid, 2u);
  EXPECT_EQ(IdList(cns::kAllocatedNamespaceList), (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(IdList(cns::kActiveNamespaceList), (std::vector<uint32_t>{1}));
  EXPECT_EQ(Ns(cns::kNamespace, nsid).nsze, 0u) << "allocated but not attached reads as inactive";
  IdentifyNamespace alloc = Ns(cns::kAllocatedNamespace, nsid);
  EXPECT_EQ(alloc.nsze, 2048u);
  EXPECT_EQ(alloc.lbaf[alloc.flbas & 0xF].lbads, 12);
  // I/O to a detached namespace.
  DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
  Sqe w = IoCmd(nvm::kWrite, nsid, 0, 1);
  w.prp1 = buf.iova;
  EXPECT_TRUE(HasStatus(dev_->Io(1, w), kGen, sc::kInvalidNamespaceOrFormat));

  ASSERT_TRUE(IsSuccess(Attach(nsid, true)));
  EXPECT_EQ(IdList(cns::kActiveNamespaceList), (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(Ns(cns::kNamespace, nsid).nsze, 2048u);
  EXPECT_EQ(ChangedList(), (std::vector<uint32_t>{nsid}));
  EXPECT_TRUE(ChangedList().empty()) << "cleared on read";
  std::memset(buf.ptr, 0x3C, 4096);
  EXPECT_TRUE(IsSuccess(dev_->Io(1, w)));
  Sqe r = IoCmd(nvm::kRead, nsid, 0, 1);
  r.prp1 = dev_->mem().Alloc(4096).iova;
  EXPECT_TRUE(IsSuccess(dev_->Io(1, r)));
  EXPECT_EQ(dev_->mem().Ptr(r.prp1)[100], 0x3C);

  ASSERT_TRUE(IsSuccess(Attach(nsid, false)));
  EXPECT_TRUE(HasStatus(dev_->Io(1, r), kGen, sc::kInvalidNamespaceOrFormat));
  ASSERT_TRUE(IsSuccess(Delete(nsid)));
  EXPECT_EQ(IdList(cns::kAllocatedNamespaceList), (std::vector<uint32_t>{1}));
  EXPECT_TRUE(HasStatus(Delete(nsid), kGen, sc::kInvalidNamespaceOrFormat, true));
}

TEST_F(NsMgmtTest, AttachmentErrors) {
  auto created = Create(1024);
  ASSERT_TRUE(IsSuccess(created));
  const uint32_t nsid = created->cdw0;
  EXPECT_TRUE(HasStatus(Attach(nsid, false), kCs, sc::kNamespaceNotAttached, true));
  EXPECT_TRUE(HasStatus(Attach(nsid, true, {7}), kCs, sc::kControllerListInvalid, true));
  EXPECT_TRUE(HasStatus(Attach(nsid, true, {}), kCs, sc::kControllerListInvalid, true));
  ASSERT_TRUE(IsSuccess(Attach(nsid, true)));
  EXPECT_TRUE(HasStatus(Attach(nsid, true), kCs, sc::kNamespaceAlreadyAttached, true));
  EXPECT_TRUE(HasStatus(Attach(20, true), kGen, sc::kInvalidNamespaceOrFormat, true));
  Sqe bad_sel = AdminCmd(admin::kNamespaceAttachment, nsid);
  bad_sel.cdw10 = 5;
  EXPECT_TRUE(HasStatus(dev_->Admin(bad_sel), kGen, sc::kInvalidField, true));
}

TEST_F(NsMgmtTest, CreateErrors) {
  EXPECT_TRUE(HasStatus(Create(1024, 9), kCs, sc::kInvalidFormat, true));
  EXPECT_TRUE(HasStatus(Create(0), kGen, sc::kInvalidField, true));
  EXPECT_TRUE(HasStatus(Create(1024, 0, 512), kCs, sc::kThinProvisioningNotSupported, true));
  EXPECT_TRUE(HasStatus(Create(1ull << 40), kCs, sc::kNamespaceInsufficientCapacity, true));
  // Fill every NSID, then one more.
  for (uint32_t i = 2; i <= 32; ++i) ASSERT_TRUE(IsSuccess(Create(8))) << i;
  EXPECT_TRUE(HasStatus(Create(8), kCs, sc::kNamespaceIdentifierUnavailable, true));
  ASSERT_TRUE(IsSuccess(Delete(0xFFFFFFFF)));
  EXPECT_TRUE(IdList(cns::kAllocatedNamespaceList).empty());
  EXPECT_TRUE(IdList(cns::kActiveNamespaceList).empty());
}

TEST_F(NsMgmtTest, ControllerLists) {
  DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
  Sqe sqe = AdminCmd(admin::kIdentify, 1);
  sqe.cdw10 = cns::kAttachedControllerList;
  sqe.prp1 = buf.iova;
  ASSERT_TRUE(IsSuccess(dev_->Admin(sqe)));
  const auto* list = reinterpret_cast<const ControllerList*>(buf.ptr);
  EXPECT_EQ(list->count, 1);
  EXPECT_EQ(list->ids[0], 1);
  sqe.cdw10 = cns::kControllerList | (2u << 16);  // CNTLID >= 2: none
  ASSERT_TRUE(IsSuccess(dev_->Admin(sqe)));
  EXPECT_EQ(list->count, 0);
}

TEST_F(NsMgmtTest, NamespaceAttributeNoticeWhenEnabled) {
  // Off by default: no AEN.
  Sqe aer = AdminCmd(admin::kAsyncEventRequest);
  aer.cid = 900;
  dev_->Submit(dev_->sq(0), aer);
  auto created = Create(64);
  ASSERT_TRUE(IsSuccess(created));
  ASSERT_TRUE(IsSuccess(Attach(created->cdw0, true)));
  // Enable Namespace Attribute Notices, then a change completes the AER.
  Sqe aec = AdminCmd(admin::kSetFeatures);
  aec.cdw10 = fid::kAsyncEventConfig;
  aec.cdw11 = kOaesNsAttributeNotices;
  ASSERT_TRUE(IsSuccess(dev_->Admin(aec)));
  Sqe detach = AdminCmd(admin::kNamespaceAttachment, created->cdw0);
  DmaMemory::Buffer listbuf = dev_->mem().Alloc(4096);
  reinterpret_cast<ControllerList*>(listbuf.ptr)->count = 1;
  reinterpret_cast<ControllerList*>(listbuf.ptr)->ids[0] = 1;
  detach.cdw10 = kNsDetach;
  detach.prp1 = listbuf.iova;
  detach.cid = 901;
  dev_->Submit(dev_->sq(0), detach);
  auto a = dev_->WaitCqe(dev_->cq(0));
  auto b = dev_->WaitCqe(dev_->cq(0));
  ASSERT_TRUE(a && b);
  const Cqe& event = a->cid == 900 ? *a : *b;
  EXPECT_EQ(event.cid, 900);
  EXPECT_EQ(event.cdw0, aer::Dw0(aer::kTypeNotice, aer::kInfoNoticeNsAttrChanged, lid::kChangedNamespaceList));
  EXPECT_EQ(ChangedList(), (std::vector<uint32_t>{created->cdw0}));
}

}  // namespace
}  // namespace nvmux::conformance
