#include "sgl.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace nvmux {
namespace {

namespace sgl = spec::sgl;

constexpr uint64_t kListIova = 0x900000;

struct ListMemory {
  explicit ListMemory(size_t n = 512) : entries(n, Poison()) {}
  static spec::SglDescriptor Poison() {
    spec::SglDescriptor d;
    d.address = 0xdead;
    d.length = 0xdead;
    d.type_subtype = 0xff;
    return d;
  }
  SglList list(uint32_t chunk = kSglDescriptorsPerPage) { return SglList{entries, kListIova, chunk}; }
  std::vector<spec::SglDescriptor> entries;
};

void ExpectDescriptor(const spec::SglDescriptor& d, uint8_t type, uint64_t address, uint32_t length,
                      const std::string& where) {
  EXPECT_EQ(d.type(), type) << where;
  EXPECT_EQ(d.subtype(), sgl::kSubtypeAddress) << where;
  EXPECT_EQ(d.address, address) << where;
  EXPECT_EQ(d.length, length) << where;
  EXPECT_EQ(d.rsvd12[0] | d.rsvd12[1] | d.rsvd12[2], 0) << where;
}

TEST(Sgl, SingleSegmentIsADataBlockInTheCommand) {
  ListMemory mem;
  IovaSegment s{0x10003, 777};  // no alignment rule for SGL data blocks
  auto r = BuildSgl({&s, 1}, mem.list());
  ASSERT_TRUE(r) << r.error().message;
  ExpectDescriptor(r->dptr, sgl::kDataBlock, 0x10003, 777, "dptr");
  EXPECT_EQ(r->list_entries, 0u);
  EXPECT_EQ(mem.entries[0].address, 0xdeadu);  // list untouched
  // A single segment needs no list memory at all.
  auto none = BuildSgl({&s, 1}, SglList{{}, 0, 0});
  ASSERT_TRUE(none) << none.error().message;
}

TEST(Sgl, TwoSegmentsUseALastSegmentList) {
  ListMemory mem;
  IovaSegment segs[] = {{0x50200, 100}, {0x80004, 8192}};
  auto r = BuildSgl(segs, mem.list());
  ASSERT_TRUE(r) << r.error().message;
  ExpectDescriptor(r->dptr, sgl::kLastSegment, kListIova, 32, "dptr");
  ASSERT_EQ(r->list_entries, 2u);
  ExpectDescriptor(mem.entries[0], sgl::kDataBlock, 0x50200, 100, "0");
  ExpectDescriptor(mem.entries[1], sgl::kDataBlock, 0x80004, 8192, "1");
  EXPECT_EQ(mem.entries[2].address, 0xdeadu);
}

TEST(Sgl, ManySegmentsFillingExactlyOneChunkNeedNoChain) {
  ListMemory mem;
  std::vector<IovaSegment> segs;
  for (uint64_t i = 0; i < 256; ++i) segs.push_back({0x100000 + i * 0x2000, 512 + i});
  auto r = BuildSgl(segs, mem.list());
  ASSERT_TRUE(r) << r.error().message;
  ExpectDescriptor(r->dptr, sgl::kLastSegment, kListIova, 256 * 16, "dptr");
  ASSERT_EQ(r->list_entries, 256u);
  for (uint32_t i = 0; i < 256; ++i)
    ExpectDescriptor(mem.entries[i], sgl::kDataBlock, segs[i].iova, static_cast<uint32_t>(segs[i].length),
                     std::to_string(i));
  EXPECT_EQ(SglListEntriesFor(256), 256u);
}

// Chunks of 4 descriptors, 10 segments: chunk 0 = 3 data + Segment, chunk 1 =
// 3 data + Last Segment, chunk 2 = 4 data.
TEST(Sgl, ChainsAcrossSeveralChunks) {
  ListMemory mem(12);
  std::vector<IovaSegment> segs;
  for (uint64_t i = 0; i < 10; ++i) segs.push_back({0x200000 + i * 0x1000 + i, 100 + i});
  auto r = BuildSgl(segs, mem.list(4));
  ASSERT_TRUE(r) << r.error().message;
  ExpectDescriptor(r->dptr, sgl::kSegment, kListIova, 4 * 16, "dptr");
  ASSERT_EQ(r->list_entries, 12u);
  EXPECT_EQ(SglListEntriesFor(10, 4), 12u);
  auto data = [&](size_t slot, size_t seg) {
    ExpectDescriptor(mem.entries[slot], sgl::kDataBlock, segs[seg].iova, static_cast<uint32_t>(segs[seg].length),
                     "slot " + std::to_string(slot));
  };
  data(0, 0);
  data(1, 1);
  data(2, 2);
  ExpectDescriptor(mem.entries[3], sgl::kSegment, kListIova + 4 * 16, 4 * 16, "chain 0");
  data(4, 3);
  data(5, 4);
  data(6, 5);
  ExpectDescriptor(mem.entries[7], sgl::kLastSegment, kListIova + 8 * 16, 4 * 16, "chain 1");
  data(8, 6);
  data(9, 7);
  data(10, 8);
  data(11, 9);
}

TEST(Sgl, ChainToAShortLastChunkCarriesItsLength) {
  ListMemory mem(8);
  std::vector<IovaSegment> segs;
  for (uint64_t i = 0; i < 5; ++i) segs.push_back({0x300000 + i * 0x10000, 4096});
  auto r = BuildSgl(segs, mem.list(4));
  ASSERT_TRUE(r) << r.error().message;
  ExpectDescriptor(r->dptr, sgl::kSegment, kListIova, 64, "dptr");
  ASSERT_EQ(r->list_entries, 6u);
  ExpectDescriptor(mem.entries[3], sgl::kLastSegment, kListIova + 64, 2 * 16, "chain");
  ExpectDescriptor(mem.entries[4], sgl::kDataBlock, 0x330000, 4096, "4");
  ExpectDescriptor(mem.entries[5], sgl::kDataBlock, 0x340000, 4096, "5");
  EXPECT_EQ(mem.entries[6].address, 0xdeadu);
}

// Only the last descriptor of a segment is a (Last) Segment descriptor and the
// last segment has none: walk the chain as a controller does.
TEST(Sgl, WalkingTheChainVisitsEverySegmentInOrder) {
  for (uint32_t chunk : {2u, 3u, 5u, 256u}) {
    for (uint32_t n : {2u, 3u, 7u, 64u, 300u}) {
      ListMemory mem(SglListEntriesFor(n, chunk));
      std::vector<IovaSegment> segs;
      for (uint64_t i = 0; i < n; ++i) segs.push_back({0x1000000 + i * 0x3000 + 8 * i, 1 + i});
      auto r = BuildSgl(segs, mem.list(chunk));
      ASSERT_TRUE(r) << r.error().message;
      ASSERT_EQ(r->list_entries, mem.entries.size());
      std::vector<IovaSegment> seen;
      spec::SglDescriptor ptr = r->dptr;
      bool last = false;
      while (!last) {
        ASSERT_TRUE(ptr.type() == sgl::kSegment || ptr.type() == sgl::kLastSegment);
        last = ptr.type() == sgl::kLastSegment;
        ASSERT_EQ(ptr.length % 16, 0u);
        size_t first = (ptr.address - kListIova) / 16;
        size_t count = ptr.length / 16;
        ASSERT_LE(count, chunk);
        ASSERT_LE(first + count, mem.entries.size());
        for (size_t i = 0; i < count; ++i) {
          const spec::SglDescriptor& d = mem.entries[first + i];
          if (i + 1 == count && !last) {
            ptr = d;
            break;
          }
          ASSERT_EQ(d.type(), sgl::kDataBlock) << "chunk " << chunk << " n " << n << " slot " << first + i;
          seen.push_back({d.address, d.length});
        }
      }
      ASSERT_EQ(seen.size(), segs.size()) << "chunk " << chunk << " n " << n;
      for (size_t i = 0; i < n; ++i) {
        EXPECT_EQ(seen[i].iova, segs[i].iova);
        EXPECT_EQ(seen[i].length, segs[i].length);
      }
    }
  }
}

TEST(Sgl, MaxSegmentsMatchesEntriesFor) {
  for (uint32_t chunk = 2; chunk <= 9; ++chunk) {
    for (uint64_t entries = 0; entries <= 40; ++entries) {
      uint64_t best = 1;
      for (uint64_t n = 2; n <= 64; ++n)
        if (SglListEntriesFor(n, chunk) <= entries) best = n;
      EXPECT_EQ(SglMaxSegments(entries, chunk), best) << "chunk " << chunk << " entries " << entries;
    }
  }
  EXPECT_EQ(SglMaxSegments(512), 511u);  // two pages: one chain pointer
}

TEST(Sgl, RejectsWhatItCannotDescribeNamingTheValue) {
  ListMemory mem(8);
  auto empty = BuildSgl({}, mem.list());
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, EINVAL);
  EXPECT_NE(empty.error().message.find("empty transfer"), std::string::npos);

