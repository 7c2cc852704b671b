// CONFORMANCE.md "I/O commands" (and PRP rules, metadata, backings).
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "test/conformance/harness.h"

namespace nvmux::conformance {
namespace {

using namespace nvmux::spec;

constexpr uint8_t kGen = sct::kGeneric;
constexpr uint8_t kMedia = sct::kMediaError;

class IoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    emu::EmulatorOptions options;
    options.namespaces.push_back({64ull << 20, 512, 0, false});
    options.namespaces.push_back({16ull << 20, 4096, 0, false});
    StartWith(options);
  }
  void StartWith(emu::EmulatorOptions options) {
    dev_ = std::make_unique<TestDevice>(std::move(options));
    dev_->Start();
    ASSERT_TRUE(dev_->Enable());
    dev_->CreateIoQueuePair(1, 64);
  }
  std::optional<Cqe> Io(Sqe sqe) { return dev_->Io(1, sqe); }

  // Fills a buffer with a pattern derived from seed.
  static void Fill(uint8_t* p, size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(rng());
  }
  // Builds a PRP list describing the pages of buf after the first, returns its iova.
  uint64_t PrpList(const DmaMemory::Buffer& buf, uint64_t first_len) {
    uint64_t pages = (buf.size - first_len + 4095) / 4096;
    DmaMemory::Buffer list = dev_->mem().Alloc(pages * 8);
    auto* entries = reinterpret_cast<uint64_t*>(list.ptr);
    for (uint64_t i = 0; i < pages; ++i) entries[i] = buf.iova + first_len + i * 4096;
    return list.iova;
  }
  std::optional<Cqe> Write(uint32_t nsid, uint64_t slba, uint32_t nlb, const DmaMemory::Buffer& buf) {
    Sqe w = IoCmd(nvm::kWrite, nsid, slba, nlb);
    w.prp1 = buf.iova;
    if (buf.size > 4096) w.prp2 = buf.size > 8192 ? PrpList(buf, 4096) : buf.iova + 4096;
    return Io(w);
  }
  std::optional<Cqe> Read(uint32_t nsid, uint64_t slba, uint32_t nlb, const DmaMemory::Buffer& buf) {
    Sqe r = IoCmd(nvm::kRead, nsid, slba, nlb);
    r.prp1 = buf.iova;
    if (buf.size > 4096) r.prp2 = buf.size > 8192 ? PrpList(buf, 4096) : buf.iova + 4096;
    return Io(r);
  }
  std::unique_ptr<TestDevice> dev_;
};

// --- Dispatch ---

TEST_F(IoTest, NamespaceIdChecks) {
  DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
  for (uint32_t nsid : {0u, 0xFFFFFFFFu, 33u}) {
    Sqe r = IoCmd(nvm::kRead, nsid, 0, 1);
    r.prp1 = buf.iova;
    EXPECT_TRUE(HasStatus(Io(r), kGen, sc::kInvalidNamespaceOrFormat, true)) << nsid;
  }
  Sqe inactive = IoCmd(nvm::kRead, 5, 0, 1);
  inactive.prp1 = buf.iova;
  EXPECT_TRUE(HasStatus(Io(inactive), kGen, sc::kInvalidNamespaceOrFormat));
}

TEST_F(IoTest, UnsupportedOpcode) {
  EXPECT_TRUE(HasStatus(Io(IoCmd(0x7E, 1, 0, 1)), kGen, sc::kInvalidOpcode, true));
  EXPECT_TRUE(HasStatus(Io(IoCmd(0x80, 1, 0, 1)), kGen, sc::kInvalidOpcode, true));
}

TEST_F(IoTest, FlushOneAndAll) {
  EXPECT_TRUE(IsSuccess(Io(IoCmd(nvm::kFlush, 1, 0, 1))));
  EXPECT_TRUE(IsSuccess(Io(IoCmd(nvm::kFlush, 0xFFFFFFFF, 0, 1))));
}

// --- Read / Write data paths and PRP shapes ---

