// Fault injection from the command line of the real nvmux-emu executable,
// SIGUSR1 surprise removal, and the control socket's lifetime.
#include <signal.h>

#include <string>
#include <thread>
#include <vector>

#include "test/conformance/child_process.h"
#include "test/conformance/control_client.h"
#include "test/conformance/harness.h"

namespace nvmux::conformance {
namespace {

using namespace nvmux::spec;

TEST(FaultsExecTest, CommandLineFailReachesTheCompletion) {
  TempDir dir;
  const std::string sock = dir.path() + "/emu";
  Child child({"--socket", sock, "--ns", "size=16M", "--fault", "fail:opc=0x02,count=1,sct=2,sc=0x81",
               "--fault", "delay:us=1000,opc=0x01,count=1"},
              dir.path() + "/stderr");
  ASSERT_TRUE(WaitForPath(sock + "/control")) << ReadFile(dir.path() + "/stderr");
  ASSERT_TRUE(WaitForPath(sock + "/cntrl"));
  {
    TestDevice dev;
    dev.Attach(sock);
    ASSERT_TRUE(dev.Enable());
    dev.CreateIoQueuePair(1, 16);
    DmaMemory::Buffer buf = dev.mem().Alloc(512);
    Sqe w = IoCmd(nvm::kWrite, 1, 0, 1);
    w.prp1 = buf.iova;
    EXPECT_TRUE(IsSuccess(dev.Io(1, w)));  // delayed 1 ms, then completes
    Sqe r = IoCmd(nvm::kRead, 1, 0, 1);
    r.prp1 = buf.iova;
    EXPECT_TRUE(HasStatus(dev.Io(1, r), sct::kMediaError, 0x81, false));
    EXPECT_TRUE(IsSuccess(dev.Io(1, r)));
    ControlClient control(sock);
    const std::string status = control.Send("status");
    EXPECT_NE(status.find("failed=1 dropped=0 delayed=1"), std::string::npos) << status;
  }
  ASSERT_EQ(::kill(child.pid(), SIGTERM), 0);
  int status = child.Wait(std::chrono::seconds(10));
  ASSERT_NE(status, -1);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE(Exists(sock + "/control"));
  EXPECT_FALSE(Exists(sock));
}

TEST(FaultsExecTest, CommandLineCfsAfterDelay) {
  TempDir dir;
  Child child({"--socket", dir.path(), "--fault", "cfs:after_ms=200"}, dir.path() + "/stderr");
  ASSERT_TRUE(WaitForPath(dir.path() + "/cntrl")) << ReadFile(dir.path() + "/stderr");
  auto client = vfiouser::Client::Connect(dir.path());
  ASSERT_TRUE(client) << client.error().ToString();
  ASSERT_TRUE((*client)->Negotiate());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  uint32_t csts = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    auto v = (*client)->Read32(vfiouser::kPciBar0Region, kRegCsts);
    ASSERT_TRUE(v) << v.error().ToString();
    csts = *v;
    if ((csts & 2u) != 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(csts & 2u, 2u) << "CSTS.CFS never set";
  ASSERT_EQ(::kill(child.pid(), SIGTERM), 0);
  EXPECT_NE(child.Wait(std::chrono::seconds(10)), -1);
}

TEST(FaultsExecTest, SigusrOneIsSurpriseRemoval) {
  TempDir dir;
  Child child({"--socket", dir.path()}, dir.path() + "/stderr");
  ASSERT_TRUE(WaitForPath(dir.path() + "/control")) << ReadFile(dir.path() + "/stderr");
  ASSERT_TRUE(WaitForPath(dir.path() + "/cntrl"));
  auto client = vfiouser::Client::Connect(dir.path());
  ASSERT_TRUE(client) << client.error().ToString();
  ASSERT_TRUE((*client)->Negotiate());
  ControlClient control(dir.path());
  ASSERT_TRUE(StartsWith(control.Send("status"), "ok removed=0"));
  ASSERT_EQ(::kill(child.pid(), SIGUSR1), 0);
  // The client sees the device go: an error, quickly, never a hang.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  Result<uint32_t> r = Fail(0, "not tried");
  do {
    r = (*client)->Read32(vfiouser::kPciBar0Region, kRegCsts);
    if (!r) break;
    // Until the signal lands CSTS reads 0 (disabled); afterwards all-ones.
    EXPECT_TRUE(*r == 0 || *r == 0xFFFFFFFFu) << *r;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  } while (std::chrono::steady_clock::now() < deadline);
  ASSERT_FALSE(r) << "the connection stayed up after SIGUSR1";
  EXPECT_TRUE(r.error().code == ENXIO || r.error().code == EPROTO) << r.error().ToString();
  EXPECT_FALSE(vfiouser::Client::Connect(dir.path())) << "connections must be refused";
  // Still running until SIGTERM, and says so.
  EXPECT_TRUE(StartsWith(control.Send("status"), "ok removed=1"));
  ASSERT_EQ(::kill(child.pid(), SIGTERM), 0);
  int status = child.Wait(std::chrono::seconds(10));
  ASSERT_NE(status, -1);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE(Exists(dir.path() + "/cntrl"));
  EXPECT_FALSE(Exists(dir.path() + "/bar0"));
  EXPECT_FALSE(Exists(dir.path() + "/control"));
}

TEST(FaultsExecTest, BadFaultOptionsNameTheValue) {
  TempDir dir;
  const std::string s = dir.path() + "/x";
  struct Bad {
    std::vector<std::string> args;
    std::string expect;
  };
  for (const Bad& b : std::vector<Bad>{
           {{"--socket", s, "--fault", "explode:opc=1"}, "explode"},
           {{"--socket", s, "--fault", "fail:opc=0x100"}, "opc=0x100"},
           {{"--socket", s, "--fault", "fail:sct=8,sc=1"}, "sct=8"},
           {{"--socket", s, "--fault", "delay:opc=2"}, "us="},
           {{"--socket", s, "--fault", "drop:count=0"}, "count=0"},
           {{"--socket", s, "--fault", "cfs:after=5"}, "after"},
           {{"--socket", s, "--backing", "file:"}, "file:"},
           {{"--socket", s, "--backing", "file:" + dir.path() + "/no/dir/img"}, dir.path() + "/no/dir/img"},
       }) {
    const std::string err = dir.path() + "/err";
    Child child(b.args, err);
    int status = child.Wait(std::chrono::seconds(10));
    ASSERT_NE(status, -1);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << b.expect;
    EXPECT_NE(ReadFile(err).find(b.expect), std::string::npos) << "stderr: " << ReadFile(err);
    EXPECT_FALSE(Exists(s + "/cntrl"));
    EXPECT_FALSE(Exists(s + "/control"));
  }
}

TEST(FaultsExecTest, FileBackingFromTheCommandLine) {
  TempDir dir;
  const std::string img = dir.path() + "/disk.img";
  Child child({"--socket", dir.path() + "/s", "--ns", "size=2M", "--ns", "size=1M", "--backing", "file:" + img},
              dir.path() + "/stderr");
  ASSERT_TRUE(WaitForPath(dir.path() + "/s/cntrl")) << ReadFile(dir.path() + "/stderr");
  struct stat st{};
  ASSERT_EQ(::stat(img.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 2 << 20);
  ASSERT_EQ(::stat((img + ".2").c_str(), &st), 0) << "namespace 2 lives in PATH.2";
  EXPECT_EQ(st.st_size, 1 << 20);
  ASSERT_EQ(::kill(child.pid(), SIGTERM), 0);
  EXPECT_NE(child.Wait(std::chrono::seconds(10)), -1);
  EXPECT_TRUE(Exists(img)) << "the backing file is kept";
}

}  // namespace
}  // namespace nvmux::conformance