  IovaSegment zero[] = {{0x1000, 10}, {0x2000, 0}};
  auto z = BuildSgl(zero, mem.list());
  ASSERT_FALSE(z);
  EXPECT_EQ(z.error().code, EINVAL);
  EXPECT_NE(z.error().message.find("segment 1 at 0x2000 is empty"), std::string::npos) << z.error().message;

  IovaSegment huge{0x1000, 1ull << 32};
  auto h = BuildSgl({&huge, 1}, mem.list());
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().code, EINVAL);
  EXPECT_NE(h.error().message.find("4294967296"), std::string::npos) << h.error().message;
  IovaSegment biggest{0x1000, 0xFFFFFFFFull};
  EXPECT_TRUE(BuildSgl({&biggest, 1}, mem.list()));

  // 8 entries in chunks of 4 describe at most 7 segments.
  std::vector<IovaSegment> many(8, IovaSegment{0x4000, 16});
  auto m = BuildSgl(many, mem.list(4));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, EINVAL);
  EXPECT_NE(m.error().message.find("8 segments need 10"), std::string::npos) << m.error().message;
  EXPECT_NE(m.error().message.find("room for 8 entries, at most 7 segments"), std::string::npos)
      << m.error().message;
  many.pop_back();
  EXPECT_TRUE(BuildSgl(many, mem.list(4)));

  IovaSegment two[] = {{0x1000, 10}, {0x2000, 10}};
  auto c = BuildSgl(two, mem.list(1));
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("chunk of 1 descriptors"), std::string::npos) << c.error().message;
  auto a = BuildSgl(two, SglList{mem.entries, kListIova + 4, 4});
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().message.find("0x900004"), std::string::npos) << a.error().message;
  auto no_list = BuildSgl(two, SglList{{}, kListIova, 4});
  ASSERT_FALSE(no_list);
  EXPECT_NE(no_list.error().message.find("room for 0 entries, at most 1 segments"), std::string::npos)
      << no_list.error().message;
}

