// The driver's data path against a real nvmux-emu: Read/Write from one block
// to several MiB (split at MDTS and at the 128 KiB optimal I/O boundary),
// 4096-byte blocks, metadata (separate buffer and extended LBA), and
// scatter-gather payloads described by PRPs (page-aligned pieces) or, when
// PRPs cannot describe them, by an SGL. Data is written, read back and
// compared byte for byte.
#include <cstring>
#include <vector>

#include "test/integration/driver_test_support.h"

namespace nvmux::test {
namespace {

// MDTS 2: 16 KiB per command, so splitting is easy to reach.
class IoTest : public DriverTest {
 protected:
  std::vector<std::string> EmuArgs() const override { return {"--mdts", "2", "--ns", "size=256M"}; }

  struct Range {
    uint64_t lba;
    uint32_t count;
    bool split;  // expected to be cut into children
  };
  // Writes and reads back every range, checking the split counter per request.
  void WriteReadRanges(Namespace& n, const std::vector<Range>& ranges) {
    for (const Range& r : ranges) {
      SCOPED_TRACE("LBA " + std::to_string(r.lba) + ", " + std::to_string(r.count) + " blocks");
      uint64_t before = qpair().statistics().split;
      WritePattern(n, r.lba, r.count, static_cast<uint32_t>(r.lba * 31 + r.count));
      EXPECT_EQ(qpair().statistics().split - before, r.split ? 1u : 0u) << "write";
      ExpectPattern(n, r.lba, r.count, static_cast<uint32_t>(r.lba * 31 + r.count));
      EXPECT_EQ(qpair().statistics().split - before, r.split ? 2u : 0u) << "read";
    }
    // Nothing spilled into a neighbour.
    for (const Range& r : ranges) ExpectPattern(n, r.lba, r.count, static_cast<uint32_t>(r.lba * 31 + r.count));
  }
};

TEST_F(IoTest, ReadWriteFromOneBlockToFourMibSplitAtMdtsAndNoiob) {
  Namespace& n = ns();
  ASSERT_EQ(n.sector_size(), 512u);
  ASSERT_EQ(ctrlr().max_transfer_size(), 16384u);
  ASSERT_EQ(n.optimal_io_boundary(), 256u);  // 128 KiB
  WriteReadRanges(n, {
                         {0, 1, false},
                         {1, 7, false},
                         {8, 32, false},        // exactly MDTS
                         {240, 32, true},       // MDTS-sized, across the 128 KiB boundary at 256
                         {100, 33, true},       // one block over MDTS
                         {1000, 255, true},     // across 1024
                         {4096, 8192, true},    // 4 MiB: 256 children, more than the queue's trackers
                         {n.num_sectors() - 3, 3, false},  // the last blocks
                     });
  EXPECT_GT(qpair().statistics().queued, 0u) << "4 MiB in 16 KiB children must wait for trackers";
  EXPECT_EQ(qpair().outstanding(), 0u);
}

TEST_F(IoTest, RequestNeedingMoreRequestsThanTheQueuePairHasIsRefusedWithEnomem) {
  // 8 MiB = 512 children + the parent > the 512 requests of the queue pair.
  DmaBuffer buf = Alloc(8u << 20);
  Done d;
  Status st = qpair().Write(ns(), buf.data(), 0, 16384, OnDone, &d);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ENOMEM) << st.error().ToString();
  EXPECT_EQ(qpair().outstanding(), 0u);
  EXPECT_TRUE(PollUntil(qpair(), [] { return true; }));
  EXPECT_FALSE(d.done());
}

// IoQpairOptions' user-supplied queue memory: the rings live where the
// caller said (the device writes completions there), and bad buffers are
// refused naming the value.
TEST_F(IoTest, QueuePairOnUserSuppliedQueueMemory) {
  IoQpairOptions o;
  o.io_queue_size = 64;
  DmaBuffer sq = Alloc(64 * sizeof(spec::Sqe));
  DmaBuffer cq = Alloc(64 * sizeof(spec::Cqe));
  std::memset(cq.data(), 0xAB, cq.size());
  o.sq_buffer = sq.data();
  o.sq_buffer_size = sq.size();
  o.cq_buffer = cq.data();
  o.cq_buffer_size = cq.size();
  auto q = ctrlr().AllocIoQpair(o);
  ASSERT_TRUE(q) << q.error().ToString();
  DmaBuffer data = Alloc(8 * 512);
  FillPattern(data.data(), data.size(), 77);
  spec::Cqe w = Run(**q, [&](CompletionFn fn, void* arg) { return (*q)->Write(ns(), data.data(), 40, 8, fn, arg); });
  EXPECT_FALSE(IsError(w));
  std::memset(data.data(), 0, data.size());
  spec::Cqe r = Run(**q, [&](CompletionFn fn, void* arg) { return (*q)->Read(ns(), data.data(), 40, 8, fn, arg); });
  EXPECT_FALSE(IsError(r));
  EXPECT_EQ(FirstPatternMismatch(data.data(), data.size(), 77), -1);
  // The commands went through the caller's rings.
  const auto* sqe = static_cast<const spec::Sqe*>(sq.data());
  EXPECT_EQ(sqe[0].opc, 0x01) << "the write is the SQ's first entry";
  EXPECT_EQ(sqe[1].opc, 0x02) << "the read is its second";
  const auto* cqe = static_cast<const spec::Cqe*>(cq.data());
  EXPECT_EQ(cqe[1].cid, r.cid) << "the device posted into the caller's CQ";
  q->reset();

  IoQpairOptions bad = o;
  bad.sq_buffer = static_cast<uint8_t*>(sq.data()) + 64;
  auto misaligned = ctrlr().AllocIoQpair(bad);
  ASSERT_FALSE(misaligned);
  EXPECT_EQ(misaligned.error().code, EINVAL);
  EXPECT_NE(misaligned.error().message.find("not 4 KiB-aligned"), std::string::npos) << misaligned.error().message;
  bad = o;
  bad.cq_buffer_size = 512;
  auto small = ctrlr().AllocIoQpair(bad);
  ASSERT_FALSE(small);
  EXPECT_NE(small.error().message.find("512 bytes is too small"), std::string::npos) << small.error().message;
  alignas(4096) static uint8_t not_dma[4096 * 2];
  bad = o;
  bad.sq_buffer = not_dma;
  bad.sq_buffer_size = sizeof not_dma;
  auto heap = ctrlr().AllocIoQpair(bad);
  ASSERT_FALSE(heap);
  EXPECT_NE(heap.error().message.find("not DMA memory"), std::string::npos) << heap.error().message;
}

class Io4kTest : public IoTest {
 protected:
  std::vector<std::string> EmuArgs() const override { return {"--mdts", "2", "--ns", "size=64M,lbads=4096"}; }
};

TEST_F(Io4kTest, ReadWriteOn4096ByteBlocks) {
  Namespace& n = ns();
  ASSERT_EQ(n.sector_size(), 4096u);
  ASSERT_EQ(n.extended_sector_size(), 4096u);
  ASSERT_EQ(n.num_sectors(), (64u << 20) / 4096);
  ASSERT_EQ(n.optimal_io_boundary(), 32u);
  WriteReadRanges(n, {
                         {0, 1, false},
                         {1, 3, false},
                         {4, 4, false},      // exactly MDTS
                         {30, 4, true},      // across the boundary at 32
                         {64, 40, true},
                         {256, 256, true},   // 1 MiB
                         {n.num_sectors() - 1, 1, false},
                     });
}

// Separate metadata (8 and 16 bytes) and extended LBAs (520 and 4160 bytes).
class MetadataTest : public IoTest {
 protected:
  std::vector<std::string> EmuArgs() const override {
    return {"--mdts", "2", "--ns", "size=64M,ms=8", "--ns", "size=64M,lbads=4096,ms=16", "--ns", "size=64M,ms=8,ext=1",
            "--ns", "size=64M,lbads=4096,ms=64,ext=1"};
  }
};

TEST_F(MetadataTest, SeparateMetadataBufferRoundTripsAndSplits) {
  for (uint32_t nsid : {1u, 2u}) {
    Namespace& n = ns(nsid);
    SCOPED_TRACE("namespace " + std::to_string(nsid));
    ASSERT_FALSE(n.extended_lba());
    ASSERT_EQ(n.md_size(), nsid == 1 ? 8u : 16u);
    for (uint32_t count : {1u, 7u, 40u}) {
      uint64_t lba = 100;
      size_t data_bytes = size_t{count} * n.sector_size(), md_bytes = size_t{count} * n.md_size();
      DmaBuffer data = Alloc(data_bytes), md = Alloc(md_bytes), rdata = Alloc(data_bytes), rmd = Alloc(md_bytes);
      FillPattern(data.data(), data_bytes, count);
      FillPattern(md.data(), md_bytes, count + 1000);
      uint64_t split_before = qpair().statistics().split;
      spec::Cqe c = Run([&](CompletionFn fn, void* arg) {
        return qpair().WriteWithMd(n, data.data(), md.data(), lba, count, fn, arg);
      });
      ASSERT_FALSE(IsError(c)) << StatusOf(c);
      c = Run([&](CompletionFn fn, void* arg) {
        return qpair().ReadWithMd(n, rdata.data(), rmd.data(), lba, count, fn, arg);
      });
      ASSERT_FALSE(IsError(c)) << StatusOf(c);
      EXPECT_EQ(FirstPatternMismatch(rdata.data(), data_bytes, count), -1) << count << " blocks: data";
      EXPECT_EQ(FirstPatternMismatch(rmd.data(), md_bytes, count + 1000), -1) << count << " blocks: metadata";
      bool split = data_bytes > ctrlr().max_transfer_size();
      EXPECT_EQ(qpair().statistics().split - split_before, split ? 2u : 0u);
    }
    // The device keeps data and metadata apart: corrupting a block's data
    // (the emulator inverts its data bytes) leaves its metadata alone.
    auto reply = emu_->Control("corrupt lba=100 ns=" + std::to_string(nsid));
    ASSERT_TRUE(reply && reply->rfind("ok", 0) == 0) << (reply ? *reply : reply.error().message);
    DmaBuffer rdata = Alloc(n.sector_size()), rmd = Alloc(n.md_size()), want = Alloc(n.sector_size());
    spec::Cqe c = Run([&](CompletionFn fn, void* arg) {
      return qpair().ReadWithMd(n, rdata.data(), rmd.data(), 100, 1, fn, arg);
    });
    ASSERT_FALSE(IsError(c)) << StatusOf(c);
    FillPattern(want.data(), n.sector_size(), 40);
    auto* w = static_cast<uint8_t*>(want.data());
    for (uint32_t i = 0; i < n.sector_size(); ++i) w[i] = static_cast<uint8_t>(~w[i]);
    EXPECT_EQ(std::memcmp(rdata.data(), want.data(), n.sector_size()), 0);
    EXPECT_EQ(FirstPatternMismatch(rmd.data(), n.md_size(), 40 + 1000), -1);
  }
}

TEST_F(MetadataTest, ExtendedLbaBufferHoldsDataAndMetadataInterleaved) {
  for (uint32_t nsid : {3u, 4u}) {
    Namespace& n = ns(nsid);
    SCOPED_TRACE("namespace " + std::to_string(nsid));
    ASSERT_TRUE(n.extended_lba());
    ASSERT_EQ(n.extended_sector_size(), nsid == 3 ? 520u : 4160u);
    // 40 blocks: children of 31 (520-byte) or 3 (4160-byte) blocks under the 16 KiB MDTS.
    WriteReadRanges(n, {{0, 1, false}, {10, 40, true}});
    // Layout check: the device inverts one block's data bytes; the metadata
    // that follows them in the buffer is unchanged.
    auto reply = emu_->Control("corrupt lba=10 ns=" + std::to_string(nsid));
    ASSERT_TRUE(reply && reply->rfind("ok", 0) == 0) << (reply ? *reply : reply.error().message);
    uint32_t block = n.extended_sector_size();
    DmaBuffer got = Alloc(block), want = Alloc(block);
    spec::Cqe c = Run([&](CompletionFn fn, void* arg) { return qpair().Read(n, got.data(), 10, 1, fn, arg); });
    ASSERT_FALSE(IsError(c)) << StatusOf(c);
    FillPattern(want.data(), block, 10 * 31 + 40);
    auto* w = static_cast<uint8_t*>(want.data());
    for (uint32_t i = 0; i < n.sector_size(); ++i) w[i] = static_cast<uint8_t>(~w[i]);
    EXPECT_EQ(std::memcmp(got.data(), want.data(), block), 0);
  }
}

TEST_F(MetadataTest, SeparateMetadataIsRefusedOnAnExtendedLbaNamespace) {
  DmaBuffer data = Alloc(4096), md = Alloc(4096);
  Done d;
  Status st = qpair().ReadWithMd(ns(3), data.data(), md.data(), 0, 1, OnDone, &d);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EINVAL);
  EXPECT_NE(st.error().message.find("extended LBA"), std::string::npos) << st.error().message;
  EXPECT_FALSE(d.done());
}