TEST_F(IoTest, WriteReadRoundTripPrp1Only) {
  DmaMemory::Buffer in = dev_->mem().Alloc(4096);
  DmaMemory::Buffer out = dev_->mem().Alloc(4096);
  Fill(in.ptr, 4096, 1);
  ASSERT_TRUE(IsSuccess(Write(1, 100, 8, in)));
  ASSERT_TRUE(IsSuccess(Read(1, 100, 8, out)));
  EXPECT_EQ(std::memcmp(in.ptr, out.ptr, 4096), 0);
}

TEST_F(IoTest, WriteReadTwoPages) {
  DmaMemory::Buffer in = dev_->mem().Alloc(8192);
  DmaMemory::Buffer out = dev_->mem().Alloc(8192);
  Fill(in.ptr, 8192, 2);
  ASSERT_TRUE(IsSuccess(Write(1, 7, 16, in)));
  ASSERT_TRUE(IsSuccess(Read(1, 7, 16, out)));
  EXPECT_EQ(std::memcmp(in.ptr, out.ptr, 8192), 0);
}

TEST_F(IoTest, WriteReadPrpListScattered) {
  // 64 KiB whose pages are scattered in reverse order.
  constexpr int kPages = 16;
  DmaMemory::Buffer pool = dev_->mem().Alloc(kPages * 4096);
  DmaMemory::Buffer list = dev_->mem().Alloc(4096);
  auto* entries = reinterpret_cast<uint64_t*>(list.ptr);
  for (int i = 1; i < kPages; ++i) entries[i - 1] = pool.iova + static_cast<uint64_t>(kPages - i) * 4096;
  Fill(pool.ptr, kPages * 4096, 3);
  Sqe w = IoCmd(nvm::kWrite, 1, 1000, kPages * 8);
  w.prp1 = pool.iova;
  w.prp2 = list.iova;
  ASSERT_TRUE(IsSuccess(Io(w)));
  DmaMemory::Buffer out = dev_->mem().Alloc(kPages * 4096);
  ASSERT_TRUE(IsSuccess(Read(1, 1000, kPages * 8, out)));
  EXPECT_EQ(std::memcmp(out.ptr, pool.ptr, 4096), 0);
  for (int i = 1; i < kPages; ++i) {
    EXPECT_EQ(std::memcmp(out.ptr + i * 4096, pool.ptr + (kPages - i) * 4096, 4096), 0) << i;
  }
}

TEST_F(IoTest, Prp1WithOffsetAndListChaining) {
  // 128 KiB starting at offset 0x200 of a page: 33 pages touched; the list
  // starts 16 bytes before the end of a page, so it chains after one entry.
  const uint64_t len = 128 * 1024;
  DmaMemory::Buffer data = dev_->mem().Alloc(len + 4096);
  Fill(data.ptr, len + 4096, 4);
  const uint64_t start = data.iova + 0x200;
  const uint64_t first = 4096 - 0x200;
  const uint64_t pages = (len - first + 4095) / 4096;  // 32
  DmaMemory::Buffer lists = dev_->mem().Alloc(3 * 4096);
  auto* tail_of_first = reinterpret_cast<uint64_t*>(lists.ptr + 4096 - 16);
  tail_of_first[0] = data.iova + 4096;      // data page 1
  tail_of_first[1] = lists.iova + 4096;     // chain to the next list page
  auto* second = reinterpret_cast<uint64_t*>(lists.ptr + 4096);
  for (uint64_t i = 1; i < pages; ++i) second[i - 1] = data.iova + (i + 1) * 4096;
  Sqe w = IoCmd(nvm::kWrite, 1, 5000, static_cast<uint32_t>(len / 512));
  w.prp1 = start;
  w.prp2 = lists.iova + 4096 - 16;
  ASSERT_TRUE(IsSuccess(Io(w)));
  DmaMemory::Buffer out = dev_->mem().Alloc(len);
  ASSERT_TRUE(IsSuccess(Read(1, 5000, static_cast<uint32_t>(len / 512), out)));
  EXPECT_EQ(std::memcmp(out.ptr, data.ptr + 0x200, len), 0);
}

