// CONFORMANCE.md: SGL rules (I/O) and Copy.
#include <cstring>

#include "test/conformance/harness.h"

namespace nvmux::conformance {
namespace {

using namespace nvmux::spec;

constexpr uint8_t kGen = sct::kGeneric;

class SglCopyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    emu::EmulatorOptions options;
    options.namespaces.push_back({16ull << 20, 512, 0, false});
    dev_ = std::make_unique<TestDevice>(options);
    dev_->Start();
    ASSERT_TRUE(dev_->Enable());
    dev_->CreateIoQueuePair(1, 32);
  }
  std::optional<Cqe> Io(Sqe sqe) { return dev_->Io(1, sqe); }
  static SglDescriptor Desc(uint8_t type, uint64_t addr, uint32_t len) {
    SglDescriptor d;
    d.address = addr;
    d.length = len;
    d.type_subtype = sgl::TypeByte(type);
    return d;
  }
  static Sqe WithSgl(Sqe sqe, const SglDescriptor& sgl1) {
    sqe.set_psdt(kPsdtSglMptrContiguous);
    std::memcpy(static_cast<void*>(reinterpret_cast<uint8_t*>(&sqe) + offsetof(Sqe, prp1)), &sgl1, sizeof(sgl1));
    return sqe;
  }
  // Writes descriptors into fresh DMA memory and returns its iova.
  uint64_t Segment(std::initializer_list<SglDescriptor> descs) {
    DmaMemory::Buffer b = dev_->mem().Alloc(descs.size() * 16, 16);
    size_t i = 0;
    for (const SglDescriptor& d : descs) std::memcpy(b.ptr + 16 * i++, &d, 16);
    return b.iova;
  }
  std::optional<Cqe> ReadPrp(uint64_t slba, uint32_t nlb, const DmaMemory::Buffer& buf) {
    Sqe r = IoCmd(nvm::kRead, 1, slba, nlb);
    r.prp1 = buf.iova;
    if (buf.size > 4096) r.prp2 = buf.iova + 4096;
    return Io(r);
  }
  std::unique_ptr<TestDevice> dev_;
};

TEST_F(SglCopyTest, SingleDataBlock) {
  DmaMemory::Buffer in = dev_->mem().Alloc(1024, 16);
  for (int i = 0; i < 1024; ++i) in.ptr[i] = static_cast<uint8_t>(i * 3);
  ASSERT_TRUE(IsSuccess(Io(WithSgl(IoCmd(nvm::kWrite, 1, 0, 2), Desc(sgl::kDataBlock, in.iova + 0, 1024)))));
  DmaMemory::Buffer out = dev_->mem().Alloc(4096);
  ASSERT_TRUE(IsSuccess(ReadPrp(0, 2, out)));
  EXPECT_EQ(std::memcmp(in.ptr, out.ptr, 1024), 0);
}

TEST_F(SglCopyTest, ChainedSegmentsScatterData) {
  DmaMemory::Buffer a = dev_->mem().Alloc(4096);
  DmaMemory::Buffer b = dev_->mem().Alloc(4096);
  DmaMemory::Buffer c = dev_->mem().Alloc(4096);
  std::memset(a.ptr, 0xAA, 4096);
  std::memset(b.ptr, 0xBB, 4096);
  std::memset(c.ptr, 0xCC, 4096);
  // Segment 1: [a: 1000 bytes, b+5: 24 bytes, -> last segment], last: [c: 512, a+2048: 512].
  uint64_t last = Segment({Desc(sgl::kDataBlock, c.iova, 512), Desc(sgl::kDataBlock, a.iova + 2048, 512)});
  uint64_t first = Segment({Desc(sgl::kDataBlock, a.iova, 1000), Desc(sgl::kDataBlock, b.iova + 5, 24),
                            Desc(sgl::kLastSegment, last, 32)});
  Sqe w = WithSgl(IoCmd(nvm::kWrite, 1, 100, 4), Desc(sgl::kSegment, first, 48));
  ASSERT_TRUE(IsSuccess(Io(w)));
  DmaMemory::Buffer out = dev_->mem().Alloc(4096);
  ASSERT_TRUE(IsSuccess(ReadPrp(100, 4, out)));
  EXPECT_EQ(out.ptr[0], 0xAA);
  EXPECT_EQ(out.ptr[999], 0xAA);
  EXPECT_EQ(out.ptr[1000], 0xBB);
  EXPECT_EQ(out.ptr[1023], 0xBB);
  EXPECT_EQ(out.ptr[1024], 0xCC);
  EXPECT_EQ(out.ptr[1535], 0xCC);
  EXPECT_EQ(out.ptr[1536], 0xAA);
  // Read back through a Last Segment descriptor in the SQE.
  DmaMemory::Buffer r1 = dev_->mem().Alloc(4096);
  DmaMemory::Buffer r2 = dev_->mem().Alloc(4096);
  uint64_t list = Segment({Desc(sgl::kDataBlock, r1.iova, 1536), Desc(sgl::kDataBlock, r2.iova, 512)});
  ASSERT_TRUE(IsSuccess(Io(WithSgl(IoCmd(nvm::kRead, 1, 100, 4), Desc(sgl::kLastSegment, list, 32)))));
  EXPECT_EQ(std::memcmp(r1.ptr, out.ptr, 1536), 0);
  EXPECT_EQ(std::memcmp(r2.ptr, out.ptr + 1536, 512), 0);
}

