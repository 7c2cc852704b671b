// nvmux's tools drive SPDK's NVMe/TCP target (nvmf_tgt with a 512 MiB RAM
// disk on 127.0.0.1, started by the peer's target.sh) with the trid exactly
// as SPDK prints it. Skipped with the reason when NVMUX_SPDK_DIR names no
// SPDK build. One target at a time (CTest resource lock spdk_target).
// TcpErrors needs no target: what a closed port and bad trids report.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>

#include "nvmux/controller.h"
#include "nvmux/env.h"
#include "nvmux/probe.h"
#include "nvmux/qpair.h"
#include "test/interop/spdk_peer.h"

namespace nvmux::test {
namespace {

using namespace std::chrono_literals;

bool Contains(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

// A TCP port on 127.0.0.1 nobody listens on (bound, then released).
int FreePort() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (s >= 0) ::close(s);
    return 0;
  }
  ::close(s);
  return ntohs(a.sin_port);
}

class SpdkTcpTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string why;
    auto peer = SpdkPeer::Find(why);
    if (!peer) {
      skip_ = why;
      return;
    }
    spdk_.emplace(*peer);
    port_ = std::to_string(FreePort());
    std::string error;
    auto trid = spdk_->StartTarget("tcp", port_, error);
    if (!trid) {
      start_error_ = error;
      return;
    }
    trid_ = *trid;
  }
  static void TearDownTestSuite() {
    if (spdk_) spdk_->StopTarget();
    spdk_.reset();
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_TRUE(start_error_.empty()) << start_error_;
  }

  static inline std::optional<SpdkPeer> spdk_;
  static inline std::string skip_, start_error_, port_, trid_;
};

TEST_F(SpdkTcpTest, IdentifyReadsTheControllerOverTcp) {
  ASSERT_TRUE(Contains(trid_, "trtype:TCP")) << trid_;
  RunResult r = RunCaptured({NVMUX_IDENTIFY, "-r", trid_}, {}, 60s);
  ASSERT_TRUE(r.ok()) << r.Describe();
  EXPECT_TRUE(Contains(r.output, "Serial Number:                         SPDK00000000000001")) << r.output;
  EXPECT_TRUE(Contains(r.output, "Model Number:                          SPDK_Controller1")) << r.output;
  EXPECT_TRUE(Contains(r.output, "Subsystem NQN:                         nqn.2019-07.io.spdk:cnode1")) << r.output;
  // Registers came from Property Get after the init machine enabled it.
  EXPECT_TRUE(Contains(r.output, "Ready:                               Yes")) << r.output;
  EXPECT_TRUE(Contains(r.output, "1048576")) << r.output;  // 512 MiB of 512-byte blocks
}

// 4 KiB writes travel inside the command capsule (SPDK's in-capsule size is
// 4 KiB), 128 KiB writes by R2T and H2CData; reads come back as C2HData.
// --verify checks every block read against what was written.
TEST_F(SpdkTcpTest, PerfVerifyInCapsuleAndR2TWrites) {
  for (const char* size : {"4096", "131072"}) {
    RunResult r = RunCaptured({NVMUX_PERF, "-r", trid_, "-q", "16", "-o", size, "-w", "randrw", "-M", "50", "-t", "2",
                               "--verify", "--json"},
                              {}, 120s);
    ASSERT_TRUE(r.ok()) << size << ": " << r.Describe();
    size_t total = r.output.find("\"total\":{\"ios\":");
    ASSERT_NE(total, std::string::npos) << r.output;
    EXPECT_GT(std::strtoull(r.output.c_str() + total + 15, nullptr, 10), 50u) << size << ": " << r.output;
  }
}

// --transport-stats counts the connection's PDUs and sendmsg calls: 4 KiB
// writes go in the capsule (no R2T), 128 KiB writes are asked for by R2Ts
// and sent as H2CData; reads come back as C2HData; digests as negotiated.
TEST_F(SpdkTcpTest, TransportStatsCountPdusR2tsAndDigests) {
  auto stat = [](const std::string& out, const std::string& name) -> long long {
    size_t at = out.find("\t" + name + ":");
    if (at == std::string::npos) return -1;
    return std::strtoll(out.c_str() + out.find_first_not_of(" \t", at + name.size() + 2), nullptr, 10);
  };
  // --verify: the target's disk is shared with the other cases, whose
  // --verify runs read back what this one writes.
  RunResult small = RunCaptured({NVMUX_PERF, "-r", trid_, "-q", "8", "-o", "4096", "-w", "randrw", "-M", "50", "-t",
                                 "1", "--verify", "--transport-stats"},
                                {}, 120s);
  ASSERT_TRUE(small.ok()) << small.Describe();
  EXPECT_TRUE(Contains(small.output, "TCP transport, I/O queue pair 1:")) << small.output;
  EXPECT_GT(stat(small.output, "in_capsule_writes"), 0) << small.output;
  EXPECT_EQ(stat(small.output, "r2ts"), 0) << small.output;
  EXPECT_GT(stat(small.output, "pdus_sent"), 0) << small.output;
  // Every PDU left in some sendmsg, and a call may carry several.
  EXPECT_GT(stat(small.output, "send_calls"), 0) << small.output;
  EXPECT_LE(stat(small.output, "send_calls"), stat(small.output, "pdus_sent")) << small.output;
  EXPECT_EQ(stat(small.output, "header_digest"), 0) << small.output;
  RunResult big = RunCaptured({NVMUX_PERF, "-r", trid_, "-q", "4", "-o", "131072", "-w", "randrw", "-M", "50", "-t",
                               "1", "-H", "-I", "--verify", "--transport-stats"},
                              {}, 120s);
  ASSERT_TRUE(big.ok()) << big.Describe();
  EXPECT_GT(stat(big.output, "r2ts"), 0) << big.output;
  EXPECT_GE(stat(big.output, "h2c_data_pdus"), stat(big.output, "r2ts")) << big.output;
  EXPECT_GT(stat(big.output, "c2h_data_pdus"), 0) << big.output;
  EXPECT_EQ(stat(big.output, "in_capsule_writes"), 0) << big.output;
  EXPECT_EQ(stat(big.output, "header_digest"), 1) << big.output;
  EXPECT_EQ(stat(big.output, "data_digest"), 1) << big.output;
}

