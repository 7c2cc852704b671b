#include "tools/emu/dma_space.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <utility>
#include <vector>

#include "shm/base/unique_fd.h"

namespace nvmux::emu {
namespace {

class DmaSpaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fd_.Reset(::memfd_create("dma-test", MFD_CLOEXEC));
    ASSERT_EQ(::ftruncate(fd_.get(), 64 * 1024), 0);
    local_ = static_cast<uint8_t*>(::mmap(nullptr, 64 * 1024, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0));
    ASSERT_NE(local_, MAP_FAILED);
  }
  void TearDown() override { ::munmap(local_, 64 * 1024); }
  UniqueFd fd_;
  uint8_t* local_ = nullptr;
};

TEST_F(DmaSpaceTest, TranslatesWithinOneMappingOnly) {
  DmaSpace dma;
  ASSERT_TRUE(dma.Map(fd_.get(), 4096, 0x10000, 8192, true, true));
  ASSERT_TRUE(dma.Map(fd_.get(), 0, 0x12000, 4096, true, true));  // adjacent
  uint8_t* p = dma.Translate(0x10010, 16, true);
  ASSERT_NE(p, nullptr);
  p[0] = 0x5A;
  EXPECT_EQ(local_[4096 + 0x10], 0x5A);
  EXPECT_NE(dma.Translate(0x11FF0, 16, false), nullptr);
  EXPECT_EQ(dma.Translate(0x11FF0, 32, false), nullptr) << "crosses into another mapping";
  EXPECT_EQ(dma.Translate(0xFFFF, 2, false), nullptr);
  EXPECT_EQ(dma.Translate(0x13000, 1, false), nullptr);
  EXPECT_EQ(dma.Translate(0x10000, 0, false), nullptr);
  EXPECT_EQ(dma.Translate(~0ull - 4, 16, false), nullptr);
}

TEST_F(DmaSpaceTest, TranslateEachFollowsAdjacentMappingsAndStopsAtHoles) {
  DmaSpace dma;
  ASSERT_TRUE(dma.Map(fd_.get(), 4096, 0x10000, 8192, true, true));
  ASSERT_TRUE(dma.Map(fd_.get(), 32768, 0x12000, 4096, true, true));  // adjacent in IOVA, elsewhere in the file
  ASSERT_TRUE(dma.Map(fd_.get(), 0, 0x14000, 4096, true, false));     // after a hole, read-only
  std::vector<std::pair<uint8_t*, uint64_t>> pieces;
  auto add = [&](uint8_t* p, uint64_t n) { pieces.emplace_back(p, n); };
  ASSERT_TRUE(dma.TranslateEach(0x11FF0, 32, true, add));
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[0].second, 16u);
  EXPECT_EQ(pieces[1].second, 16u);
  pieces[0].first[0] = 0xA1;  // the device's own mappings of the same file
  pieces[1].first[0] = 0xB2;
  EXPECT_EQ(local_[4096 + 0x1FF0], 0xA1);
  EXPECT_EQ(local_[32768], 0xB2);
  pieces.clear();
  ASSERT_TRUE(dma.TranslateEach(0x10100, 16, false, add));
  EXPECT_EQ(pieces.size(), 1u);
  pieces.clear();
  EXPECT_FALSE(dma.TranslateEach(0x12FF0, 32, false, add)) << "runs into the hole at 0x13000";
  EXPECT_FALSE(dma.TranslateEach(0x13FF0, 32, false, add)) << "starts in the hole";
  EXPECT_FALSE(dma.TranslateEach(0x14000, 16, true, add)) << "read-only";
  EXPECT_FALSE(dma.TranslateEach(0x10000, 0, false, add));
  EXPECT_FALSE(dma.TranslateEach(~0ull - 4, 16, false, add));
  EXPECT_TRUE(pieces.empty()) << "nothing added when the range fails";
}

TEST_F(DmaSpaceTest, Permissions) {
  DmaSpace dma;
  ASSERT_TRUE(dma.Map(fd_.get(), 0, 0x10000, 4096, true, false));
  EXPECT_NE(dma.Translate(0x10000, 8, false), nullptr);
  EXPECT_EQ(dma.Translate(0x10000, 8, true), nullptr);
}

