#include "tools/emu/emu_namespace.h"

#include <gtest/gtest.h>

#include <cstring>

namespace nvmux::emu {
namespace {

TEST(Namespace, UncorrectableRanges) {
  auto ns = Namespace::Create(1, {1 << 20, 512, 0, false}, BackingKind::kRam);
  ASSERT_TRUE(ns);
  Namespace& n = **ns;
  EXPECT_FALSE(n.AnyUncorrectable(0, 2048));
  n.MarkUncorrectable(10, 10);  // [10, 20)
  EXPECT_TRUE(n.AnyUncorrectable(0, 11));
  EXPECT_FALSE(n.AnyUncorrectable(0, 10));
  EXPECT_TRUE(n.AnyUncorrectable(19, 5));
  EXPECT_FALSE(n.AnyUncorrectable(20, 5));
  n.ClearUncorrectable(12, 3);  // [10,12) [15,20)
  EXPECT_TRUE(n.AnyUncorrectable(11, 1));
  EXPECT_FALSE(n.AnyUncorrectable(12, 3));
  EXPECT_TRUE(n.AnyUncorrectable(14, 2));
  n.MarkUncorrectable(5, 20);  // [5, 25)
  EXPECT_TRUE(n.AnyUncorrectable(12, 1));
  n.ClearUncorrectable(0, 100);
  EXPECT_FALSE(n.AnyUncorrectable(0, 2048));
}

TEST(Namespace, RejectsFormatsNotOffered) {
  EXPECT_FALSE(Namespace::Create(1, {1 << 20, 1024, 0, false}, BackingKind::kRam));
  EXPECT_FALSE(Namespace::Create(1, {1 << 20, 512, 32, false}, BackingKind::kRam));
  EXPECT_FALSE(Namespace::Create(1, {1000, 512, 0, false}, BackingKind::kRam));
}

TEST(Namespace, IdentifyAndDescriptors) {
  auto ns = Namespace::Create(3, {8 << 20, 4096, 64, true}, BackingKind::kNull);
  ASSERT_TRUE(ns);
  spec::IdentifyNamespace id{};
  (*ns)->FillIdentify(id);
  EXPECT_EQ(id.nsze, (8u << 20) / 4096);
  const auto& f = id.lbaf[id.flbas & 0xF];
  EXPECT_EQ(f.lbads, 12);
  EXPECT_EQ(f.ms, 64);
  EXPECT_NE(id.flbas & spec::kFlbasExtended, 0);
  EXPECT_EQ((*ns)->host_block_size(), 4096u + 64u);
  uint8_t page[4096] = {};
  (*ns)->FillDescriptors(page);
  EXPECT_EQ(page[0], spec::kNidtEui64);
  EXPECT_EQ(page[1], 8);
  EXPECT_EQ(page[12], spec::kNidtNguid);
}

// Both RAM kinds: the populated one clears in place, the lazy one gives
// whole pages back; either way the range reads as zeroes, the edges keep
// their data, and Direct() exposes the same bytes unless a fault is set.
class RamBackingTest : public ::testing::TestWithParam<BackingKind> {};

TEST_P(RamBackingTest, ZeroReadsZeroAndDirectSeesTheSameBytes) {
  auto b = MakeBacking(GetParam(), 1, 64 * 1024);
  ASSERT_TRUE(b);
  EXPECT_NE((*b)->Describe().find(GetParam() == BackingKind::kRam ? "populated" : "lazy"), std::string::npos)
      << (*b)->Describe();
  std::vector<uint8_t> data(64 * 1024, 0xAB);
  ASSERT_TRUE((*b)->Write(0, data));
  ASSERT_TRUE((*b)->Zero(100, 20000));
  std::vector<uint8_t> out(64 * 1024);
  ASSERT_TRUE((*b)->Read(0, out));
  EXPECT_EQ(out[99], 0xAB);
  for (size_t i = 100; i < 20100; ++i) ASSERT_EQ(out[i], 0) << i;
  EXPECT_EQ(out[20100], 0xAB);
  uint8_t* direct = (*b)->Direct(0, 64 * 1024, false);
  ASSERT_NE(direct, nullptr);
  EXPECT_EQ(direct[99], 0xAB);
  EXPECT_EQ(direct[100], 0);
  direct[5] = 0x11;  // a write through Direct is what Read returns
  ASSERT_TRUE((*b)->Read(0, out));
  EXPECT_EQ(out[5], 0x11);
  (*b)->SetFaults(true, false);
  EXPECT_EQ((*b)->Read(0, out).error().code, EIO);
  EXPECT_EQ((*b)->Direct(0, 4096, false), nullptr) << "an injected read fault must not be bypassed";
  EXPECT_NE((*b)->Direct(0, 4096, true), nullptr);
}

INSTANTIATE_TEST_SUITE_P(Kinds, RamBackingTest, ::testing::Values(BackingKind::kRam, BackingKind::kRamLazy));

TEST(Backing, NullAndFileHaveNoDirectMemory) {
  auto b = MakeBacking(BackingKind::kNull, 1, 64 * 1024);
  ASSERT_TRUE(b);
  EXPECT_EQ((*b)->Direct(0, 4096, false), nullptr);
}

}  // namespace
}  // namespace nvmux::emu
