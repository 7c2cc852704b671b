#include "io_split.h"

#include <gtest/gtest.h>

namespace nvmux {
namespace {

// The mask (power-of-two boundary) and the division give the same count,
// including at and just before a boundary and beyond 2^32 blocks.
TEST(IoSplit, BlocksToBoundaryWithAndWithoutAPowerOfTwo) {
  for (uint32_t noiob : {1u, 2u, 32u, 256u, 3u, 96u, 1000u}) {
    for (uint64_t lba : {0ull, 1ull, 31ull, 32ull, 95ull, 96ull, 255ull, 256ull, 999ull, (1ull << 40) + 7}) {
      EXPECT_EQ(BlocksToBoundary(lba, noiob), noiob - lba % noiob) << "lba " << lba << " noiob " << noiob;
    }
  }
  EXPECT_EQ(BlocksToBoundary(30, 32), 2u);
  EXPECT_EQ(BlocksToBoundary(32, 32), 32u);
  EXPECT_EQ(BlocksToBoundary(100, 96), 92u);
}

TEST(IoSplit, NoLimitsIsOneChild) {
  IoChunk out[4];
  ASSERT_EQ(SplitIo(100, 1000, 512, 0, 0, out), 1u);
  EXPECT_EQ(out[0].lba, 100u);
  EXPECT_EQ(out[0].nlb, 1000u);
  EXPECT_EQ(out[0].byte_offset, 0u);
}

TEST(IoSplit, SplitsByMaxTransferSize) {
  IoChunk out[4];
  // MDTS 5 with 4 KiB pages = 128 KiB = 256 blocks of 512 B.
  ASSERT_EQ(SplitIo(0, 600, 512, 128 * 1024, 0, out), 3u);
  EXPECT_EQ(out[0].nlb, 256u);
  EXPECT_EQ(out[1].lba, 256u);
  EXPECT_EQ(out[1].byte_offset, 128u * 1024);
  EXPECT_EQ(out[2].nlb, 88u);
  EXPECT_EQ(out[2].byte_offset, 512u * 512);
}

TEST(IoSplit, NeverCrossesTheOptimalIoBoundary) {
  IoChunk out[4];
  ASSERT_EQ(SplitIo(60, 10, 4096, 0, 64, out), 2u);
  EXPECT_EQ(out[0].lba, 60u);
  EXPECT_EQ(out[0].nlb, 4u);
  EXPECT_EQ(out[1].lba, 64u);
  EXPECT_EQ(out[1].nlb, 6u);
  EXPECT_EQ(out[1].byte_offset, 4u * 4096);
  // Aligned and within one stripe: untouched.
  ASSERT_EQ(SplitIo(64, 64, 4096, 0, 64, out), 1u);
}

TEST(IoSplit, BothLimitsTogether) {
  IoChunk out[8];
  // 16-block stripes, 8-block transfers, starting mid-stripe.
  ASSERT_EQ(SplitIo(12, 30, 512, 8 * 512, 16, out), 5u);
  uint32_t expect_nlb[] = {4, 8, 8, 8, 2};
  uint64_t expect_lba[] = {12, 16, 24, 32, 40};
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(out[i].nlb, expect_nlb[i]) << i;
    EXPECT_EQ(out[i].lba, expect_lba[i]) << i;
  }
}

TEST(IoSplit, ReportsTheCountWhenStorageIsShort) {
  IoChunk out[2];
  EXPECT_EQ(SplitIo(0, 1000, 512, 512 * 100, 0, out), 10u);
  EXPECT_EQ(out[1].lba, 100u);
}

TEST(IoSplit, ChildrenCarryTheirDataLength) {
  IoChunk out[4];
  ASSERT_EQ(SplitIo(0, 600, 512, 128 * 1024, 0, out), 3u);
  EXPECT_EQ(out[0].data_bytes, 128u * 1024);
  EXPECT_EQ(out[2].data_bytes, 88u * 512);
  EXPECT_EQ(out[2].metadata_offset, 0u);
  EXPECT_EQ(out[2].metadata_bytes, 0u);
}

TEST(IoSplitMetadata, WithoutMetadataMatchesSplitIo) {
  IoChunk a[8];
  IoChunk b[8];
  auto n = SplitIoWithMetadata(12, 30, BlockLayout{512, 0, false}, SplitLimits{8 * 512, 16}, a);
  ASSERT_TRUE(n) << n.error().message;
  ASSERT_EQ(*n, SplitIo(12, 30, 512, 8 * 512, 16, b));
  for (size_t i = 0; i < *n; ++i) {
    EXPECT_EQ(a[i].lba, b[i].lba) << i;
    EXPECT_EQ(a[i].nlb, b[i].nlb) << i;
    EXPECT_EQ(a[i].byte_offset, b[i].byte_offset) << i;
    EXPECT_EQ(a[i].data_bytes, b[i].data_bytes) << i;
  }
}

TEST(IoSplitMetadata, SeparateMetadataGetsItsOwnOffsetsAndIsNotCountedByMdts) {
  IoChunk out[8];
  // 4 KiB blocks + 8 bytes of separate metadata, MDTS 128 KiB = 32 blocks
  // (the metadata bytes do not count), NOIOB 48 blocks, starting at LBA 40.
  auto n = SplitIoWithMetadata(40, 100, BlockLayout{4096, 8, false}, SplitLimits{128 * 1024, 48}, out);
  ASSERT_TRUE(n) << n.error().message;
  ASSERT_EQ(*n, 5u);
  // 40..47 (NOIOB), 48..79 (MDTS), 80..95 (NOIOB), 96..127 (MDTS), 128..139.
  uint64_t lba[] = {40, 48, 80, 96, 128};
  uint32_t nlb[] = {8, 32, 16, 32, 12};
  uint64_t done = 0;
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(out[i].lba, lba[i]) << i;
    EXPECT_EQ(out[i].nlb, nlb[i]) << i;
    EXPECT_EQ(out[i].byte_offset, done * 4096) << i;
    EXPECT_EQ(out[i].data_bytes, nlb[i] * 4096ull) << i;
    EXPECT_EQ(out[i].metadata_offset, done * 8) << i;
    EXPECT_EQ(out[i].metadata_bytes, nlb[i] * 8ull) << i;
    done += nlb[i];
  }
  EXPECT_EQ(done, 100u);
}

