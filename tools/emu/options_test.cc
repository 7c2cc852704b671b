#include "tools/emu/options.h"

#include <gtest/gtest.h>

namespace nvmux::emu {
namespace {

TEST(Options, ParseSize) {
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_EQ(*ParseSize("64M"), 64ull << 20);
  EXPECT_EQ(*ParseSize("1g"), 1ull << 30);
  EXPECT_EQ(*ParseSize("2T"), 2ull << 40);
  for (const char* bad : {"", "G", "1.5G", "-1", "12Q", "99999999999T"}) {
    auto r = ParseSize(bad);
    EXPECT_FALSE(r) << bad;
  }
}

TEST(Options, ParseNamespace) {
  auto ns = ParseNamespaceOptions("size=8M,lbads=4096,ms=16,ext=1");
  ASSERT_TRUE(ns) << ns.error().ToString();
  EXPECT_EQ(ns->size_bytes, 8ull << 20);
  EXPECT_EQ(ns->block_size, 4096u);
  EXPECT_EQ(ns->metadata_size, 16);
  EXPECT_TRUE(ns->extended_lba);
  auto defaults = ParseNamespaceOptions("");
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->size_bytes, 1ull << 30);
  EXPECT_EQ(defaults->block_size, 512u);
}

TEST(Options, ParseNamespaceErrorsNameTheItem) {
  struct Case {
    const char* text;
    const char* needle;
  };
  for (const Case& c : {Case{"size=100", "size=100"}, Case{"lbads=1024", "lbads=1024"}, Case{"ms=4", "ms=4"},
                        Case{"ext=2", "ext=2"}, Case{"bogus=1", "bogus"}, Case{"size", "size"},
                        Case{"size=0", "size=0"}}) {
    auto r = ParseNamespaceOptions(c.text);
    ASSERT_FALSE(r) << c.text;
    EXPECT_EQ(r.error().code, EINVAL);
    EXPECT_NE(r.error().message.find(c.needle), std::string::npos) << r.error().message;
  }
}

TEST(Options, Backing) {
  EXPECT_EQ(ParseBacking("ram")->kind, BackingKind::kRam);
  EXPECT_EQ(ParseBacking("ram-lazy")->kind, BackingKind::kRamLazy);
  EXPECT_EQ(BackingSpec().kind, BackingKind::kRamLazy) << "the library's default (tests create many emulators)";
  EXPECT_EQ(ParseBacking("null")->kind, BackingKind::kNull);
  EXPECT_FALSE(ParseBacking("file"));
  EXPECT_FALSE(ParseBacking("file:"));
  auto file = ParseBacking("file:/tmp/x.img");
  ASSERT_TRUE(file);
  EXPECT_EQ(file->kind, BackingKind::kFile);
  EXPECT_EQ(BackingPath(*file, 1), "/tmp/x.img");
  EXPECT_EQ(BackingPath(*file, 3), "/tmp/x.img.3");
}

TEST(Options, Validate) {
  EmulatorOptions o;
  EXPECT_FALSE(Validate(o));  // no socket dir
  o.socket_dir = "/tmp/x";
  EXPECT_TRUE(Validate(o));
  o.io_queues = 512;
  EXPECT_FALSE(Validate(o));
  o.io_queues = 4;
  o.mdts = 16;
  EXPECT_FALSE(Validate(o));
  o.mdts = 5;
  o.namespaces.push_back({4096, 512, 0, true});
  EXPECT_FALSE(Validate(o));  // ext without metadata
}

}  // namespace
}  // namespace nvmux::emu
