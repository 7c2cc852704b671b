#include "io_split.h"

#include <gtest/gtest.h>

namespace nvmux {
namespace {

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

}  // namespace
}  // namespace nvmux
