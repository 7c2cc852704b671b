#include "tools/emu/sgl.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "shm/base/unique_fd.h"

namespace nvmux::emu {
namespace {

using spec::SglDescriptor;
namespace sgl = spec::sgl;
namespace sc = spec::sc;

constexpr uint64_t kBase = 0x100000;
constexpr uint64_t kSize = 256 * 1024;

class SglTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fd_.Reset(::memfd_create("sgl-test", MFD_CLOEXEC));
    ASSERT_EQ(::ftruncate(fd_.get(), kSize), 0);
    mem_ = static_cast<uint8_t*>(::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0));
    ASSERT_TRUE(dma_.Map(fd_.get(), 0, kBase, kSize, true, true));
  }
  void TearDown() override { ::munmap(mem_, kSize); }
  static SglDescriptor D(uint8_t type, uint64_t addr, uint32_t len) {
    SglDescriptor d;
    d.address = addr;
    d.length = len;
    d.type_subtype = sgl::TypeByte(type);
    return d;
  }
  void Put(uint64_t iova, std::initializer_list<SglDescriptor> ds) {
    size_t i = 0;
    for (const SglDescriptor& d : ds) std::memcpy(mem_ + (iova - kBase) + 16 * i++, &d, 16);
  }
  UniqueFd fd_;
  uint8_t* mem_ = nullptr;
  DmaSpace dma_;
  HostBuffer out_;
};

TEST_F(SglTest, DataBlockExactLength) {
  EXPECT_TRUE(MapSgl(dma_, D(sgl::kDataBlock, kBase + 3, 100), 100, false, out_).ok());
  EXPECT_EQ(out_.size(), 100u);
  EXPECT_EQ(MapSgl(dma_, D(sgl::kDataBlock, kBase, 99), 100, false, out_).sc, sc::kDataSglLengthInvalid);
  EXPECT_EQ(MapSgl(dma_, D(sgl::kDataBlock, kBase, 101), 100, false, out_).sc, sc::kDataSglLengthInvalid);
}

// A host's buffer may span two of its DMA registrations that meet in IOVA
// space (SPDK maps each memory registration separately): one data block
// across both moves all of its bytes, as through an IOMMU.
TEST_F(SglTest, DataBlockAcrossAdjacentMappings) {
  UniqueFd other(::memfd_create("sgl-test-2", MFD_CLOEXEC));
  ASSERT_EQ(::ftruncate(other.get(), 65536), 0);
  ASSERT_TRUE(dma_.Map(other.get(), 0, kBase + kSize, 65536, true, true));
  const uint64_t start = kBase + kSize - 4096;
  ASSERT_TRUE(MapSgl(dma_, D(sgl::kDataBlock, start, 12288), 12288, true, out_).ok());
  EXPECT_EQ(out_.size(), 12288u);
  std::vector<uint8_t> data(12288);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
  out_.CopyIn(0, data);
  EXPECT_EQ(std::memcmp(mem_ + kSize - 4096, data.data(), 4096), 0);
  auto* second = static_cast<uint8_t*>(::mmap(nullptr, 65536, PROT_READ, MAP_SHARED, other.get(), 0));
  ASSERT_NE(second, MAP_FAILED);
  EXPECT_EQ(std::memcmp(second, data.data() + 4096, 8192), 0);
  ::munmap(second, 65536);
  EXPECT_EQ(MapSgl(dma_, D(sgl::kDataBlock, start, 4096 + 65536 + 4096), 4096 + 65536 + 4096, true, out_).sc,
            sc::kDataTransferError)
      << "past the second mapping";
}

TEST_F(SglTest, SegmentChainWithZeroLengthBlocks) {
  Put(kBase + 0x1000, {D(sgl::kDataBlock, kBase + 0x8000, 10), D(sgl::kDataBlock, kBase, 0),
                       D(sgl::kSegment, kBase + 0x2000, 16)});
  Put(kBase + 0x2000, {D(sgl::kLastSegment, kBase + 0x3000, 16)});
  Put(kBase + 0x3000, {D(sgl::kDataBlock, kBase + 0x9000, 6)});
  auto st = MapSgl(dma_, D(sgl::kSegment, kBase + 0x1000, 48), 16, true, out_);
  EXPECT_TRUE(st.ok()) << int{st.sc};
  EXPECT_EQ(out_.size(), 16u);
  const uint8_t data[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  out_.CopyIn(0, data);
  EXPECT_EQ(mem_[0x8000 + 9], 10);
  EXPECT_EQ(mem_[0x9000], 11);
}

TEST_F(SglTest, SegmentWithoutChainIsInvalidNumber) {
  Put(kBase + 0x1000, {D(sgl::kDataBlock, kBase + 0x8000, 16)});
  EXPECT_EQ(MapSgl(dma_, D(sgl::kSegment, kBase + 0x1000, 16), 16, false, out_).sc,
            sc::kInvalidNumberOfSglDescriptors);
}

TEST_F(SglTest, PermissionsAndMapping) {
  DmaSpace ro;
  ASSERT_TRUE(ro.Map(fd_.get(), 0, kBase, kSize, true, false));
  EXPECT_EQ(MapSgl(ro, D(sgl::kDataBlock, kBase, 16), 16, true, out_).sc, sc::kDataTransferError);
  EXPECT_TRUE(MapSgl(ro, D(sgl::kDataBlock, kBase, 16), 16, false, out_).ok());
  EXPECT_EQ(MapSgl(dma_, D(sgl::kDataBlock, kBase + kSize - 8, 16), 16, false, out_).sc, sc::kDataTransferError);
}

}  // namespace
}  // namespace nvmux::emu