TEST_F(SglCopyTest, SegmentLengthRules) {
  DmaMemory::Buffer d = dev_->mem().Alloc(4096);
  uint64_t list = Segment({Desc(sgl::kDataBlock, d.iova, 512)});
  EXPECT_TRUE(HasStatus(Io(WithSgl(IoCmd(nvm::kRead, 1, 0, 1), Desc(sgl::kLastSegment, list, 0))), kGen,
                        sc::kInvalidSglSegmentDescriptor, true));
  EXPECT_TRUE(HasStatus(Io(WithSgl(IoCmd(nvm::kRead, 1, 0, 1), Desc(sgl::kLastSegment, list, 24))), kGen,
                        sc::kInvalidSglSegmentDescriptor, true));
}

TEST_F(SglCopyTest, SegmentDescriptorAmongDataDescriptors) {
  DmaMemory::Buffer d = dev_->mem().Alloc(4096);
  uint64_t inner = Segment({Desc(sgl::kDataBlock, d.iova, 256)});
  // A segment descriptor that is not the last entry.
  uint64_t bad = Segment({Desc(sgl::kLastSegment, inner, 16), Desc(sgl::kDataBlock, d.iova + 256, 256)});
  EXPECT_TRUE(HasStatus(Io(WithSgl(IoCmd(nvm::kRead, 1, 0, 1), Desc(sgl::kSegment, bad, 32))), kGen,
                        sc::kInvalidNumberOfSglDescriptors, true));
  // A segment descriptor inside a Last Segment.
  uint64_t in_last = Segment({Desc(sgl::kDataBlock, d.iova, 256), Desc(sgl::kSegment, inner, 16)});
  EXPECT_TRUE(HasStatus(Io(WithSgl(IoCmd(nvm::kRead, 1, 0, 1), Desc(sgl::kLastSegment, in_last, 32))), kGen,
                        sc::kInvalidNumberOfSglDescriptors, true));
  // A self-referencing chain stops at the descriptor limit.
  DmaMemory::Buffer loop = dev_->mem().Alloc(32, 16);
  SglDescriptor self[2] = {Desc(sgl::kDataBlock, d.iova, 0), Desc(sgl::kSegment, loop.iova, 32)};
  std::memcpy(loop.ptr, self, sizeof(self));
  EXPECT_TRUE(HasStatus(Io(WithSgl(IoCmd(nvm::kRead, 1, 0, 1), Desc(sgl::kSegment, loop.iova, 32))), kGen,
                        sc::kInvalidNumberOfSglDescriptors, true));
}