TEST(Sgl, SetDataSglFillsPsdtAndDptr) {
  ListMemory mem;
  IovaSegment segs[] = {{0x50200, 100}, {0x80004, 8192}};
  auto r = BuildSgl(segs, mem.list());
  ASSERT_TRUE(r);
  spec::Sqe sqe;
  sqe.opc = spec::nvm::kRead;
  sqe.set_fuse(spec::kFuseFirst);
  sqe.mptr = 0x7000;
  SetDataSgl(sqe, *r);
  EXPECT_EQ(sqe.psdt(), spec::kPsdtSglMptrContiguous);
  EXPECT_EQ(sqe.fuse(), spec::kFuseFirst);
  EXPECT_EQ(sqe.mptr, 0x7000u);
  EXPECT_EQ(sqe.prp1, kListIova);
  // Bytes 8-11 length, 12-14 reserved, 15 type (Last Segment, subtype address).
  EXPECT_EQ(sqe.prp2, 32u | (uint64_t{0x30} << 56));
  unsigned char bytes[64];
  std::memcpy(bytes, &sqe, sizeof(bytes));
  EXPECT_EQ(bytes[1] >> 6, 1);        // PSDT in CDW0 bits 15:14
  EXPECT_EQ(bytes[24 + 15], 0x30);    // DPTR byte 15: SGL identifier
  EXPECT_EQ(bytes[24 + 8], 32);       // DPTR bytes 8-11: length
}

TEST(Sgl, MetadataSglPointsMptrAtOneDescriptor) {
  ListMemory mem(8);
  IovaSegment one{0x60000, 64};
  auto single = BuildMetadataSgl({&one, 1}, mem.list(4));
  ASSERT_TRUE(single) << single.error().message;
  EXPECT_EQ(single->mptr, kListIova);
  EXPECT_EQ(single->list_entries, 1u);
  ExpectDescriptor(mem.entries[0], sgl::kDataBlock, 0x60000, 64, "md sgl1");

  ListMemory mem2(8);
  IovaSegment segs[] = {{0x60000, 8}, {0x61000, 8}, {0x62000, 8}, {0x63000, 8}, {0x64000, 8}};
  auto multi = BuildMetadataSgl(segs, mem2.list(4));
  ASSERT_TRUE(multi) << multi.error().message;
  EXPECT_EQ(multi->mptr, kListIova);
  EXPECT_EQ(multi->list_entries, 7u);
  ExpectDescriptor(mem2.entries[0], sgl::kSegment, kListIova + 16, 64, "md sgl1");
  ExpectDescriptor(mem2.entries[1], sgl::kDataBlock, 0x60000, 8, "1");
  ExpectDescriptor(mem2.entries[4], sgl::kLastSegment, kListIova + 5 * 16, 32, "chain");
  ExpectDescriptor(mem2.entries[6], sgl::kDataBlock, 0x64000, 8, "6");

  IovaSegment data{0x100000, 4096};
  auto d = BuildSgl({&data, 1}, mem.list());
  ASSERT_TRUE(d);
  spec::Sqe sqe;
  SetDataAndMetadataSgl(sqe, *d, *multi);
  EXPECT_EQ(sqe.psdt(), spec::kPsdtSglMptrSgl);
  EXPECT_EQ(sqe.mptr, kListIova);
  EXPECT_EQ(sqe.prp1, 0x100000u);
  EXPECT_EQ(sqe.prp2, 4096u);  // Data Block type 0

  auto no_room = BuildMetadataSgl({&one, 1}, SglList{{}, kListIova, 4});
  ASSERT_FALSE(no_room);
  EXPECT_EQ(no_room.error().code, EINVAL);
  EXPECT_NE(no_room.error().message.find("no entries"), std::string::npos);
  auto misaligned = BuildMetadataSgl({&one, 1}, SglList{mem.entries, kListIova + 2, 4});
  ASSERT_FALSE(misaligned);
  EXPECT_NE(misaligned.error().message.find("0x900002"), std::string::npos) << misaligned.error().message;
  auto empty = BuildMetadataSgl({}, mem.list());
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message.find("empty transfer"), std::string::npos);
}

}  // namespace
}  // namespace nvmux