TEST_F(IoTest, FullListPageChains) {
  // 2 MiB would exceed MDTS; use a 4 KiB-page list of 512 entries by
  // restarting with MDTS 0 (unlimited) so the last slot must chain.
  emu::EmulatorOptions options;
  options.mdts = 0;
  StartWith(options);
  const uint64_t pages = 514;  // PRP1 page + 513 list entries: chains once
  DmaMemory::Buffer data = dev_->mem().Alloc(pages * 4096);
  Fill(data.ptr, pages * 4096, 5);
  DmaMemory::Buffer lists = dev_->mem().Alloc(2 * 4096);
  auto* l0 = reinterpret_cast<uint64_t*>(lists.ptr);
  auto* l1 = reinterpret_cast<uint64_t*>(lists.ptr + 4096);
  for (uint64_t i = 0; i < 511; ++i) l0[i] = data.iova + (i + 1) * 4096;
  l0[511] = lists.iova + 4096;
  l1[0] = data.iova + 512 * 4096;
  l1[1] = data.iova + 513 * 4096;
  Sqe w = IoCmd(nvm::kWrite, 1, 0, 0);
  w.cdw12 = static_cast<uint32_t>(pages * 8 - 1);
  w.prp1 = data.iova;
  w.prp2 = lists.iova;
  ASSERT_TRUE(IsSuccess(Io(w)));
  DmaMemory::Buffer out = dev_->mem().Alloc(4096);
  ASSERT_TRUE(IsSuccess(Read(1, 513 * 8, 8, out)));
  EXPECT_EQ(std::memcmp(out.ptr, data.ptr + 513 * 4096, 4096), 0);
}

TEST_F(IoTest, PrpViolations) {
  DmaMemory::Buffer data = dev_->mem().Alloc(4 * 4096);
  // PRP1 not dword aligned.
  Sqe r = IoCmd(nvm::kRead, 1, 0, 1);
  r.prp1 = data.iova + 2;
  EXPECT_TRUE(HasStatus(Io(r), kGen, sc::kPrpOffsetInvalid, true));
  // PRP2 as second page pointer with an offset.
  r = IoCmd(nvm::kRead, 1, 0, 16);
  r.prp1 = data.iova;
  r.prp2 = data.iova + 4096 + 512;
  EXPECT_TRUE(HasStatus(Io(r), kGen, sc::kPrpOffsetInvalid, true));
  // PRP list pointer not qword aligned.
  r = IoCmd(nvm::kRead, 1, 0, 24);
  r.prp1 = data.iova;
  r.prp2 = data.iova + 4;
  EXPECT_TRUE(HasStatus(Io(r), kGen, sc::kPrpOffsetInvalid, true));
  // A list entry with an offset.
  DmaMemory::Buffer list = dev_->mem().Alloc(4096);
  auto* e = reinterpret_cast<uint64_t*>(list.ptr);
  e[0] = data.iova + 4096;
  e[1] = data.iova + 2 * 4096 + 8;
  r = IoCmd(nvm::kRead, 1, 0, 24);
  r.prp1 = data.iova;
  r.prp2 = list.iova;
  EXPECT_TRUE(HasStatus(Io(r), kGen, sc::kPrpOffsetInvalid, true));
}

TEST_F(IoTest, UnmappedAddressesAreDataTransferErrors) {
  DmaMemory::Buffer data = dev_->mem().Alloc(2 * 4096);
  const uint64_t nowhere = 0x5000'0000'0000ull;
  Sqe r = IoCmd(nvm::kRead, 1, 0, 8);
  r.prp1 = nowhere;
  EXPECT_TRUE(HasStatus(Io(r), kGen, sc::kDataTransferError));
  r = IoCmd(nvm::kRead, 1, 0, 16);
  r.prp1 = data.iova;
  r.prp2 = nowhere;
  EXPECT_TRUE(HasStatus(Io(r), kGen, sc::kDataTransferError));
  r = IoCmd(nvm::kRead, 1, 0, 24);
  r.prp1 = data.iova;
  r.prp2 = nowhere;  // as a list pointer
  EXPECT_TRUE(HasStatus(Io(r), kGen, sc::kDataTransferError));
  // A buffer straddling the end of the mapping.
  r = IoCmd(nvm::kRead, 1, 0, 16);
  r.prp1 = DmaMemory::kIova + DmaMemory::kSize - 4096;
  r.prp2 = DmaMemory::kIova + DmaMemory::kSize;
  EXPECT_TRUE(HasStatus(Io(r), kGen, sc::kDataTransferError));
}