TEST(IoSplitMetadata, ExtendedLbaInterleavesAndMdtsCountsTheMetadata) {
  IoChunk out[8];
  // 512 + 8 byte blocks interleaved: a 4 KiB MDTS fits 7 blocks (7 * 520 =
  // 3640), not 8 (4160).
  auto n = SplitIoWithMetadata(0, 20, BlockLayout{512, 8, true}, SplitLimits{4096, 0}, out);
  ASSERT_TRUE(n) << n.error().message;
  ASSERT_EQ(*n, 3u);
  EXPECT_EQ(out[0].nlb, 7u);
  EXPECT_EQ(out[0].data_bytes, 7u * 520);
  EXPECT_EQ(out[1].lba, 7u);
  EXPECT_EQ(out[1].byte_offset, 7u * 520);
  EXPECT_EQ(out[2].lba, 14u);
  EXPECT_EQ(out[2].nlb, 6u);
  EXPECT_EQ(out[2].byte_offset, 14u * 520);
  EXPECT_EQ(out[2].data_bytes, 6u * 520);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(out[i].metadata_offset, 0u) << i;
    EXPECT_EQ(out[i].metadata_bytes, 0u) << i;
  }
  // Exactly one block per command is allowed.
  auto one = SplitIoWithMetadata(0, 3, BlockLayout{512, 8, true}, SplitLimits{520, 0}, out);
  ASSERT_TRUE(one);
  EXPECT_EQ(*one, 3u);
}

TEST(IoSplitMetadata, NoCommandExceedsTheNlbField) {
  IoChunk out[4];
  auto n = SplitIoWithMetadata(0, 70000, BlockLayout{512, 0, false}, SplitLimits{}, out);
  ASSERT_TRUE(n);
  ASSERT_EQ(*n, 2u);
  EXPECT_EQ(out[0].nlb, kMaxBlocksPerCommand);
  EXPECT_EQ(out[1].nlb, 70000u - kMaxBlocksPerCommand);
}

TEST(IoSplitMetadata, RejectsImpossibleGeometryNamingTheValue) {
  IoChunk out[4];
  auto small = SplitIoWithMetadata(0, 8, BlockLayout{512, 8, true}, SplitLimits{516, 0}, out);
  ASSERT_FALSE(small);
  EXPECT_EQ(small.error().code, EINVAL);
  EXPECT_NE(small.error().message.find("516"), std::string::npos) << small.error().message;
  EXPECT_NE(small.error().message.find("520"), std::string::npos) << small.error().message;
  // Separate metadata does not count: 512 bytes of MDTS still fits a block.
  EXPECT_TRUE(SplitIoWithMetadata(0, 8, BlockLayout{512, 8, false}, SplitLimits{512, 0}, out));
  auto zero = SplitIoWithMetadata(7, 0, BlockLayout{}, SplitLimits{}, out);
  ASSERT_FALSE(zero);
  EXPECT_NE(zero.error().message.find("0 blocks at LBA 7"), std::string::npos) << zero.error().message;
  auto no_block = SplitIoWithMetadata(0, 1, BlockLayout{0, 8, false}, SplitLimits{}, out);
  ASSERT_FALSE(no_block);
  EXPECT_NE(no_block.error().message.find("block size 0"), std::string::npos);
}

