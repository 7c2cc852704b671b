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

}  // namespace
}  // namespace nvmux
