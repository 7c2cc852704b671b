#include "tools/emu/pci_config.h"

#include <gtest/gtest.h>

#include <cstring>

namespace nvmux::emu {
namespace {

uint32_t Read32(const PciConfig& c, uint32_t off) {
  uint32_t v;
  c.Read(off, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&v), 4));
  return v;
}
bool Write32(PciConfig& c, uint32_t off, uint32_t v) {
  return c.Write(off, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&v), 4));
}

TEST(PciConfig, IdentityAndClass) {
  PciConfig c({0x4000, 0, 0, 0, 0x8000, 0x1000}, 65);
  EXPECT_EQ(Read32(c, 0x08) >> 8, 0x010802u);
  EXPECT_EQ(Read32(c, 0x10) & 0xF, 0x4u);
  EXPECT_EQ(Read32(c, 0x40) & 0xFF, 0x11u);
  EXPECT_EQ((Read32(c, 0x40) >> 16) & 0x7FF, 64u);
}

TEST(PciConfig, CommandRegisterMask) {
  PciConfig c({0x4000, 0, 0, 0, 0x8000, 0x1000}, 2);
  const uint8_t v[2] = {0x04, 0x04};
  EXPECT_FALSE(c.Write(4, v));
  EXPECT_EQ(c.command(), 0x404);
  Write32(c, 4, 0xFFFFFFFF);
  EXPECT_EQ(c.command(), PciConfig::kCommandWritable);
  EXPECT_EQ(Read32(c, 4) >> 16, 0x0010u) << "status unchanged";
}

TEST(PciConfig, BarSizing) {
  PciConfig c({0x4000, 0, 0, 0, 0x8000, 0x1000}, 2);
  Write32(c, 0x10, 0xFFFFFFFF);
  EXPECT_EQ(Read32(c, 0x10), 0xFFFFC004u);
  Write32(c, 0x14, 0xFFFFFFFF);
  EXPECT_EQ(Read32(c, 0x14), 0xFFFFFFFFu);
  Write32(c, 0x20, 0xFFFFFFFF);
  EXPECT_EQ(Read32(c, 0x20), 0xFFFF8000u);
  Write32(c, 0x18, 0xFFFFFFFF);  // absent BAR2
  EXPECT_EQ(Read32(c, 0x18), 0u);
  Write32(c, 0x10, 0xFEB00000);
  EXPECT_EQ(Read32(c, 0x10), 0xFEB00004u);
}

TEST(PciConfig, ReadOnlyElsewhereAndMsixEnable) {
  PciConfig c({0x4000, 0, 0, 0, 0x8000, 0x1000}, 2);
  const uint32_t id = Read32(c, 0);
  Write32(c, 0, 0);
  EXPECT_EQ(Read32(c, 0), id);
  EXPECT_FALSE(c.msix_enabled());
  const uint8_t enable = 0x80;
  EXPECT_FALSE(c.Write(0x43, std::span<const uint8_t>(&enable, 1)));
  EXPECT_TRUE(c.msix_enabled());
}

TEST(PciConfig, FunctionLevelReset) {
  PciConfig c({0x4000, 0, 0, 0, 0x8000, 0x1000}, 2);
  const uint32_t devctl = PciConfig::kPcieCapOffset + 8;
  EXPECT_NE(Read32(c, PciConfig::kPcieCapOffset + 4) & (1u << 28), 0u) << "FLR capable";
  EXPECT_FALSE(Write32(c, devctl, 0x0010));
  EXPECT_TRUE(Write32(c, devctl, 0x8010));
  EXPECT_EQ(Read32(c, devctl) & 0xFFFF, 0x0010u) << "initiate-FLR reads as 0";
  const uint8_t high = 0x80;
  const uint8_t enable = 0xC0;  // MSI-X Enable and Function Mask
  EXPECT_FALSE(c.Write(PciConfig::kMsixCapOffset + 3, std::span<const uint8_t>(&enable, 1)));
  EXPECT_TRUE(c.msix_enabled());
  EXPECT_TRUE(c.Write(devctl + 1, std::span<const uint8_t>(&high, 1)));
  EXPECT_FALSE(c.msix_enabled()) << "an FLR clears MSI-X Enable";
  EXPECT_EQ(Read32(c, PciConfig::kMsixCapOffset) >> 30, 0u) << "and Function Mask";
}

}  // namespace
}  // namespace nvmux::emu
