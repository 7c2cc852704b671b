#include "libclient/vfiouser/dma_regions.h"

#include <gtest/gtest.h>

#include <vector>

namespace nvmux::vfiouser {
namespace {

constexpr uint64_t kPage = 2u << 20;

shm::MemSegment Page(uint64_t index, int fd, uint64_t fd_page) {
  shm::MemSegment s;
  s.va = 0x200000000000 + index * kPage;
  s.iova = s.va;
  s.length = kPage;
  s.fd = fd;
  s.fd_offset = fd_page * kPage;
  return s;
}

TEST(DmaRegions, PagesOfOneFileContiguousInIovaAndOffsetBecomeOneRegion) {
  // Given out of order, as a walk of several memseg lists may.
  std::vector<shm::MemSegment> pages = {Page(2, 7, 2), Page(0, 7, 0), Page(1, 7, 1), Page(3, 7, 3)};
  EXPECT_EQ(CoalesceSegments(pages), (std::vector<DmaRegion>{{0x200000000000, 4 * kPage, 7, 0}}));
}

TEST(DmaRegions, AGapAnotherFileOrAnOffsetJumpStartsANewRegion) {
  std::vector<shm::MemSegment> pages = {
      Page(0, 7, 0), Page(1, 7, 1),  // one region
      Page(3, 7, 3),                 // IOVA gap
      Page(4, 8, 4),                 // another file
      Page(5, 8, 9),                 // offset jump
      Page(6, 8, 10)};               // continues the one before
  auto regions = CoalesceSegments(pages);
  ASSERT_EQ(regions.size(), 4u);
  EXPECT_EQ(regions[0].length, 2 * kPage);
  EXPECT_EQ(regions[1].iova, Page(3, 7, 3).iova);
  EXPECT_EQ(regions[2].fd, 8);
  EXPECT_EQ(regions[3], (DmaRegion{Page(5, 8, 9).iova, 2 * kPage, 8, 9 * kPage}));
}

TEST(DmaRegions, PagesPerFileAsWithoutSingleFileSegmentsStayOnePerRegion) {
  std::vector<shm::MemSegment> pages = {Page(0, 10, 0), Page(1, 11, 0), Page(2, 12, 0)};
  EXPECT_EQ(CoalesceSegments(pages).size(), 3u);
}

TEST(DmaRegions, RemovingAWholeRegionLeavesNothingToMapAgain) {
  DmaRegionMap map;
  map.Insert({Page(0, 7, 0).iova, 4 * kPage, 7, 0});
  map.Insert({Page(8, 7, 8).iova, kPage, 7, 8 * kPage});
  auto cuts = map.Remove(Page(0, 7, 0).iova, 4 * kPage);
  ASSERT_EQ(cuts.size(), 1u);
  EXPECT_EQ(cuts[0].region.length, 4 * kPage);
  EXPECT_TRUE(cuts[0].keep.empty());
  EXPECT_EQ(map.size(), 1u);
}

TEST(DmaRegions, RemovingTheMiddleOfARegionKeepsBothEndsWithTheirOffsets) {
  DmaRegionMap map;
  map.Insert({Page(0, 7, 5).iova, 4 * kPage, 7, 5 * kPage});
  auto cuts = map.Remove(Page(1, 7, 6).iova, kPage);
  ASSERT_EQ(cuts.size(), 1u);
  EXPECT_EQ(cuts[0].keep, (std::vector<DmaRegion>{{Page(0, 7, 5).iova, kPage, 7, 5 * kPage},
                                                  {Page(2, 7, 7).iova, 2 * kPage, 7, 7 * kPage}}));
  EXPECT_EQ(map.size(), 0u);  // the caller records what it maps again
}

TEST(DmaRegions, ARangeAcrossTwoRegionsCutsBothAndMissesTheRest) {
  DmaRegionMap map;
  map.Insert({Page(0, 7, 0).iova, 2 * kPage, 7, 0});
  map.Insert({Page(2, 8, 0).iova, 2 * kPage, 8, 0});
  map.Insert({Page(10, 9, 0).iova, kPage, 9, 0});
  auto cuts = map.Remove(Page(1, 7, 1).iova, 2 * kPage);
  ASSERT_EQ(cuts.size(), 2u);
  EXPECT_EQ(cuts[0].keep, (std::vector<DmaRegion>{{Page(0, 7, 0).iova, kPage, 7, 0}}));
  EXPECT_EQ(cuts[1].keep, (std::vector<DmaRegion>{{Page(3, 8, 1).iova, kPage, 8, kPage}}));
  EXPECT_EQ(map.size(), 1u);
  EXPECT_TRUE(map.Remove(Page(20, 7, 0).iova, kPage).empty());
}

}  // namespace
}  // namespace nvmux::vfiouser
