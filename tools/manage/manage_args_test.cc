#include "tools/manage/manage_args.h"

#include <gtest/gtest.h>
#include <unistd.h>

namespace nvmux::manage {
namespace {

TEST(ParseNumberTest, DecimalAndHexWithinTheRange) {
  EXPECT_EQ(*ParseNumber("-f", "7", 0, 255), 7u);
  EXPECT_EQ(*ParseNumber("-f", "0x0b", 0, 255), 11u);
  EXPECT_EQ(*ParseNumber("-f", "0XFF", 0, 255), 255u);
  EXPECT_EQ(*ParseNumber("--nsze", "18446744073709551615", 1, UINT64_MAX), UINT64_MAX);
}

TEST(ParseNumberTest, BadValuesNameTheOptionAndValue) {
  EXPECT_EQ(ParseNumber("-f", "256", 0, 255).error().message, "-f '256': out of range (allowed 0..255)");
  EXPECT_EQ(ParseNumber("-f", "abc", 0, 255).error().message, "-f 'abc': not a number (decimal or 0x hex)");
  for (const char* bad : {"", "0x", "-1", "+1", "1.5", "12abc", " 1", "0x1g"})
    EXPECT_FALSE(ParseNumber("-v", bad, 0, UINT32_MAX)) << bad;
  EXPECT_EQ(ParseNumber("-v", "99999999999999999999", 0, UINT32_MAX).error().message,
            "-v '99999999999999999999': out of range (allowed 0..0xffffffff)");
  EXPECT_EQ(ParseNumber("-i", "1000000", 0, 999'999).error().message, "-i '1000000': out of range (allowed 0..999999)");
}

TEST(ParseNumberTest, Lists) {
  EXPECT_EQ(*ParseNumberList("-c", "1,0x2,3", 0, 0xFFFE), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(ParseNumberList("-c", "1,,2", 0, 0xFFFE).error().message,
            "-c '1,,2': item '' is not a number (decimal or 0x hex)");
  EXPECT_EQ(ParseNumberList("-c", "1,70000", 0, 0xFFFE).error().message,
            "-c '1,70000': item '70000' is out of range (allowed 0..65534)");
}

TEST(ParseNsidTest, RangeAndTheAllNamespacesValue) {
  EXPECT_EQ(*ParseNsid("-n", "1", false), 1u);
  EXPECT_EQ(*ParseNsid("-n", "0xfffffffe", false), 0xFFFFFFFEu);
  EXPECT_EQ(*ParseNsid("-n", "0xffffffff", true), kAllNamespaces);
  EXPECT_EQ(ParseNsid("-n", "0xffffffff", false).error().message,
            "-n '0xffffffff': not a namespace id (allowed 1..0xfffffffe)");
  EXPECT_EQ(ParseNsid("-n", "0", true).error().message,
            "-n '0': not a namespace id (allowed 1..0xfffffffe, or 0xffffffff for every namespace)");
  EXPECT_FALSE(ParseNsid("-n", "0x100000000", true));
}

TEST(ConfirmTest, YesProceedsAndNoTerminalRefuses) {
  EXPECT_EQ(Confirm("format", "format namespace 1", true), 0);
  if (::isatty(0) == 0) {
    testing::internal::CaptureStderr();
    EXPECT_EQ(Confirm("format", "format namespace 1", false), 2);
    EXPECT_EQ(testing::internal::GetCapturedStderr(),
              "nvmux-manage: format: stdin is not a terminal to ask on: pass --yes to format namespace 1\n");
  }
}

}  // namespace
}  // namespace nvmux::manage