TEST_F(IoTest, ReadOnlyMappingRejectsDeviceWrites) {
  UniqueFd fd(::memfd_create("ro", MFD_CLOEXEC));
  ASSERT_EQ(::ftruncate(fd.get(), 4096), 0);
  const uint64_t iova = 0x2'0000'0000ull;
  ASSERT_TRUE(dev_->client().DmaMap(fd.get(), 0, iova, 4096, vfiouser::kDmaFlagRead));
  Sqe r = IoCmd(nvm::kRead, 1, 0, 1);
  r.prp1 = iova;
  EXPECT_TRUE(HasStatus(Io(r), kGen, sc::kDataTransferError));
  Sqe w = IoCmd(nvm::kWrite, 1, 0, 1);
  w.prp1 = iova;
  EXPECT_TRUE(IsSuccess(Io(w)));
}

// --- Checks in order: MDTS, then range, then PRPs ---

TEST_F(IoTest, TransferAboveMdtsIsInvalidField) {
  Sqe r = IoCmd(nvm::kRead, 1, 0, 257);  // 128.5 KiB > 128 KiB
  r.prp1 = 0x5000'0000'0000ull;          // also unmapped: MDTS wins
  EXPECT_TRUE(HasStatus(Io(r), kGen, sc::kInvalidField, true));
  Sqe both = IoCmd(nvm::kRead, 1, ~0ull - 4, 257);  // and out of range
  EXPECT_TRUE(HasStatus(Io(both), kGen, sc::kInvalidField, true));
}

TEST_F(IoTest, LbaOutOfRange) {
  const uint64_t nsze = (64ull << 20) / 512;
  Sqe r = IoCmd(nvm::kRead, 1, nsze - 1, 2);
  r.prp1 = 0x5000'0000'0000ull;  // unmapped: range check comes first
  EXPECT_TRUE(HasStatus(Io(r), kGen, sc::kLbaOutOfRange, true));
  Sqe overflow = IoCmd(nvm::kWrite, 1, ~0ull, 2);
  EXPECT_TRUE(HasStatus(Io(overflow), kGen, sc::kLbaOutOfRange, true));
  DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
  Sqe last = IoCmd(nvm::kRead, 1, nsze - 1, 1);
  last.prp1 = buf.iova;
  EXPECT_TRUE(IsSuccess(Io(last)));
  for (uint8_t opc : {nvm::kWriteZeroes, nvm::kVerify, nvm::kWriteUncorrectable, nvm::kCompare}) {
    EXPECT_TRUE(HasStatus(Io(IoCmd(opc, 1, nsze, 1)), kGen, sc::kLbaOutOfRange, true)) << int{opc};
  }
}

TEST_F(IoTest, FourKibNamespace) {
  DmaMemory::Buffer in = dev_->mem().Alloc(3 * 4096);
  DmaMemory::Buffer out = dev_->mem().Alloc(3 * 4096);
  Fill(in.ptr, 3 * 4096, 6);
  ASSERT_TRUE(IsSuccess(Write(2, 10, 3, in)));
  ASSERT_TRUE(IsSuccess(Read(2, 10, 3, out)));
  EXPECT_EQ(std::memcmp(in.ptr, out.ptr, 3 * 4096), 0);
  EXPECT_TRUE(HasStatus(Io(IoCmd(nvm::kRead, 2, 4096, 1)), kGen, sc::kLbaOutOfRange, true));
}

// --- Media errors ---

TEST_F(IoTest, BackendErrors) {
  DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
  dev_->emulator().controller().SetBackendFaults(1, true, false);
  EXPECT_TRUE(HasStatus(Read(1, 0, 8, buf), kMedia, sc::kUnrecoveredReadError));
  EXPECT_TRUE(IsSuccess(Write(1, 0, 8, buf)));
  dev_->emulator().controller().SetBackendFaults(1, false, true);
  EXPECT_TRUE(HasStatus(Write(1, 0, 8, buf), kMedia, sc::kWriteFault));
  EXPECT_TRUE(IsSuccess(Read(1, 0, 8, buf)));
  dev_->emulator().controller().SetBackendFaults(1, false, false);
  EXPECT_TRUE(IsSuccess(Write(1, 0, 8, buf)));
}

