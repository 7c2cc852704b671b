// The real nvmux-emu executable: start, talk, SIGTERM, socket gone; and
// clear errors for bad options.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "test/conformance/child_process.h"
#include "test/conformance/harness.h"

namespace nvmux::conformance {
namespace {

TEST(ExecTest, ServesThenStopsOnSigtermAndRemovesSocket) {
  TempDir dir;
  const std::string sock_dir = dir.path() + "/emu";
  Child child({"--socket", sock_dir, "--ns", "size=64M,lbads=4096", "--mqes", "127"}, dir.path() + "/stderr");
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(WaitForPath(sock_dir + "/cntrl")) << "nvmux-emu did not create its socket";
  ASSERT_TRUE(Exists(sock_dir + "/cntrl")) << ReadFile(dir.path() + "/stderr");
  EXPECT_TRUE(Exists(sock_dir + "/bar0")) << "SPDK hosts map the doorbells from <dir>/bar0";
  {
    auto client = vfiouser::Client::Connect(sock_dir);
    ASSERT_TRUE(client) << client.error().ToString();
    ASSERT_TRUE((*client)->Negotiate());
    auto cap = (*client)->Read64(vfiouser::kPciBar0Region, spec::kRegCap);
    ASSERT_TRUE(cap);
    EXPECT_EQ(spec::Cap{*cap}.mqes(), 127);
  }
  ASSERT_EQ(::kill(child.pid(), SIGTERM), 0);
  int status = child.Wait(std::chrono::seconds(10));
  ASSERT_NE(status, -1) << "nvmux-emu did not exit after SIGTERM";
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_FALSE(Exists(sock_dir + "/cntrl"));
  EXPECT_FALSE(Exists(sock_dir + "/bar0"));
  EXPECT_FALSE(Exists(sock_dir)) << "the directory nvmux-emu created is removed too";
}

TEST(ExecTest, SigintWhileAClientIsConnected) {
  TempDir dir;
  Child child({"--socket", dir.path()}, dir.path() + "/stderr.txt");
  ASSERT_TRUE(WaitForPath(dir.path() + "/cntrl")) << "nvmux-emu did not create its socket";
  auto client = vfiouser::Client::Connect(dir.path());
  ASSERT_TRUE(client) << client.error().ToString();
  ASSERT_TRUE((*client)->Negotiate());
  ASSERT_EQ(::kill(child.pid(), SIGINT), 0);
  int status = child.Wait(std::chrono::seconds(10));
  ASSERT_NE(status, -1);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE(Exists(dir.path() + "/cntrl"));
  auto after = (*client)->GetDeviceInfo();
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code, ENXIO);
}

struct BadArgs {
  std::vector<std::string> args;
  std::string expect;  // in stderr
};

TEST(ExecTest, BadOptionsNameTheValue) {
  TempDir dir;
  const std::string s = dir.path() + "/x";
  for (const BadArgs& b : std::vector<BadArgs>{
           {{"--socket", s, "--ns", "size=1000"}, "size=1000"},
           {{"--socket", s, "--ns", "lbads=1024"}, "lbads=1024"},
           {{"--socket", s, "--ns", "ms=7"}, "ms=7"},
           {{"--socket", s, "--ns", "color=blue"}, "color"},
           {{"--socket", s, "--backing", "disk"}, "disk"},
           {{"--socket", s, "--mdts", "40"}, "--mdts 40"},
           {{"--socket", s, "--io-queues", "0"}, "--io-queues 0"},
           {{"--ns", "size=1G"}, "--socket"},
       }) {
    const std::string err = dir.path() + "/err";
    Child child(b.args, err);
    int status = child.Wait(std::chrono::seconds(10));
    ASSERT_NE(status, -1);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << b.expect;
    EXPECT_NE(ReadFile(err).find(b.expect), std::string::npos) << "stderr: " << ReadFile(err);
    EXPECT_FALSE(Exists(s + "/cntrl"));
  }
}

TEST(ExecTest, LiveSocketIsNotStolen) {
  TempDir dir;
  Child first({"--socket", dir.path()}, dir.path() + "/e1");
  ASSERT_TRUE(WaitForPath(dir.path() + "/cntrl")) << "nvmux-emu did not create its socket";
  Child second({"--socket", dir.path()}, dir.path() + "/e2");
  int status = second.Wait(std::chrono::seconds(10));
  ASSERT_NE(status, -1);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1);
  EXPECT_NE(ReadFile(dir.path() + "/e2").find("another server"), std::string::npos);
  EXPECT_TRUE(Exists(dir.path() + "/cntrl"));
  EXPECT_TRUE(Exists(dir.path() + "/bar0")) << "the live server's BAR0 file is untouched";
  ASSERT_EQ(::kill(first.pid(), SIGTERM), 0);
  EXPECT_NE(first.Wait(std::chrono::seconds(10)), -1);
}

}  // namespace
}  // namespace nvmux::conformance

namespace nvmux::conformance {
namespace {

TEST(ExecTest, StalledClientDoesNotDelayStop) {
  TempDir dir;
  Child child({"--socket", dir.path()}, dir.path() + "/err");
  ASSERT_TRUE(WaitForPath(dir.path() + "/cntrl")) << "nvmux-emu did not create its socket";
  auto client = vfiouser::Client::Connect(dir.path());
  ASSERT_TRUE(client) << client.error().ToString();
  ASSERT_TRUE((*client)->Negotiate());
  // A header that promises a body, then silence: the server waits for it.
  vfiouser::Header h;
  h.cmd = static_cast<uint16_t>(vfiouser::Command::kRegionWrite);
  h.msg_size = 1000;
  ASSERT_EQ(::send((*client)->socket_fd(), &h, sizeof(h), MSG_NOSIGNAL), static_cast<ssize_t>(sizeof(h)));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(child.pid(), SIGTERM), 0);
  int status = child.Wait(std::chrono::seconds(10));
  ASSERT_NE(status, -1);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_FALSE(Exists(dir.path() + "/cntrl"));
}

}  // namespace
}  // namespace nvmux::conformance