// ---- scatter-gather payloads ----

class VectoredTest : public IoTest {
 protected:
  // Submits ReadV or WriteV of the whole list at `lba` and waits.
  spec::Cqe Vectored(bool write, SgList& list, uint64_t lba) {
    auto count = static_cast<uint32_t>(list.total() / ns().sector_size());
    list.done = Done{};
    Status st = write ? qpair().WriteV(ns(), lba, count, SgList::Completed, &list, 0, SgList::Reset, SgList::Next)
                      : qpair().ReadV(ns(), lba, count, SgList::Completed, &list, 0, SgList::Reset, SgList::Next);
    if (!st) {
      ADD_FAILURE() << (write ? "WriteV: " : "ReadV: ") << st.error().ToString();
      return spec::Cqe{};
    }
    EXPECT_TRUE(PollUntil(qpair(), [&] { return list.done.done(); }));
    EXPECT_EQ(list.done.calls, 1);
    return list.done.cpl;
  }
  // WriteV of the pieces, checked by a contiguous Read; then ReadV into the
  // cleared pieces, checked piece by piece.
  void RoundTrip(SgList& list, uint64_t lba, uint32_t seed) {
    uint64_t total = list.total();
    ASSERT_EQ(total % 512, 0u);
    std::vector<uint8_t> expected(total);
    FillPattern(expected.data(), total, seed);
    uint64_t at = 0;
    for (const Sge& s : list.pieces) {
      std::memcpy(s.address, expected.data() + at, s.length);
      at += s.length;
    }
    spec::Cqe c = Vectored(true, list, lba);
    ASSERT_FALSE(IsError(c)) << "WriteV: " << StatusOf(c);
    auto count = static_cast<uint32_t>(total / 512);
    DmaBuffer flat = Alloc(total);
    c = Run([&](CompletionFn fn, void* arg) { return qpair().Read(ns(), flat.data(), lba, count, fn, arg); });
    ASSERT_FALSE(IsError(c)) << StatusOf(c);
    EXPECT_EQ(std::memcmp(flat.data(), expected.data(), total), 0) << "WriteV data, read back contiguously";
    for (const Sge& s : list.pieces) std::memset(s.address, 0, s.length);
    c = Vectored(false, list, lba);
    ASSERT_FALSE(IsError(c)) << "ReadV: " << StatusOf(c);
    at = 0;
    for (size_t i = 0; i < list.pieces.size(); ++i) {
      const Sge& s = list.pieces[i];
      EXPECT_EQ(std::memcmp(s.address, expected.data() + at, s.length), 0) << "piece " << i << " after ReadV";
      at += s.length;
    }
  }
  std::vector<DmaBuffer> buffers_;
  uint8_t* NewBuffer(size_t bytes) {
    buffers_.push_back(Alloc(bytes));
    return static_cast<uint8_t*>(buffers_.back().data());
  }
};