TEST_F(IoTest, Compare) {
  DmaMemory::Buffer data = dev_->mem().Alloc(4096);
  Fill(data.ptr, 4096, 7);
  ASSERT_TRUE(IsSuccess(Write(1, 64, 8, data)));
  Sqe c = IoCmd(nvm::kCompare, 1, 64, 8);
  c.prp1 = data.iova;
  EXPECT_TRUE(IsSuccess(Io(c)));
  data.ptr[4095] ^= 1;
  EXPECT_TRUE(HasStatus(Io(c), kMedia, sc::kCompareFailure, true));
}

TEST_F(IoTest, WriteUncorrectableThenReadFailsUntilRewritten) {
  DmaMemory::Buffer buf = dev_->mem().Alloc(4096);
  ASSERT_TRUE(IsSuccess(Io(IoCmd(nvm::kWriteUncorrectable, 1, 20, 4))));
  EXPECT_TRUE(HasStatus(Read(1, 16, 8, buf), kMedia, sc::kUnrecoveredReadError));
  EXPECT_TRUE(HasStatus(Io(IoCmd(nvm::kVerify, 1, 23, 1)), kMedia, sc::kUnrecoveredReadError));
  EXPECT_TRUE(IsSuccess(Read(1, 24, 8, buf)));
  EXPECT_TRUE(IsSuccess(Io(IoCmd(nvm::kVerify, 1, 0, 20))));
  // Rewriting part of the range clears just that part.
  Sqe w = IoCmd(nvm::kWrite, 1, 20, 2);
  w.prp1 = buf.iova;
  ASSERT_TRUE(IsSuccess(Io(w)));
  EXPECT_TRUE(IsSuccess(Read(1, 20, 2, buf)));
  EXPECT_TRUE(HasStatus(Read(1, 22, 2, buf), kMedia, sc::kUnrecoveredReadError));
  ASSERT_TRUE(IsSuccess(Io(IoCmd(nvm::kWriteZeroes, 1, 22, 2))));
  EXPECT_TRUE(IsSuccess(Read(1, 16, 8, buf)));
}

TEST_F(IoTest, VerifyReadsTheMedia) {
  EXPECT_TRUE(IsSuccess(Io(IoCmd(nvm::kVerify, 1, 0, 256))));
  dev_->emulator().controller().SetBackendFaults(1, true, false);
  EXPECT_TRUE(HasStatus(Io(IoCmd(nvm::kVerify, 1, 0, 256)), kMedia, sc::kUnrecoveredReadError));
}

// --- Write Zeroes and Dataset Management ---

TEST_F(IoTest, WriteZeroesReadsZero) {
  DmaMemory::Buffer data = dev_->mem().Alloc(64 * 1024);
  Fill(data.ptr, data.size, 8);
  ASSERT_TRUE(IsSuccess(Write(1, 0, 128, data)));
  ASSERT_TRUE(IsSuccess(Io(IoCmd(nvm::kWriteZeroes, 1, 3, 100))));
  DmaMemory::Buffer out = dev_->mem().Alloc(64 * 1024);
  ASSERT_TRUE(IsSuccess(Read(1, 0, 128, out)));
  EXPECT_EQ(std::memcmp(out.ptr, data.ptr, 3 * 512), 0);
  for (size_t i = 3 * 512; i < 103 * 512; ++i) ASSERT_EQ(out.ptr[i], 0) << i;
  EXPECT_EQ(std::memcmp(out.ptr + 103 * 512, data.ptr + 103 * 512, 25 * 512), 0);
}

