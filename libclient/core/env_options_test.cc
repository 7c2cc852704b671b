// Env::Init's checks of its options that fail before anything starts (no
// hugepages, DPDK or group needed).
#include <gtest/gtest.h>

#include "nvmux/env.h"

namespace nvmux {
namespace {

TEST(EnvOptions, ABadPciAllowedEntryIsEinvalNamingIt) {
  for (const char* bad : {"nvme0", "0000:04:00", "04:00.0 05:00.0", "", "0000:04:00.8"}) {
    EnvOptions o;
    o.pci_allowed = {"0000:05:00.0", bad};
    auto env = Env::Init(o);
    ASSERT_FALSE(env) << "'" << bad << "' was accepted";
    EXPECT_EQ(env.error().code, EINVAL);
    EXPECT_NE(env.error().message.find("EnvOptions::pci_allowed entry '" + std::string(bad) + "' is not a PCI address"),
              std::string::npos)
        << env.error().message;
  }
}

}  // namespace
}  // namespace nvmux
