#include "prp.h"

#include <gtest/gtest.h>

#include <vector>

namespace nvmux {
namespace {

constexpr uint64_t kListIova = 0x900000;

struct ListMemory {
  std::vector<uint64_t> entries = std::vector<uint64_t>(1024, 0xdead);  // two list pages
  PrpList list() { return PrpList{entries, kListIova}; }
};

TEST(Prp, WithinOnePageUsesPrp1Only) {
  ListMemory mem;
  IovaSegment s{0x10010, 100};
  auto p = BuildPrps({&s, 1}, mem.list());
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->prp1, 0x10010u);
  EXPECT_EQ(p->prp2, 0u);
  EXPECT_EQ(p->list_entries, 0u);
}

TEST(Prp, TwoPagesUsePrp2AsThePageAddress) {
  ListMemory mem;
  IovaSegment s{0x10800, 4096};  // offset buffer crossing one boundary
  auto p = BuildPrps({&s, 1}, mem.list());
  ASSERT_TRUE(p);
  EXPECT_EQ(p->prp1, 0x10800u);
  EXPECT_EQ(p->prp2, 0x11000u);
}

TEST(Prp, ThreePagesUseAList) {
  ListMemory mem;
  IovaSegment s{0x20000, 3 * 4096};
  auto p = BuildPrps({&s, 1}, mem.list());
  ASSERT_TRUE(p);
  EXPECT_EQ(p->prp1, 0x20000u);
  EXPECT_EQ(p->prp2, kListIova);
  ASSERT_EQ(p->list_entries, 2u);
  EXPECT_EQ(mem.entries[0], 0x21000u);
  EXPECT_EQ(mem.entries[1], 0x22000u);
  EXPECT_EQ(mem.entries[2], 0xdeadu);
}

TEST(Prp, LongListsChainThroughTheLastEntryOfAPage) {
  ListMemory mem;
  const uint64_t base = 0x1000000;
  IovaSegment s{base, 600ull * 4096};  // 599 pages after the first
  auto p = BuildPrps({&s, 1}, mem.list());
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->list_entries, 600u);
  EXPECT_EQ(PrpListEntriesFor(600), 600u);
  for (uint32_t i = 0; i < 511; ++i) ASSERT_EQ(mem.entries[i], base + (i + 1) * 4096ull) << i;
  EXPECT_EQ(mem.entries[511], kListIova + 4096);  // chain to the second list page
  for (uint32_t i = 512; i < 600; ++i) ASSERT_EQ(mem.entries[i], base + i * 4096ull) << i;
}

TEST(Prp, ExactlyOneFullListPageNeedsNoChain) {
  ListMemory mem;
  IovaSegment s{0x1000000, 513ull * 4096};  // 512 pages after the first
  auto p = BuildPrps({&s, 1}, mem.list());
  ASSERT_TRUE(p);
  EXPECT_EQ(p->list_entries, 512u);
  EXPECT_EQ(mem.entries[511], 0x1000000u + 512 * 4096ull);
  EXPECT_EQ(PrpListEntriesFor(513), 512u);
  EXPECT_EQ(PrpListEntriesFor(2), 0u);
}

TEST(Prp, ScatteredPageAlignedSegments) {
  ListMemory mem;
  // First segment starts mid-page and ends on a boundary; the rest are page-aligned.
  IovaSegment segs[] = {{0x50200, 0x51000 - 0x50200}, {0x80000, 8192}, {0x30000, 100}};
  auto p = BuildPrps(segs, mem.list());
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->prp1, 0x50200u);
  ASSERT_EQ(p->list_entries, 3u);
  EXPECT_EQ(mem.entries[0], 0x80000u);
  EXPECT_EQ(mem.entries[1], 0x81000u);
  EXPECT_EQ(mem.entries[2], 0x30000u);
}

TEST(Prp, RejectsWhatPrpsCannotDescribeNamingTheValue) {
  ListMemory mem;
  IovaSegment misaligned_middle[] = {{0x10000, 4096}, {0x20010, 4096}};
  auto a = BuildPrps(misaligned_middle, mem.list());
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code, EINVAL);
  EXPECT_NE(a.error().message.find("0x20010"), std::string::npos);
  IovaSegment short_first[] = {{0x10000, 100}, {0x20000, 4096}};
  auto b = BuildPrps(short_first, mem.list());
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("0x10064"), std::string::npos);
  IovaSegment odd{0x10001, 8};
  auto c = BuildPrps({&odd, 1}, mem.list());
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("dword"), std::string::npos);
  IovaSegment big{0x100000, 2000ull * 4096};
  auto d = BuildPrps({&big, 1}, mem.list());
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find("room for 1024"), std::string::npos) << d.error().message;
  IovaSegment three{0x100000, 3 * 4096};
  auto e = BuildPrps({&three, 1}, PrpList{mem.entries, kListIova + 8});
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("not page-aligned"), std::string::npos);
  auto f = BuildPrps({}, mem.list());
  ASSERT_FALSE(f);
  auto g = BuildPrps({&three, 1}, mem.list(), 1000);
  ASSERT_FALSE(g);
  EXPECT_NE(g.error().message.find("1000"), std::string::npos);
}

}  // namespace
}  // namespace nvmux