TEST_F(IoTest, DatasetManagementDeallocate) {
  DmaMemory::Buffer data = dev_->mem().Alloc(64 * 1024);
  Fill(data.ptr, data.size, 9);
  ASSERT_TRUE(IsSuccess(Write(1, 0, 128, data)));
  DmaMemory::Buffer ranges = dev_->mem().Alloc(4096);
  DsmRange r[2] = {{0, 8, 0}, {0, 16, 64}};
  std::memcpy(ranges.ptr, r, sizeof(r));
  Sqe dsm = IoCmd(nvm::kDatasetManagement, 1, 0, 1);
  dsm.cdw10 = 1;  // two ranges
  dsm.cdw11 = kDsmAttrDeallocate;
  dsm.cdw12 = 0;
  dsm.prp1 = ranges.iova;
  ASSERT_TRUE(IsSuccess(Io(dsm)));
  DmaMemory::Buffer out = dev_->mem().Alloc(64 * 1024);
  ASSERT_TRUE(IsSuccess(Read(1, 0, 128, out)));
  for (size_t i = 0; i < 8 * 512; ++i) ASSERT_EQ(out.ptr[i], 0) << i;
  EXPECT_EQ(std::memcmp(out.ptr + 8 * 512, data.ptr + 8 * 512, 56 * 512), 0);
  for (size_t i = 64 * 512; i < 80 * 512; ++i) ASSERT_EQ(out.ptr[i], 0) << i;
  // A range beyond the namespace fails the whole command.
  DsmRange bad = {0, 8, (64ull << 20) / 512 - 4};
  std::memcpy(ranges.ptr, &bad, sizeof(bad));
  dsm.cdw10 = 0;
  EXPECT_TRUE(HasStatus(Io(dsm), kGen, sc::kLbaOutOfRange, true));
  // Without the deallocate attribute the ranges are hints only.
  dsm.cdw11 = 0;
  EXPECT_TRUE(IsSuccess(Io(dsm)));
}

// --- Metadata and backings ---

TEST(IoMetadataTest, SeparateMetadataBuffer) {
  emu::EmulatorOptions options;
  options.namespaces.push_back({1ull << 20, 512, 8, false});
  TestDevice dev(options);
  dev.Start();
  ASSERT_TRUE(dev.Enable());
  dev.CreateIoQueuePair(1, 16);
  DmaMemory::Buffer data = dev.mem().Alloc(4096);
  DmaMemory::Buffer md = dev.mem().Alloc(64);
  for (int i = 0; i < 4096; ++i) data.ptr[i] = static_cast<uint8_t>(i * 7);
  for (int i = 0; i < 64; ++i) md.ptr[i] = static_cast<uint8_t>(0xC0 + i);
  Sqe w = IoCmd(nvm::kWrite, 1, 8, 8);
  w.prp1 = data.iova;
  w.mptr = md.iova;
  ASSERT_TRUE(IsSuccess(dev.Io(1, w)));
  DmaMemory::Buffer data_out = dev.mem().Alloc(4096);
  DmaMemory::Buffer md_out = dev.mem().Alloc(64);
  Sqe r = IoCmd(nvm::kRead, 1, 8, 8);
  r.prp1 = data_out.iova;
  r.mptr = md_out.iova;
  ASSERT_TRUE(IsSuccess(dev.Io(1, r)));
  EXPECT_EQ(std::memcmp(data.ptr, data_out.ptr, 4096), 0);
  EXPECT_EQ(std::memcmp(md.ptr, md_out.ptr, 64), 0);
  // Unmapped metadata pointer.
  r.mptr = 0x5000'0000'0000ull;
  EXPECT_TRUE(HasStatus(dev.Io(1, r), kGen, sc::kDataTransferError));
}

TEST(IoMetadataTest, ExtendedLba) {
  emu::EmulatorOptions options;
  options.namespaces.push_back({1ull << 20, 512, 8, true});
  TestDevice dev(options);
  dev.Start();
  ASSERT_TRUE(dev.Enable());
  dev.CreateIoQueuePair(1, 16);
  DmaMemory::Buffer buf = dev.mem().Alloc(4 * 520);
  for (size_t i = 0; i < buf.size; ++i) buf.ptr[i] = static_cast<uint8_t>(i * 13 + 1);
  Sqe w = IoCmd(nvm::kWrite, 1, 0, 4);
  w.prp1 = buf.iova;
  ASSERT_TRUE(IsSuccess(dev.Io(1, w)));
  DmaMemory::Buffer out = dev.mem().Alloc(4 * 520);
  Sqe r = IoCmd(nvm::kRead, 1, 0, 4);
  r.prp1 = out.iova;
  ASSERT_TRUE(IsSuccess(dev.Io(1, r)));
  EXPECT_EQ(std::memcmp(buf.ptr, out.ptr, 4 * 520), 0);
  // A 2-block read of blocks 1..2 starts at byte 520 of the host layout.
  DmaMemory::Buffer two = dev.mem().Alloc(2 * 520);
  Sqe r2 = IoCmd(nvm::kRead, 1, 1, 2);
  r2.prp1 = two.iova;
  ASSERT_TRUE(IsSuccess(dev.Io(1, r2)));
  EXPECT_EQ(std::memcmp(buf.ptr + 520, two.ptr, 2 * 520), 0);
  DmaMemory::Buffer id = dev.mem().Alloc(4096);
  Sqe ident = AdminCmd(admin::kIdentify, 1);
  ident.prp1 = id.iova;
  ASSERT_TRUE(IsSuccess(dev.Admin(ident)));
  EXPECT_NE(reinterpret_cast<IdentifyNamespace*>(id.ptr)->flbas & kFlbasExtended, 0);
}