TEST_F(SglCopyTest, UnknownOrUnsupportedDescriptorTypes) {
  DmaMemory::Buffer d = dev_->mem().Alloc(4096);
  for (uint8_t type : {sgl::kBitBucket, sgl::kKeyedDataBlock, sgl::kTransportDataBlock, uint8_t{0x7}, uint8_t{0xF}}) {
    EXPECT_TRUE(HasStatus(Io(WithSgl(IoCmd(nvm::kRead, 1, 0, 1), Desc(type, d.iova, 512))), kGen,
                          sc::kSglDescriptorTypeInvalid, true))
        << int{type};
  }
  SglDescriptor offset_subtype = Desc(sgl::kDataBlock, d.iova, 512);
  offset_subtype.type_subtype = sgl::TypeByte(sgl::kDataBlock, 1);
  EXPECT_TRUE(HasStatus(Io(WithSgl(IoCmd(nvm::kRead, 1, 0, 1), offset_subtype)), kGen,
                        sc::kSglDescriptorTypeInvalid, true));
}

TEST_F(SglCopyTest, SglTooShortOrTooLong) {
  DmaMemory::Buffer d = dev_->mem().Alloc(8192);
  EXPECT_TRUE(HasStatus(Io(WithSgl(IoCmd(nvm::kRead, 1, 0, 2), Desc(sgl::kDataBlock, d.iova, 512))), kGen,
                        sc::kDataSglLengthInvalid, true));
  EXPECT_TRUE(HasStatus(Io(WithSgl(IoCmd(nvm::kRead, 1, 0, 1), Desc(sgl::kDataBlock, d.iova, 1024))), kGen,
                        sc::kDataSglLengthInvalid, true));
  uint64_t list = Segment({Desc(sgl::kDataBlock, d.iova, 512), Desc(sgl::kDataBlock, d.iova + 512, 512)});
  EXPECT_TRUE(HasStatus(Io(WithSgl(IoCmd(nvm::kRead, 1, 0, 1), Desc(sgl::kLastSegment, list, 32))), kGen,
                        sc::kDataSglLengthInvalid, true));
  EXPECT_TRUE(HasStatus(Io(WithSgl(IoCmd(nvm::kRead, 1, 0, 3), Desc(sgl::kLastSegment, list, 32))), kGen,
                        sc::kDataSglLengthInvalid, true));
}

TEST_F(SglCopyTest, UnmappedSglMemory) {
  const uint64_t nowhere = 0x5000'0000'0000ull;
  EXPECT_TRUE(HasStatus(Io(WithSgl(IoCmd(nvm::kRead, 1, 0, 1), Desc(sgl::kDataBlock, nowhere, 512))), kGen,
                        sc::kDataTransferError));
  EXPECT_TRUE(HasStatus(Io(WithSgl(IoCmd(nvm::kRead, 1, 0, 1), Desc(sgl::kLastSegment, nowhere, 16))), kGen,
                        sc::kDataTransferError));
}

TEST_F(SglCopyTest, SglOnAdminOrForMetadataIsInvalidField) {
  DmaMemory::Buffer d = dev_->mem().Alloc(4096);
  Sqe id = WithSgl(AdminCmd(admin::kIdentify), Desc(sgl::kDataBlock, d.iova, 4096));
  id.cdw10 = cns::kController;
  EXPECT_TRUE(HasStatus(dev_->Admin(id), kGen, sc::kInvalidField, true));
  Sqe r = WithSgl(IoCmd(nvm::kRead, 1, 0, 1), Desc(sgl::kDataBlock, d.iova, 512));
  r.set_psdt(kPsdtSglMptrSgl);
  EXPECT_TRUE(HasStatus(Io(r), kGen, sc::kInvalidField, true));
}

TEST_F(SglCopyTest, DatasetManagementRangesViaSgl) {
  DmaMemory::Buffer ranges = dev_->mem().Alloc(4096);
  DsmRange r = {0, 8, 0};
  std::memcpy(ranges.ptr, &r, sizeof(r));
  Sqe dsm = IoCmd(nvm::kDatasetManagement, 1, 0, 1);
  dsm.cdw10 = 0;
  dsm.cdw11 = kDsmAttrDeallocate;
  dsm.cdw12 = 0;
  EXPECT_TRUE(IsSuccess(Io(WithSgl(dsm, Desc(sgl::kDataBlock, ranges.iova, 16)))));
}

// --- Copy ---

Sqe CopyCmd(uint64_t sdlba, uint32_t nr, uint64_t ranges_iova) {
  Sqe sqe = IoCmd(nvm::kCopy, 1, sdlba, 1);
  sqe.cdw12 = nr - 1;
  sqe.prp1 = ranges_iova;
  return sqe;
}