// CRC32C header and data digests on every PDU, both ways.
TEST_F(SpdkTcpTest, PerfVerifyWithDigests) {
  for (const char* size : {"4096", "131072"}) {
    RunResult r = RunCaptured({NVMUX_PERF, "-r", trid_, "-q", "8", "-o", size, "-w", "randrw", "-M", "50", "-t", "1",
                               "-H", "-I", "--verify"},
                              {"NVMUX_LOG_LEVEL=info"}, 120s);
    ASSERT_TRUE(r.ok()) << size << ": " << r.Describe();
    // Both queues (admin and I/O) negotiated both digests.
    EXPECT_TRUE(Contains(r.output, "queue 0: connected (cntlid")) << r.output;
    EXPECT_TRUE(Contains(r.output, "queue 1: connected (cntlid")) << r.output;
    EXPECT_FALSE(Contains(r.output, "digests -")) << r.output;
    EXPECT_FALSE(Contains(r.output, "/-,")) << r.output;
  }
}

// Several queue pairs: each is its own connection with its own Connect.
TEST_F(SpdkTcpTest, SeveralQueuePairsEachConnect) {
  RunResult r = RunCaptured({NVMUX_PERF, "-r", trid_, "-q", "8", "-o", "4096", "-w", "randrw", "-M", "50", "-t", "1",
                             "-P", "3", "--verify"},
                            {}, 120s);
  ASSERT_TRUE(r.ok()) << r.Describe();
}

TEST_F(SpdkTcpTest, AWrongSubnqnIsRefusedWithTheConnectStatus) {
  std::string wrong = "trtype:tcp traddr:127.0.0.1 trsvcid:" + port_ + " subnqn:nqn.2019-07.io.spdk:cnode9";
  RunResult r = RunCaptured({NVMUX_IDENTIFY, "-r", wrong}, {}, 60s);
  EXPECT_FALSE(r.ok()) << r.Describe();
  EXPECT_TRUE(Contains(r.output, "Fabrics Connect to subsystem 'nqn.2019-07.io.spdk:cnode9'")) << r.output;
  EXPECT_TRUE(Contains(r.output, "refused: status 1/0x82 (invalid parameters: subnqn)")) << r.output;
}

// The discovery service on the target's port: its log, as nvme discover
// prints it, and the NVM subsystem in it.
TEST_F(SpdkTcpTest, DiscoverShowsTheLog) {
  const std::string disc = "trtype:tcp traddr:127.0.0.1 trsvcid:" + port_;
  RunResult r = RunCaptured({NVMUX_MANAGE, "discover", "-r", disc}, {}, 60s);
  ASSERT_TRUE(r.ok()) << r.Describe();
  EXPECT_TRUE(Contains(r.output, "Discovery Log Number of Records 2, Generation counter")) << r.output;
  EXPECT_TRUE(Contains(r.output, "subtype: nvme subsystem\ntreq:    not required\nportid:  0\ntrsvcid: " + port_ +
                                     "\nsubnqn:  nqn.2019-07.io.spdk:cnode1\ntraddr:  127.0.0.1")) << r.output;
  RunResult j = RunCaptured({NVMUX_IDENTIFY, "-r", disc, "--json"}, {}, 60s);
  ASSERT_TRUE(j.ok()) << j.Describe();
  EXPECT_TRUE(Contains(j.output, "\"trid\":\"trtype:tcp adrfam:ipv4 traddr:127.0.0.1 trsvcid:" + port_ +
                                     " subnqn:nqn.2019-07.io.spdk:cnode1\"")) << j.output;
  // A controller command given the discovery service says what to do instead.
  RunResult list = RunCaptured({NVMUX_MANAGE, "list", "-r", disc}, {}, 60s);
  EXPECT_FALSE(list.ok());
  EXPECT_TRUE(Contains(list.output, "names a discovery service, not an NVM subsystem")) << list.output;
}