TEST_F(VectoredTest, PageAlignedPiecesFromSeparateBuffersGoThroughPrps) {
  SgList list;
  for (uint32_t pages : {1u, 2u, 1u, 4u, 3u, 5u}) list.pieces.push_back({NewBuffer(pages * 4096), pages * 4096});
  ASSERT_EQ(list.total(), 16u * 4096);  // 64 KiB: four 16 KiB children
  uint64_t split_before = qpair().statistics().split;
  RoundTrip(list, 2040, 5);  // across the boundary at 2048 as well
  EXPECT_EQ(qpair().statistics().split - split_before, 3u);  // WriteV, Read, ReadV
}

TEST_F(VectoredTest, UnalignedPiecesFallBackToAnSgl) {
  ASSERT_TRUE(ctrlr().sgl_supported());
  // Pieces that start and end inside pages (one at an odd address, lengths
  // not multiples of four): no PRP list can describe them.
  SgList list;
  uint32_t sizes[] = {1000, 2000, 3, 1093, 4096, 777, 5000, 3320, 63, 2937, 191};
  uint32_t offsets[] = {4, 100, 1, 12, 2048, 0, 8, 4000, 16, 64, 4};
  uint64_t total = 0;
  for (size_t i = 0; i < std::size(sizes); ++i) {
    list.pieces.push_back({NewBuffer(16384) + offsets[i], sizes[i]});
    total += sizes[i];
  }
  ASSERT_EQ(total, 40u * 512);  // 40 blocks: children of 32 + 8 blocks, cut inside pieces
  RoundTrip(list, 3000, 6);
}