TEST_F(DmaSpaceTest, MapErrors) {
  DmaSpace dma(2);
  ASSERT_TRUE(dma.Map(fd_.get(), 0, 0x10000, 8192, true, true));
  EXPECT_EQ(dma.Map(fd_.get(), 0, 0x11000, 4096, true, true).error().code, EEXIST);
  EXPECT_EQ(dma.Map(fd_.get(), 0, 0xF000, 8192, true, true).error().code, EEXIST);
  EXPECT_EQ(dma.Map(fd_.get(), 0, 0x20001, 4096, true, true).error().code, EINVAL);
  EXPECT_EQ(dma.Map(fd_.get(), 0, 0x20000, 0, true, true).error().code, EINVAL);
  EXPECT_EQ(dma.Map(fd_.get(), 64 * 1024, 0x20000, 4096, true, true).error().code, EINVAL);
  EXPECT_EQ(dma.Map(fd_.get(), 0, ~0ull & ~0xFFFull, 8192, true, true).error().code, EINVAL);
  EXPECT_EQ(dma.Map(-1, 0, 0x20000, 4096, true, true).error().code, EBADF);
  ASSERT_TRUE(dma.Map(fd_.get(), 0, 0x20000, 4096, true, true));
  EXPECT_EQ(dma.Map(fd_.get(), 0, 0x30000, 4096, true, true).error().code, ENOSPC);
}

TEST_F(DmaSpaceTest, UnmapExactOnly) {
  DmaSpace dma;
  ASSERT_TRUE(dma.Map(fd_.get(), 0, 0x10000, 8192, true, true));
  EXPECT_EQ(dma.Unmap(0x10000, 4096).error().code, ENOENT);
  EXPECT_EQ(dma.Unmap(0x11000, 4096).error().code, ENOENT);
  EXPECT_TRUE(dma.Unmap(0x10000, 8192));
  EXPECT_EQ(dma.Translate(0x10000, 8, false), nullptr);
  EXPECT_EQ(dma.count(), 0u);
}

TEST_F(DmaSpaceTest, FdlessRegionsAreRecordedButNeverTranslated) {
  DmaSpace dma(4);
  ASSERT_TRUE(dma.MapFdless(0x20000, 8192, true, true));
  ASSERT_TRUE(dma.Map(fd_.get(), 0, 0x1F000, 4096, true, true));  // adjacent, below
  EXPECT_EQ(dma.count(), 2u);
  EXPECT_EQ(dma.fdless_count(), 1u);
  EXPECT_EQ(dma.Translate(0x20000, 16, false), nullptr);
  EXPECT_EQ(dma.Translate(0x20000, 16, true), nullptr);
  EXPECT_NE(dma.Translate(0x1F000, 16, false), nullptr);
  EXPECT_FALSE(dma.TranslateEach(0x1FF00, 0x200, false, [](uint8_t*, uint64_t) { FAIL() << "called"; }))
      << "a range running from shared memory into an fd-less region";
  EXPECT_TRUE(dma.TouchesFdless(0x1FF00, 0x200));
  EXPECT_TRUE(dma.TouchesFdless(0x21FFF, 1));
  EXPECT_FALSE(dma.TouchesFdless(0x1F000, 4096));
  EXPECT_FALSE(dma.TouchesFdless(0x22000, 4096));
  // Same argument and overlap checks as Map.
  EXPECT_EQ(dma.MapFdless(0x21000, 4096, true, false).error().code, EEXIST);
  EXPECT_EQ(dma.MapFdless(0x30001, 4096, true, false).error().code, EINVAL);
  EXPECT_EQ(dma.MapFdless(0x30000, 0, true, false).error().code, EINVAL);
  EXPECT_EQ(dma.Map(fd_.get(), 0, 0x21000, 4096, true, true).error().code, EEXIST);
  // Unmap: exact range only; then the space is free for a real mapping.
  EXPECT_EQ(dma.Unmap(0x20000, 4096).error().code, ENOENT);
  ASSERT_TRUE(dma.Unmap(0x20000, 8192));
  EXPECT_EQ(dma.fdless_count(), 0u);
  ASSERT_TRUE(dma.Map(fd_.get(), 0, 0x20000, 8192, true, true));
  EXPECT_NE(dma.Translate(0x20000, 16, true), nullptr);
  // Fd-less regions count against the limit; UnmapAll forgets them.
  ASSERT_TRUE(dma.MapFdless(0x40000, 4096, true, false));
  ASSERT_TRUE(dma.MapFdless(0x50000, 4096, true, false));
  EXPECT_EQ(dma.MapFdless(0x60000, 4096, true, false).error().code, ENOSPC);
  dma.UnmapAll();
  EXPECT_EQ(dma.count(), 0u);
  EXPECT_EQ(dma.fdless_count(), 0u);
}

}  // namespace
}  // namespace nvmux::emu
