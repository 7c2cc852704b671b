#include "nvmux/transport_id.h"

#include <gtest/gtest.h>

namespace nvmux {
namespace {

TEST(TransportId, ParsesVfioUser) {
  auto id = TransportId::Parse("trtype:vfiouser traddr:/var/run/emu/");
  ASSERT_TRUE(id) << id.error().message;
  EXPECT_EQ(id->trtype, TransportType::kVfioUser);
  EXPECT_EQ(id->traddr, "/var/run/emu");
  EXPECT_EQ(id->ToString(), "trtype:vfiouser traddr:/var/run/emu");
}

TEST(TransportId, ParsesPcieAndNormalisesTheAddress) {
  auto a = TransportId::Parse("trtype:PCIe traddr:04:00.0");
  auto b = TransportId::Parse("TRTYPE=pcie  traddr=0000:04:00.0");
  ASSERT_TRUE(a) << a.error().message;
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(a->traddr, "0000:04:00.0");
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(TransportId::Parse("trtype:pcie traddr:0000:AF:1f.7")->traddr, "0000:af:1f.7");
}

TEST(TransportId, ParsesTcpWithDefaults) {
  auto id = TransportId::Parse("trtype:tcp traddr:127.0.0.1 trsvcid:4420 ns:3");
  ASSERT_TRUE(id) << id.error().message;
  EXPECT_EQ(id->adrfam, AddressFamily::kIpv4);
  EXPECT_EQ(id->subnqn, TransportId::kDiscoveryNqn);
  EXPECT_EQ(id->nsid, 3u);
  auto v6 = TransportId::Parse("trtype:tcp adrfam:IPv6 traddr:::1 trsvcid:4420 subnqn:nqn.2016-06.io.spdk:cnode1");
  ASSERT_TRUE(v6) << v6.error().message;
  EXPECT_EQ(v6->traddr, "::1");
  auto again = TransportId::Parse(v6->ToString());
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *v6);
}

// SPDK's host needs a subnqn in vfio-user trids, and users copy them: the
// same trid, in SPDK's spelling, parses; the subnqn is kept (it is checked at
// attach) but does not change which controller the trid names.
TEST(TransportId, VfioUserTakesSpdksSpellingWithASubnqn) {
  auto id = TransportId::Parse("trtype:VFIOUSER traddr:/tmp/emu subnqn:nqn.2019-07.io.spdk:cnode1");
  ASSERT_TRUE(id) << id.error().message;
  EXPECT_EQ(id->subnqn, "nqn.2019-07.io.spdk:cnode1");
  EXPECT_EQ(id->ToString(), "trtype:vfiouser traddr:/tmp/emu subnqn:nqn.2019-07.io.spdk:cnode1");
  EXPECT_EQ(id->Key(), "trtype:vfiouser traddr:/tmp/emu");
  EXPECT_EQ(id->Key(), TransportId::Parse("trtype:vfiouser traddr:/tmp/emu")->Key());
  auto tcp = TransportId::Parse("trtype:tcp traddr:127.0.0.1 trsvcid:4420 subnqn:nqn.x:a");
  EXPECT_NE(tcp->Key(), TransportId::Parse("trtype:tcp traddr:127.0.0.1 trsvcid:4420 subnqn:nqn.x:b")->Key());
}

TEST(TransportId, SubnqnIsCheckedAgainstTheControllersNqn) {
  auto id = TransportId::Parse("trtype:vfiouser traddr:/tmp/emu subnqn:nqn.2019-07.io.spdk:cnode1");
  char reported[256] = "nqn.2019-07.io.spdk:cnode1";
  EXPECT_TRUE(CheckSubsystemNqn(*id, std::string_view(reported, sizeof(reported))));
  char other[256] = "nqn.2024-01.io.nvmux:emu:NVMUXEMU0001";
  Status st = CheckSubsystemNqn(*id, std::string_view(other, sizeof(other)));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ENODEV);
  EXPECT_NE(st.error().message.find("'nqn.2024-01.io.nvmux:emu:NVMUXEMU0001'"), std::string::npos) << st.error().message;
  EXPECT_NE(st.error().message.find("'nqn.2019-07.io.spdk:cnode1'"), std::string::npos) << st.error().message;
  EXPECT_TRUE(CheckSubsystemNqn(*TransportId::Parse("trtype:vfiouser traddr:/tmp/emu"), other));
}

// A trtype alone names every controller of that type (a secondary's probe
// of its group); it parses, with no address.
TEST(TransportId, TrtypeAloneNamesNoAddress) {
  auto id = TransportId::Parse("trtype:VFIOUSER");
  ASSERT_TRUE(id) << id.error().message;
  EXPECT_EQ(id->trtype, TransportType::kVfioUser);
  EXPECT_TRUE(id->traddr.empty());
  EXPECT_EQ(id->ToString(), "trtype:vfiouser");
}

TEST(TransportId, DifferentControllersDiffer) {
  EXPECT_FALSE(*TransportId::Parse("trtype:pcie traddr:04:00.0") == *TransportId::Parse("trtype:pcie traddr:04:00.1"));
  EXPECT_FALSE(*TransportId::Parse("trtype:vfiouser traddr:/a") == *TransportId::Parse("trtype:vfiouser traddr:/b"));
}

struct BadCase {
  const char* text;
  const char* must_name;  // the error names the culprit
};

class TransportIdBad : public ::testing::TestWithParam<BadCase> {};

TEST_P(TransportIdBad, IsEINVALNamingTheCulprit) {
  auto id = TransportId::Parse(GetParam().text);
  ASSERT_FALSE(id) << GetParam().text;
  EXPECT_EQ(id.error().code, EINVAL);
  EXPECT_NE(id.error().message.find(GetParam().must_name), std::string::npos) << id.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Malformed, TransportIdBad,
    ::testing::Values(BadCase{"", "missing trtype"}, BadCase{"traddr:/x", "missing trtype"},
                      BadCase{"trtype:rdma traddr:1.2.3.4", "'rdma'"}, BadCase{"trtype:pcie ns:1", "needs traddr"},
                      BadCase{"trtype:pcie traddr:04:00", "'04:00'"}, BadCase{"trtype:pcie traddr:zz:00.0", "'zz:00.0'"},
                      BadCase{"trtype:pcie traddr:00:20.0", "'00:20.0'"}, BadCase{"trtype:vfiouser traddr:rel/dir", "'rel/dir'"},
                      BadCase{"trtype:vfiouser traddr:/a colour:blue", "'colour'"},
                      BadCase{"trtype:vfiouser traddr:/a traddr:/b", "'traddr' given twice"},
                      BadCase{"trtype:vfiouser justaword", "'justaword'"}, BadCase{"trtype: traddr:/a", "'trtype' has no value"},
                      BadCase{"trtype:tcp traddr:10.0.0.1", "needs trsvcid"},
                      BadCase{"trtype:tcp traddr:10.0.0.1 trsvcid:70000", "'70000'"},
                      BadCase{"trtype:tcp traddr:not-an-ip trsvcid:4420", "'not-an-ip'"},
                      BadCase{"trtype:tcp adrfam:ipx traddr:1.2.3.4 trsvcid:1", "'ipx'"},
                      BadCase{"trtype:vfiouser traddr:/a ns:0", "ns '0'"},
                      BadCase{"trtype:vfiouser traddr:/a ns:4294967295", "ns '4294967295'"},
                      BadCase{"trtype:vfiouser traddr:/a trsvcid:1", "vfiouser takes"}));

}  // namespace
}  // namespace nvmux