TEST(SliceSegments, AtSegmentBoundaries) {
  IovaSegment in[] = {{0x10000, 4096}, {0x30000, 8192}, {0x50000, 4096}};
  IovaSegment out[4];
  ASSERT_EQ(SliceSegments(in, 4096, 8192, out), 1u);
  EXPECT_EQ(out[0].iova, 0x30000u);
  EXPECT_EQ(out[0].length, 8192u);
  ASSERT_EQ(SliceSegments(in, 0, 16384, out), 3u);
  EXPECT_EQ(out[2].iova, 0x50000u);
  EXPECT_EQ(out[2].length, 4096u);
  ASSERT_EQ(SliceSegments(in, 4096, 12288, out), 2u);
  EXPECT_EQ(out[0].iova, 0x30000u);
  EXPECT_EQ(out[1].iova, 0x50000u);
  EXPECT_EQ(out[1].length, 4096u);
}

TEST(SliceSegments, InTheMiddleOfSegments) {
  IovaSegment in[] = {{0x10000, 4096}, {0x30000, 8192}, {0x50000, 4096}};
  IovaSegment out[4];
  // Within one segment.
  ASSERT_EQ(SliceSegments(in, 5000, 1000, out), 1u);
  EXPECT_EQ(out[0].iova, 0x30000u + 904);
  EXPECT_EQ(out[0].length, 1000u);
  // Starting in the first, ending in the last.
  ASSERT_EQ(SliceSegments(in, 100, 4096 + 8192 + 50 - 100, out), 3u);
  EXPECT_EQ(out[0].iova, 0x10000u + 100);
  EXPECT_EQ(out[0].length, 3996u);
  EXPECT_EQ(out[1].iova, 0x30000u);
  EXPECT_EQ(out[1].length, 8192u);
  EXPECT_EQ(out[2].iova, 0x50000u);
  EXPECT_EQ(out[2].length, 50u);
}

TEST(SliceSegments, CountsWhenStorageIsShortAndSkipsEmptySegments) {
  IovaSegment in[] = {{0x10000, 10}, {0x20000, 0}, {0x30000, 10}, {0x40000, 10}};
  IovaSegment out[1];
  EXPECT_EQ(SliceSegments(in, 5, 20, out), 3u);
  EXPECT_EQ(out[0].iova, 0x10005u);
  EXPECT_EQ(out[0].length, 5u);
  EXPECT_EQ(SliceSegments(in, 5, 0, out), 0u);
  // Past the end: only the bytes that exist are described.
  EXPECT_EQ(SliceSegments(in, 25, 100, out), 1u);
  EXPECT_EQ(out[0].iova, 0x40005u);
  EXPECT_EQ(out[0].length, 5u);
  EXPECT_EQ(SliceSegments(in, 30, 1, out), 0u);
}

// The children of a split cover the parent's scatter list exactly.
TEST(SliceSegments, CutsAParentIntoItsChildren) {
  IovaSegment parent[] = {{0x100000, 3000}, {0x200000, 10000}, {0x300000, 7480}};  // 20480 = 40 blocks
  IoChunk chunks[8];
  auto n = SplitIoWithMetadata(0, 40, BlockLayout{512, 0, false}, SplitLimits{16 * 512, 0}, chunks);
  ASSERT_TRUE(n);
  ASSERT_EQ(*n, 3u);
  uint64_t total = 0;
  for (size_t i = 0; i < *n; ++i) {
    IovaSegment child[4];
    size_t m = SliceSegments(parent, chunks[i].byte_offset, chunks[i].data_bytes, child);
    ASSERT_LE(m, 4u);
    uint64_t bytes = 0;
    for (size_t j = 0; j < m; ++j) bytes += child[j].length;
    EXPECT_EQ(bytes, chunks[i].data_bytes) << i;
    total += bytes;
  }
  EXPECT_EQ(total, 20480u);
  IovaSegment child[4];
  ASSERT_EQ(SliceSegments(parent, chunks[1].byte_offset, chunks[1].data_bytes, child), 2u);
  EXPECT_EQ(child[0].iova, 0x200000u + 8192 - 3000);
  EXPECT_EQ(child[1].iova, 0x300000u);
  EXPECT_EQ(child[1].length, 16384u - 13000);
}

}  // namespace
}  // namespace nvmux
