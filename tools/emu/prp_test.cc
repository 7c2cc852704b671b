#include "tools/emu/prp.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "shm/base/unique_fd.h"

namespace nvmux::emu {
namespace {

using spec::sc::kDataTransferError;
using spec::sc::kPrpOffsetInvalid;

constexpr uint64_t kBase = 0x100000;
constexpr uint64_t kSize = 1 << 20;

class PrpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fd_.Reset(::memfd_create("prp-test", MFD_CLOEXEC));
    ASSERT_EQ(::ftruncate(fd_.get(), kSize), 0);
    mem_ = static_cast<uint8_t*>(::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0));
    ASSERT_TRUE(dma_.Map(fd_.get(), 0, kBase, kSize, true, true));
    for (uint64_t i = 0; i < kSize; i += 4096) {
      for (uint64_t j = 0; j < 4096; j += 8) {
        uint64_t tag = i + j;
        std::memcpy(mem_ + i + j, &tag, 8);
      }
    }
  }
  void TearDown() override { ::munmap(mem_, kSize); }
  uint64_t* List(uint64_t iova) { return reinterpret_cast<uint64_t*>(mem_ + (iova - kBase)); }
  // Reads the 8-byte tag at offset off of the mapped buffer.
  uint64_t TagAt(uint64_t off) {
    uint64_t v;
    host_.CopyOut(off, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&v), 8));
    return v;
  }
  UniqueFd fd_;
  uint8_t* mem_ = nullptr;
  DmaSpace dma_;
  HostBuffer host_;
};

TEST_F(PrpTest, SinglePageWithOffset) {
  auto st = MapPrps(dma_, kBase + 0x800, 0, 0x800, 4096, false, host_);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(host_.size(), 0x800u);
  EXPECT_EQ(TagAt(0), 0x800u);
}

TEST_F(PrpTest, Prp2AsSecondPage) {
  auto st = MapPrps(dma_, kBase + 0x800, kBase + 0x10000, 0x1000, 4096, false, host_);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(TagAt(0x800), 0x10000u);
  EXPECT_EQ(MapPrps(dma_, kBase, kBase + 0x10008, 0x2000, 4096, false, host_).sc, kPrpOffsetInvalid);
}

TEST_F(PrpTest, ListAndChain) {
  // 4 pages: PRP1 + list of 3 at the last 16 bytes of a page -> 1 entry + chain.
  const uint64_t list = kBase + 0x20000 + 4096 - 16;
  List(list)[0] = kBase + 0x30000;
  List(list)[1] = kBase + 0x21000;  // chain
  List(kBase + 0x21000)[0] = kBase + 0x40000;
  List(kBase + 0x21000)[1] = kBase + 0x50000;
  auto st = MapPrps(dma_, kBase, list, 4 * 4096, 4096, false, host_);
  ASSERT_TRUE(st.ok()) << int{st.sc};
  EXPECT_EQ(TagAt(4096), 0x30000u);
  EXPECT_EQ(TagAt(2 * 4096), 0x40000u);
  EXPECT_EQ(TagAt(3 * 4096 + 8), 0x50008u);
}

TEST_F(PrpTest, LastListEntryIsDataWhenItIsTheLastPage) {
  const uint64_t list = kBase + 0x20000 + 4096 - 16;
  List(list)[0] = kBase + 0x30000;
  List(list)[1] = kBase + 0x31000;  // final data page, not a chain
  auto st = MapPrps(dma_, kBase, list, 3 * 4096, 4096, false, host_);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(TagAt(2 * 4096), 0x31000u);
}

TEST_F(PrpTest, Violations) {
  EXPECT_EQ(MapPrps(dma_, kBase + 1, 0, 16, 4096, false, host_).sc, kPrpOffsetInvalid);
  EXPECT_EQ(MapPrps(dma_, kBase, kBase + 0x20004, 3 * 4096, 4096, false, host_).sc, kPrpOffsetInvalid);
  List(kBase + 0x20000)[0] = kBase + 0x30010;
  EXPECT_EQ(MapPrps(dma_, kBase, kBase + 0x20000, 3 * 4096, 4096, false, host_).sc, kPrpOffsetInvalid);
  // Chain pointer with an offset.
  const uint64_t list = kBase + 0x20000 + 4096 - 8;
  List(list)[0] = kBase + 0x21008;
  EXPECT_EQ(MapPrps(dma_, kBase, list, 3 * 4096, 4096, false, host_).sc, kPrpOffsetInvalid);
  // Unmapped data page, unmapped list.
  EXPECT_EQ(MapPrps(dma_, 0x10, 0, 16, 4096, false, host_).sc, kDataTransferError);
  EXPECT_EQ(MapPrps(dma_, kBase, 0x7000, 3 * 4096, 4096, false, host_).sc, kDataTransferError);
  EXPECT_EQ(MapPrps(dma_, kBase + kSize - 4096, kBase + kSize, 8192, 4096, false, host_).sc, kDataTransferError);
}

TEST_F(PrpTest, LargerPageSize) {
  auto st = MapPrps(dma_, kBase + 0x1000, kBase + 0x10000, 0x10000, 0x10000, false, host_);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(TagAt(0xF000), 0x10000u);
  EXPECT_EQ(MapPrps(dma_, kBase, kBase + 0x11000, 0x11000, 0x10000, false, host_).sc, kPrpOffsetInvalid);
}

TEST(HostBuffer, CopiesAcrossSegments) {
  uint8_t a[4] = {}, b[4] = {};
  HostBuffer buf;
  buf.Add(a, 4);
  buf.Add(b, 4);
  const uint8_t in[6] = {1, 2, 3, 4, 5, 6};
  buf.CopyIn(1, in);
  EXPECT_EQ(a[1], 1);
  EXPECT_EQ(a[3], 3);
  EXPECT_EQ(b[0], 4);
  EXPECT_EQ(b[2], 6);
  uint8_t out[3];
  buf.CopyOut(3, out);
  EXPECT_EQ(out[0], 3);
  EXPECT_EQ(out[2], 5);
  buf.ZeroFrom(2);
  EXPECT_EQ(a[1], 1);
  EXPECT_EQ(a[2], 0);
  EXPECT_EQ(b[3], 0);
}

}  // namespace
}  // namespace nvmux::emu