TEST_F(SglCopyTest, CopyMovesData) {
  DmaMemory::Buffer src = dev_->mem().Alloc(8192);
  for (int i = 0; i < 8192; ++i) src.ptr[i] = static_cast<uint8_t>(i / 512 + 1);
  Sqe w = IoCmd(nvm::kWrite, 1, 0, 16);
  w.prp1 = src.iova;
  w.prp2 = src.iova + 4096;
  ASSERT_TRUE(IsSuccess(Io(w)));
  DmaMemory::Buffer ranges = dev_->mem().Alloc(4096);
  CopySourceRange r[2];
  r[0].slba = 4;  // blocks 4..5
  r[0].nlb = 1;
  r[1].slba = 10;  // block 10
  r[1].nlb = 0;
  std::memcpy(static_cast<void*>(ranges.ptr), r, sizeof(r));
  ASSERT_TRUE(IsSuccess(Io(CopyCmd(1000, 2, ranges.iova))));
  DmaMemory::Buffer out = dev_->mem().Alloc(4096);
  ASSERT_TRUE(IsSuccess(ReadPrp(1000, 3, out)));
  EXPECT_EQ(out.ptr[0], 5);
  EXPECT_EQ(out.ptr[512], 6);
  EXPECT_EQ(out.ptr[1024], 11);
}

TEST_F(SglCopyTest, CopyLimitsAndRanges) {
  DmaMemory::Buffer ranges = dev_->mem().Alloc(4096);
  DmaMemory::Buffer id = dev_->mem().Alloc(4096);
  Sqe ident = AdminCmd(admin::kIdentify, 1);
  ident.prp1 = id.iova;
  ASSERT_TRUE(IsSuccess(dev_->Admin(ident)));
  const auto* ns = reinterpret_cast<const IdentifyNamespace*>(id.ptr);
  const uint32_t msrc = ns->msrc + 1u;
  const uint32_t mssrl = ns->mssrl;
  const uint32_t mcl = ns->mcl;
  ASSERT_GT(msrc, 1u);
  auto* r = reinterpret_cast<CopySourceRange*>(ranges.ptr);
  // Too many ranges.
  EXPECT_TRUE(HasStatus(Io(CopyCmd(0, msrc + 1, ranges.iova)), sct::kCommandSpecific,
                        sc::kCommandSizeLimitExceeded, true));
  // One range above MSSRL.
  std::memset(static_cast<void*>(r), 0, 4096);
  r[0].nlb = static_cast<uint16_t>(mssrl);  // mssrl + 1 blocks
  EXPECT_TRUE(HasStatus(Io(CopyCmd(0, 1, ranges.iova)), sct::kCommandSpecific, sc::kCommandSizeLimitExceeded,
                        true));
  // Total above MCL.
  const uint32_t per = mssrl;
  const uint32_t n = std::min(msrc, mcl / per + 1);
  ASSERT_GT(n * per, mcl);
  for (uint32_t i = 0; i < n; ++i) {
    r[i].slba = i * per;
    r[i].nlb = static_cast<uint16_t>(per - 1);
  }
  EXPECT_TRUE(HasStatus(Io(CopyCmd(0, n, ranges.iova)), sct::kCommandSpecific, sc::kCommandSizeLimitExceeded,
                        true));
  // Source or destination beyond the namespace.
  std::memset(static_cast<void*>(r), 0, 4096);
  r[0].slba = ns->nsze - 1;
  r[0].nlb = 1;
  EXPECT_TRUE(HasStatus(Io(CopyCmd(0, 1, ranges.iova)), kGen, sc::kLbaOutOfRange, true));
  r[0].slba = 0;
  EXPECT_TRUE(HasStatus(Io(CopyCmd(ns->nsze - 1, 1, ranges.iova)), kGen, sc::kLbaOutOfRange, true));
  // Descriptor formats other than 0.
  Sqe fmt = CopyCmd(0, 1, ranges.iova);
  fmt.cdw12 |= 1u << 8;
  EXPECT_TRUE(HasStatus(Io(fmt), kGen, sc::kInvalidField, true));
}

}  // namespace
}  // namespace nvmux::conformance
