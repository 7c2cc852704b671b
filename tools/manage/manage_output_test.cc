#include "tools/manage/manage_output.h"

#include <gtest/gtest.h>

namespace nvmux::manage {
namespace {

TEST(JsonWriterTest, KeepsTheLayoutAndOrderAndEscapes) {
  JsonWriter j;
  j.BeginObject().Field("group", 3).Field("name", "a \"b\"\\\n").Key("list").BeginArray();
  j.Uint(1).BeginObject().Field("x", true).EndObject().EndArray().Key("empty").BeginArray().EndArray();
  j.Key("big").Raw("340282366920938463463374607431768211455").EndObject();
  EXPECT_EQ(j.Line(),
            "{\"group\": 3, \"name\": \"a \\\"b\\\"\\\\\\n\", \"list\": [1, {\"x\": true}], \"empty\": [], "
            "\"big\": 340282366920938463463374607431768211455}\n");
  EXPECT_EQ(JsonQuote(std::string("\x01", 1)), "\"\\u0001\"");
}

TEST(FormatTest, IdentifyFieldsLoseTheirPaddingAndNonAscii) {
  const char sn[20] = {'S', 'N', '1', ' ', ' ', ' ', ' ', ' ', ' ', ' ',
                       ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
  EXPECT_EQ(TrimField(sn), "SN1");
  const char odd[4] = {'a', '\x7f', 'b', ' '};
  EXPECT_EQ(TrimField(odd), "a?b");
  const char full[3] = {'x', 'y', 'z'};  // no terminator: stops at the width
  EXPECT_EQ(TrimField(full), "xyz");
}

TEST(FormatTest, UnitsAreNvmeCliStyle) {
  EXPECT_EQ(FormatUnits(0), "  0.00   B");
  EXPECT_EQ(FormatUnits(512), "512.00   B");
  EXPECT_EQ(FormatUnits(67108864), " 67.11  MB");
  EXPECT_EQ(FormatUnits(1'000'000'000'000), "  1.00  TB");
}

TEST(FormatTest, Counters128BitAreDecimal) {
  uint8_t v[16] = {};
  EXPECT_EQ(Uint128ToString(v), "0");
  v[0] = 0x39;
  v[1] = 0x30;  // 12345
  EXPECT_EQ(Uint128ToString(v), "12345");
  for (uint8_t& b : v) b = 0xFF;
  EXPECT_EQ(Uint128ToString(v), "340282366920938463463374607431768211455");
}

TEST(FormatTest, HexDumpHasAHeaderOffsetsAndAscii) {
  const char data[18] = "ABCDEFGHIJKLMNOP\n";
  std::string dump = HexDump(data, 18);
  EXPECT_EQ(dump,
            "       0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f\n"
            "0000: 41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f 50 \"ABCDEFGHIJKLMNOP\"\n"
            "0010: 0a 00                                           \"..\"\n");
  EXPECT_EQ(HexString(data, 3), "414243");
}

TEST(FormatTest, NamesOfFeaturesSelectsAndStatuses) {
  EXPECT_STREQ(FeatureName(0x01), "Arbitration");
  EXPECT_STREQ(FeatureName(0x0b), "Async Event Configuration");
  EXPECT_STREQ(FeatureName(0xfe), "Unknown");
  EXPECT_STREQ(SelectName(3), "Supported capabilities");
  spec::Cqe cpl;
  cpl.status = static_cast<uint16_t>((0x0b << 1) | (1u << 15));
  EXPECT_EQ(CompletionStatusText(cpl), "Invalid Namespace or Format (sct 0, sc 0x0b, do not retry)");
  cpl.status = static_cast<uint16_t>((0x7f << 1) | (3u << 9));
  EXPECT_EQ(CompletionStatusText(cpl), "Unknown status (sct 3, sc 0x7f)");
  EXPECT_EQ(Sprintf("%s-%05d", "x", 42), "x-00042");
  EXPECT_EQ(Sprintf("%s", std::string(3000, 'a').c_str()).size(), 3000u);
}

}  // namespace
}  // namespace nvmux::manage