TEST_F(VectoredTest, SglOfAFullTrackerPageOf256Descriptors) {
  // 256 pieces of 64 bytes at odd addresses: exactly one 16 KiB command, the
  // most descriptors one tracker page holds.
  uint8_t* base = NewBuffer(256 * 128);
  SgList list;
  for (uint32_t i = 0; i < 256; ++i) list.pieces.push_back({base + i * 128 + 1, 64});
  RoundTrip(list, 4096, 7);
}

TEST_F(VectoredTest, PayloadBeyondOneSglPageCompletesWithInvalidField) {
  // 512 pieces of 32 bytes in one command: more than a tracker page's 256
  // descriptors. The request completes (never hangs) with 0/02.
  uint8_t* base = NewBuffer(512 * 64);
  SgList list;
  for (uint32_t i = 0; i < 512; ++i) list.pieces.push_back({base + i * 64 + 4, 32});
  spec::Cqe c = Vectored(true, list, 0);
  EXPECT_EQ(c.sct(), 0);
  EXPECT_EQ(c.sc(), spec::sc::kInvalidField);
  EXPECT_EQ(qpair().outstanding(), 0u);
}

TEST_F(VectoredTest, PieceOutsideDmaMemoryCompletesWithInvalidField) {
  std::vector<uint8_t> heap(4096);
  SgList list;
  list.pieces.push_back({NewBuffer(4096), 4096});
  list.pieces.push_back({heap.data(), 4096});
  spec::Cqe c = Vectored(true, list, 0);
  EXPECT_EQ(c.sct(), 0);
  EXPECT_EQ(c.sc(), spec::sc::kInvalidField);
}

}  // namespace
}  // namespace nvmux::test