// In-process: Probe with the discovery trid offers each NVM subsystem entry
// to the probe callback with its own trid and attaches it; then the
// controller is reset (the queues connect again) and the connection is cut
// (the target stops): the queue pair then fails with ENXIO.
TEST_F(SpdkTcpTest, ProbeThroughDiscoveryResetThenConnectionLoss) {
  EnvOptions eo;
  eo.name = "spdk_tcp_test";
  auto env = Env::Init(eo);
  ASSERT_TRUE(env) << env.error().message;
  auto disc = TransportId::Parse("trtype:tcp traddr:127.0.0.1 trsvcid:" + port_);
  ASSERT_TRUE(disc);
  std::vector<std::string> offered;
  auto attached = Probe(**env, *disc,
                        [&](const TransportId& t, ControllerOptions&) {
                          offered.push_back(t.ToString());
                          return true;
                        },
                        nullptr);
  ASSERT_TRUE(attached) << attached.error().message;
  ASSERT_EQ(offered.size(), 1u);
  EXPECT_EQ(offered[0], "trtype:tcp adrfam:ipv4 traddr:127.0.0.1 trsvcid:" + port_ + " subnqn:nqn.2019-07.io.spdk:cnode1");
  ASSERT_EQ(attached->size(), 1u);
  Controller& c = *(*attached)[0];
  Namespace* ns = c.GetNamespace(1);
  ASSERT_NE(ns, nullptr);
  auto qp = c.AllocIoQpair();
  ASSERT_TRUE(qp) << qp.error().message;
  auto buf = (*env)->AllocDma(4096);
  ASSERT_TRUE(buf);
  struct Count {
    int ok = 0, failed = 0;
  } count;
  auto done = [](void* arg, const spec::Cqe& cpl) {
    auto* n = static_cast<Count*>(arg);
    (cpl.sct() == 0 && cpl.sc() == 0 ? n->ok : n->failed)++;
  };
  ASSERT_TRUE((*qp)->Read(*ns, buf->data(), 0, 8, done, &count));
  for (int i = 0; i < 100000 && count.ok == 0; ++i) ASSERT_TRUE((*qp)->ProcessCompletions());
  ASSERT_EQ(count.ok, 1);

  // A controller reset is a new association: every queue connects again
  // and the same queue pair keeps working.
  ASSERT_TRUE(c.Reset());
  ASSERT_TRUE((*qp)->Read(*ns, buf->data(), 0, 8, done, &count));
  for (int i = 0; i < 100000 && count.ok == 1; ++i) ASSERT_TRUE((*qp)->ProcessCompletions());
  ASSERT_EQ(count.ok, 2);

  spdk_->StopTarget();
  std::string error;
  Status last = Ok();
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < until) {
    Status sub = (*qp)->Read(*ns, buf->data(), 0, 8, done, &count);
    auto polled = (*qp)->ProcessCompletions();
    (void)c.ProcessAdminCompletions();
    if (!sub) last = sub;
    else if (!polled) last = polled.error();
    if (!last) break;
  }
  ASSERT_FALSE(last) << "the queue pair kept working after the target stopped";
  EXPECT_EQ(last.error().code, ENXIO) << last.error().message;
  qp->reset();  // the queue pair before its controller
  attached->clear();
  // The other tests of the suite need the target back.
  auto trid = spdk_->StartTarget("tcp", port_, error);
  ASSERT_TRUE(trid) << error;
}

TEST(TcpErrors, AClosedPortIsRefusedNamingTheAddress) {
  const std::string port = std::to_string(FreePort());
  RunResult r = RunCaptured({NVMUX_IDENTIFY, "-r", "trtype:tcp traddr:127.0.0.1 trsvcid:" + port}, {}, 60s);
  EXPECT_FALSE(r.ok()) << r.Describe();
  EXPECT_TRUE(Contains(r.output, "cannot connect to 127.0.0.1:" + port + ": Connection refused")) << r.output;
}

// A listener that never answers ICReq (the kernel completes the TCP
// handshake; nobody reads): the connect timeout (5 s by default) ends it.
TEST(TcpErrors, ASilentListenerTimesOutNamingTheAddress) {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(s, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::listen(s, 4), 0);
  ASSERT_EQ(::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const std::string port = std::to_string(ntohs(a.sin_port));
  RunResult r = RunCaptured({NVMUX_IDENTIFY, "-r", "trtype:tcp traddr:127.0.0.1 trsvcid:" + port + " subnqn:nqn.x:y"},
                            {}, 60s);
  ::close(s);
  EXPECT_FALSE(r.ok()) << r.Describe();
  EXPECT_TRUE(Contains(r.output, "ICReq: no answer from 127.0.0.1:" + port + " within 5000 ms")) << r.output;
}

TEST(TcpErrors, AMissingPortNamesTheKeyAndAnExample) {
  RunResult r = RunCaptured({NVMUX_IDENTIFY, "-r", "trtype:tcp traddr:127.0.0.1"}, {}, 60s);
  EXPECT_FALSE(r.ok()) << r.Describe();
  EXPECT_TRUE(Contains(r.output, "needs trsvcid (the port, e.g. 4420)")) << r.output;
}

}  // namespace
}  // namespace nvmux::test