TEST(IoBackingTest, NullBackingReadsZero) {
  emu::EmulatorOptions options;
  options.backing = emu::BackingKind::kNull;
  TestDevice dev(options);
  dev.Start();
  ASSERT_TRUE(dev.Enable());
  dev.CreateIoQueuePair(1, 16);
  DmaMemory::Buffer buf = dev.mem().Alloc(4096);
  std::memset(buf.ptr, 0x5A, 4096);
  Sqe w = IoCmd(nvm::kWrite, 1, 0, 8);
  w.prp1 = buf.iova;
  ASSERT_TRUE(IsSuccess(dev.Io(1, w)));
  Sqe r = IoCmd(nvm::kRead, 1, 0, 8);
  r.prp1 = buf.iova;
  ASSERT_TRUE(IsSuccess(dev.Io(1, r)));
  for (int i = 0; i < 4096; ++i) ASSERT_EQ(buf.ptr[i], 0) << i;
}

TEST(IoBackingTest, DefaultNamespaceIsOneGibOf512) {
  TestDevice dev;
  dev.Start();
  ASSERT_TRUE(dev.Enable());
  DmaMemory::Buffer id = dev.mem().Alloc(4096);
  Sqe ident = AdminCmd(admin::kIdentify, 1);
  ident.prp1 = id.iova;
  ASSERT_TRUE(IsSuccess(dev.Admin(ident)));
  const auto* ns = reinterpret_cast<IdentifyNamespace*>(id.ptr);
  EXPECT_EQ(ns->nsze, (1ull << 30) / 512);
  EXPECT_EQ(ns->lbaf[ns->flbas & 0xF].lbads, 9);
}

TEST_F(IoTest, ManyQueuesInParallel) {
  for (uint16_t q = 2; q <= 4; ++q) dev_->CreateIoQueuePair(q, 32);
  std::vector<DmaMemory::Buffer> bufs;
  for (uint16_t q = 1; q <= 4; ++q) {
    for (int i = 0; i < 20; ++i) {
      DmaMemory::Buffer b = dev_->mem().Alloc(4096);
      Fill(b.ptr, 4096, static_cast<uint32_t>(q * 100 + i));
      Sqe w = IoCmd(nvm::kWrite, 1, static_cast<uint64_t>(q * 1000 + i * 8), 8);
      w.prp1 = b.iova;
      w.cid = static_cast<uint16_t>(i + 1);
      dev_->Submit(dev_->sq(q), w, false);
      bufs.push_back(b);
    }
  }
  for (uint16_t q = 1; q <= 4; ++q) dev_->RingSq(dev_->sq(q));
  for (uint16_t q = 1; q <= 4; ++q) {
    for (int i = 0; i < 20; ++i) {
      auto cqe = dev_->WaitCqe(dev_->cq(q));
      ASSERT_TRUE(IsSuccess(cqe)) << q << "/" << i;
      EXPECT_EQ(cqe->sqid, q);
    }
  }
  DmaMemory::Buffer out = dev_->mem().Alloc(4096);
  size_t k = 0;
  for (uint16_t q = 1; q <= 4; ++q) {
    for (int i = 0; i < 20; ++i, ++k) {
      ASSERT_TRUE(IsSuccess(Read(1, static_cast<uint64_t>(q * 1000 + i * 8), 8, out)));
      ASSERT_EQ(std::memcmp(out.ptr, bufs[k].ptr, 4096), 0) << q << "/" << i;
    }
  }
}

}  // namespace
}  // namespace nvmux::conformance
