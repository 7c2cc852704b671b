#include "shm/core_set.h"

#include <gtest/gtest.h>

namespace nvmux::shm {
namespace {

TEST(CoreSet, ParsesHexMasks) {
  auto s = CoreSet::Parse("0x5");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_TRUE(s->Has(0));
  EXPECT_FALSE(s->Has(1));
  EXPECT_TRUE(s->Has(2));
  EXPECT_EQ(s->ToMaskString(), "0x5");
  EXPECT_EQ(CoreSet::Parse("0xF0")->ToListString(), "4-7");
}

TEST(CoreSet, ParsesLists) {
  auto s = CoreSet::Parse("[0-2,5]");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->Count(), 4u);
  EXPECT_EQ(s->ToListString(), "0-2,5");
  EXPECT_EQ(s->First(), 0u);
  EXPECT_EQ(CoreSet::Parse("3")->ToListString(), "3");
  EXPECT_EQ(CoreSet::Parse("1,3")->ToMaskString(), "0xa");
}

TEST(CoreSet, RejectsMalformedInputNamingIt) {
  for (const char* bad : {"", "0x", "0xg", "[1-", "3-1", "a,b", "300", "[]", "0x0"}) {
    auto s = CoreSet::Parse(bad);
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error().code, EINVAL);
    EXPECT_NE(s.error().message.find(std::string("'") + bad + "'"), std::string::npos) << s.error().message;
  }
}

TEST(CoreSet, WordsRoundTripAndOverlap) {
  auto a = *CoreSet::Parse("[0,63,64,255]");
  uint64_t words[CoreSet::kMaxCores / 64];
  a.ToWords(words);
  EXPECT_EQ(CoreSet::FromWords(words), a);
  EXPECT_TRUE(a.Overlaps(*CoreSet::Parse("0x1")));
  EXPECT_FALSE(a.Overlaps(*CoreSet::Parse("0x2")));
}

}  // namespace
}  // namespace nvmux::shm
