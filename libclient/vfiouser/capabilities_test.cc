#include "libclient/vfiouser/capabilities.h"

#include <gtest/gtest.h>

namespace nvmux::vfiouser {
namespace {

TEST(Capabilities, EmptyGivesDefaults) {
  auto caps = ParseCapabilities("");
  ASSERT_TRUE(caps);
  EXPECT_EQ(caps->max_msg_fds, kDefaultMaxMsgFds);
  EXPECT_EQ(caps->max_data_xfer_size, kDefaultMaxDataXferSize);
}

TEST(Capabilities, ParsesKnownKeysAndSkipsOthers) {
  auto caps = ParseCapabilities(
      R"({"capabilities": {"max_msg_fds": 16, "migration": {"pgsize": 4096, "x": [1, "a", true, null, -2.5]},
          "max_data_xfer_size": 65536, "pgsizes": 4096, "max_dma_maps": 100}, "other": "v"})");
  ASSERT_TRUE(caps) << caps.error().ToString();
  EXPECT_EQ(caps->max_msg_fds, 16u);
  EXPECT_EQ(caps->max_data_xfer_size, 65536u);
  EXPECT_EQ(caps->max_dma_maps, 100u);
  EXPECT_EQ(caps->pgsizes, 4096u);
}

TEST(Capabilities, RoundTrip) {
  Capabilities in;
  in.max_msg_fds = 3;
  in.max_data_xfer_size = 12345;
  auto out = ParseCapabilities(FormatCapabilities(in));
  ASSERT_TRUE(out);
  EXPECT_EQ(out->max_msg_fds, 3u);
  EXPECT_EQ(out->max_data_xfer_size, 12345u);
}

TEST(Capabilities, RejectsMalformed) {
  for (const char* bad : {"{", "[]", "{\"capabilities\": {\"max_msg_fds\": \"8\"}}",
                          "{\"capabilities\": {\"max_msg_fds\": -1}}", "{} trailing",
                          "{\"capabilities\": {\"max_msg_fds\": 99999999999}}",
                          "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"}) {
    auto caps = ParseCapabilities(bad);
    EXPECT_FALSE(caps) << bad;
    if (!caps) {
      EXPECT_EQ(caps.error().code, EINVAL);
    }
  }
  auto named = ParseCapabilities("{\"capabilities\": {\"max_data_xfer_size\": true}}");
  ASSERT_FALSE(named);
  EXPECT_NE(named.error().message.find("max_data_xfer_size"), std::string::npos);
}

}  // namespace
}  // namespace nvmux::vfiouser
