// nvmux-manage as users run it: against a fresh nvmux-emu process per test
// (its own /tmp/nvmux-mng-* socket directory), standalone (-r) and as a
// secondary of a real nvmuxd (-i, a group id of this test process). Every
// run has stdin from /dev/null, so destructive subcommands need --yes.
// Fixtures stop what they started (SIGTERM, then wait) and remove the
// directory and the group's files even when a test fails.
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "shm/group.h"
#include "test/util/subprocess.h"

namespace nvmux {
namespace {

using namespace std::chrono_literals;
using test::Subprocess;

struct Ran {
  int code = -1;
  std::string out;  // stdout and stderr
};

// Runs nvmux-manage with `args` (shell words), stdin not a terminal.
Ran Manage(const std::string& args) {
  Ran r;
  std::string cmd = std::string(NVMUX_MANAGE) + " " + args + " < /dev/null 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), p)) r.out.append(buf, n);
  int st = ::pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

bool Has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Runs nvmux-manage with `argv` on a pseudo-terminal (stdin a terminal),
// answers `answer` once it asks "Are you sure? [y/N] ", and returns what it
// printed there and its exit code.
Ran ManageOnTerminal(const std::vector<std::string>& argv, const std::string& answer) {
  Ran r;
  int master = -1;
  pid_t pid = ::forkpty(&master, nullptr, nullptr, nullptr);
  if (pid < 0) return r;
  if (pid == 0) {
    std::vector<char*> args{const_cast<char*>(NVMUX_MANAGE)};
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(NVMUX_MANAGE, args.data());
    ::_exit(127);
  }
  bool answered = false;
  for (auto deadline = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < deadline;) {
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[1024];
    ssize_t n = ::read(master, buf, sizeof(buf));
    if (n <= 0) break;  // EIO: the child closed the terminal
    r.out.append(buf, static_cast<size_t>(n));
    if (!answered && Has(r.out, "Are you sure? [y/N] ")) {
      std::string line = answer + "\n";
      answered = ::write(master, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    }
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  ::close(master);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

class ManageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    group_ = 2000 + static_cast<int>(getpid() % 1000) * 8 + counter++ % 8;
    ASSERT_TRUE(shm::CleanStaleGroup(group_));
  }
  void TearDown() override {
    StopDaemon();
    if (emu_) {
      emu_->Kill(SIGTERM);
      auto st = emu_->Wait();
      EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
          << "nvmux-emu: " << (st ? test::DescribeStatus(*st) : st.error().message);
      emu_.reset();
    }
    for (auto& p : others_) p.reset();  // SIGKILL and reap anything left
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
    EXPECT_TRUE(shm::CleanStaleGroup(group_));
  }

  // nvmux-emu on a new socket directory, `args` added; waits for its sockets.
  void StartEmu(const std::vector<std::string>& args = {"--ns", "size=64M"}) {
    char tmpl[] = "/tmp/nvmux-mng-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::vector<std::string> argv{NVMUX_EMU, "--socket", dir_};
    argv.insert(argv.end(), args.begin(), args.end());
    auto emu = Subprocess::Spawn(argv);
    ASSERT_TRUE(emu);
    emu_ = std::make_unique<Subprocess>(std::move(*emu));
    for (int i = 0;
         i < 1000 && !(std::filesystem::exists(dir_ + "/cntrl") && std::filesystem::exists(dir_ + "/control")); ++i)
      std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(std::filesystem::exists(dir_ + "/cntrl")) << "nvmux-emu did not create its socket in " << dir_;
  }
  std::string Trid() const { return "trtype:vfiouser traddr:" + dir_; }
  // "-r 'trtype:vfiouser traddr:/tmp/...'" for the command line.
  std::string R() const { return "-r '" + Trid() + "'"; }
  std::string I() const { return "-i " + std::to_string(group_); }

  // nvmuxd serving the emulator to group_; waits for its ready line.
  void StartDaemon() {
    auto d = Subprocess::Spawn({NVMUXD, "-i", std::to_string(group_), "-r", Trid()});
    ASSERT_TRUE(d);
    daemon_ = std::make_unique<Subprocess>(std::move(*d));
    auto ready = daemon_->ReadUntil("nvmuxd: group ", 20s);
    ASSERT_TRUE(ready) << ready.error().message;
    ASSERT_TRUE(Has(*ready, "ready")) << *ready;
  }
  void StopDaemon() {
    if (!daemon_) return;
    daemon_->Kill(SIGTERM);
    auto st = daemon_->Wait(20s);
    EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
        << "nvmuxd: " << (st ? test::DescribeStatus(*st) : st.error().message);
    daemon_.reset();
  }

  int group_ = 0;
  std::string dir_;
  std::unique_ptr<Subprocess> emu_;
  std::unique_ptr<Subprocess> daemon_;
  std::vector<std::unique_ptr<Subprocess>> others_;
};

TEST_F(ManageTest, StandaloneListShowsTheControllerAndItsNamespace) {
  StartEmu();
  Ran list = Manage("list " + R());
  ASSERT_EQ(list.code, 0) << list.out;
  EXPECT_TRUE(Has(list.out, "Node")) << list.out;
  EXPECT_TRUE(Has(list.out, Trid() + " NVMUXEMU0001")) << list.out;
  EXPECT_TRUE(Has(list.out, "512   B +  0 B")) << list.out;
  EXPECT_TRUE(Has(list.out, "67.11  MB /  67.11  MB")) << list.out;
  Ran json = Manage("list " + R() + " --json");
  ASSERT_EQ(json.code, 0) << json.out;
  EXPECT_TRUE(Has(json.out, "{\"Devices\": [{\"DevicePath\": \"" + Trid() + "\", \"SerialNumber\": \"NVMUXEMU0001\""))
      << json.out;
  EXPECT_TRUE(Has(json.out, "\"NameSpace\": 1, \"UsedBytes\": 67108864, \"MaximumLBA\": 131072")) << json.out;
}

TEST_F(ManageTest, StandaloneFeaturesAndLogPages) {
  StartEmu();
  Ran arb = Manage("get-feature " + R() + " -f 1");
  ASSERT_EQ(arb.code, 0) << arb.out;
  EXPECT_EQ(arb.out, "get-feature:0x01 (Arbitration), Current value:0x00000000\n");
  Ran queues = Manage("get-feature " + R() + " -f 0x07 --json");
  ASSERT_EQ(queues.code, 0) << queues.out;
  EXPECT_TRUE(Has(queues.out, "{\"fid\": 7, \"feature\": \"Number of Queues\", \"sel\": \"Current\", \"value\": "))
      << queues.out;
  Ran caps = Manage("get-feature " + R() + " -f 6 --sel 3");
  ASSERT_EQ(caps.code, 0) << caps.out;
  EXPECT_TRUE(Has(caps.out, "get-feature:0x06 (Volatile Write Cache), Supported capabilities value:0x")) << caps.out;

  Ran set = Manage("set-feature " + R() + " -f 0x0b -v 0x100 --yes");
  ASSERT_EQ(set.code, 0) << set.out;
  EXPECT_TRUE(Has(set.out, "set-feature:0x0b (Async Event Configuration), value:0x00000100")) << set.out;

  Ran smart = Manage("smart-log " + R());
  ASSERT_EQ(smart.code, 0) << smart.out;
  for (const char* field :
       {"critical_warning", "temperature", "available_spare", "available_spare_threshold", "percentage_used",
        "data_units_read", "data_units_written", "power_cycles", "num_err_log_entries"})
    EXPECT_TRUE(Has(smart.out, std::string("\n") + field + " ")) << field << " in\n" << smart.out;
  Ran smart_json = Manage("smart-log " + R() + " --json");
  ASSERT_EQ(smart_json.code, 0) << smart_json.out;
  EXPECT_TRUE(Has(smart_json.out, "{\"critical_warning\": 0, \"temperature\": ")) << smart_json.out;
  EXPECT_TRUE(Has(smart_json.out, "\"avail_spare\": ")) << smart_json.out;

  Ran errors = Manage("error-log " + R() + " -e 4");
  ASSERT_EQ(errors.code, 0) << errors.out;
  EXPECT_TRUE(Has(errors.out, "entries:4")) << errors.out;
  EXPECT_TRUE(Has(errors.out, " Entry[ 3]")) << errors.out;
  EXPECT_FALSE(Has(errors.out, " Entry[ 4]")) << errors.out;
  Ran all_errors = Manage("error-log " + R() + " --json");
  ASSERT_EQ(all_errors.code, 0) << all_errors.out;
  EXPECT_TRUE(Has(all_errors.out, "{\"errors\": [{\"error_count\": ")) << all_errors.out;

  Ran log = Manage("get-log " + R() + " --log-id 2 --log-len 36");
  ASSERT_EQ(log.code, 0) << log.out;
  EXPECT_TRUE(Has(log.out, "log-id:2 namespace-id:0xffffffff\n")) << log.out;
  EXPECT_TRUE(Has(log.out, "\n0020: ")) << log.out;
  EXPECT_FALSE(Has(log.out, "\n0030: ")) << log.out;
  Ran fw = Manage("get-log " + R() + " --log-id 3 --log-len 16 --json");
  ASSERT_EQ(fw.code, 0) << fw.out;
  // Firmware slot log: slot 1 active, revision "0.1.0" in FRS1.
  EXPECT_TRUE(Has(fw.out, "\"log_id\": 3, \"nsid\": 4294967295, \"offset\": 0, \"length\": 16, \"data\": \"01"))
      << fw.out;
  EXPECT_TRUE(Has(fw.out, "302e312e30")) << fw.out;
}

TEST_F(ManageTest, StandaloneNamespaceLifecycle) {
  StartEmu();
  Ran created = Manage("create-ns " + R() + " --nsze 2048 --flbas 0 --yes");
  ASSERT_EQ(created.code, 0) << created.out;
  ASSERT_TRUE(Has(created.out, "create-ns: Success, created nsid:")) << created.out;
  std::string nsid = created.out.substr(created.out.rfind(':') + 1);
  nsid.pop_back();  // the newline
  ASSERT_EQ(nsid, "2") << created.out;
  auto listed = [&] {
    Ran l = Manage("list " + R() + " --json");
    EXPECT_EQ(l.code, 0) << l.out;
    return Has(l.out, "\"NameSpace\": " + nsid + ", \"UsedBytes\": 1048576");
  };
  EXPECT_FALSE(listed()) << "a created namespace starts detached";

  Ran attached = Manage("attach-ns " + R() + " -n " + nsid + " --yes");
  ASSERT_EQ(attached.code, 0) << attached.out;
  EXPECT_EQ(attached.out, "attach-ns: Success, nsid:" + nsid + "\n");
  EXPECT_TRUE(listed());
  Ran text = Manage("list " + R());
  EXPECT_TRUE(Has(text.out, "NVMUXEMU0001         nvmux emulated NVMe controller           2 ")) << text.out;
  Ran again = Manage("attach-ns " + R() + " -n " + nsid + " -c 1 --yes");
  EXPECT_EQ(again.code, 1) << again.out;
  EXPECT_TRUE(Has(again.out, "Namespace Already Attached")) << again.out;

  Ran detached = Manage("detach-ns " + R() + " -n " + nsid + " -c 1 --yes --json");
  ASSERT_EQ(detached.code, 0) << detached.out;
  EXPECT_EQ(detached.out, "{\"nsid\": 2, \"detached\": true, \"controllers\": [1]}\n");
  EXPECT_FALSE(listed());

  Ran deleted = Manage("delete-ns " + R() + " -n " + nsid + " --yes");
  ASSERT_EQ(deleted.code, 0) << deleted.out;
  EXPECT_EQ(deleted.out, "delete-ns: Success, deleted nsid:2\n");
  Ran gone = Manage("delete-ns " + R() + " -n " + nsid + " --yes");
  EXPECT_EQ(gone.code, 1) << gone.out;
  EXPECT_TRUE(Has(gone.out, "delete-ns: NVMe status: Invalid Namespace or Format (sct 0, sc 0x0b")) << gone.out;
}

TEST_F(ManageTest, StandaloneFormatAndReset) {
  StartEmu();
  Ran formatted = Manage("format " + R() + " -n 1 --lbaf 4 --yes");
  ASSERT_EQ(formatted.code, 0) << formatted.out;
  EXPECT_EQ(formatted.out, "Success formatting namespace:1\n");
  Ran list = Manage("list " + R() + " --json");
  EXPECT_TRUE(Has(list.out, "\"MaximumLBA\": 16384, \"PhysicalSize\": 67108864, \"SectorSize\": 4096")) << list.out;
  Ran bad_format = Manage("format " + R() + " -n 1 --lbaf 9 --yes");
  EXPECT_EQ(bad_format.code, 1) << bad_format.out;
  EXPECT_TRUE(Has(bad_format.out, "format: NVMe status: Invalid Format")) << bad_format.out;

  Ran reset = Manage("reset " + R() + " --yes");
  ASSERT_EQ(reset.code, 0) << reset.out;
  EXPECT_EQ(reset.out, "reset: Success, controller " + Trid() + "\n");
  EXPECT_EQ(Manage("list " + R()).code, 0);
}

TEST_F(ManageTest, DestructiveSubcommandsNeedYesWhenStdinIsNotATerminal) {
  StartEmu();
  for (const std::string& cmd :
       {"delete-ns " + R() + " -n 1", "format " + R() + " -n 1 --lbaf 0", "create-ns " + R() + " --nsze 8",
        "attach-ns " + R() + " -n 1", "detach-ns " + R() + " -n 1", "set-feature " + R() + " -f 6 -v 0", "reset " + R(),
        "cleanup " + I()}) {
    Ran r = Manage(cmd);
    if (cmd.rfind("cleanup", 0) == 0) {
      // Nothing to remove: nothing to confirm.
      EXPECT_EQ(r.code, 0) << r.out;
      continue;
    }
    EXPECT_EQ(r.code, 2) << cmd << ": " << r.out;
    EXPECT_TRUE(Has(r.out, "stdin is not a terminal to ask on: pass --yes to ")) << cmd << ": " << r.out;
  }
  Ran list = Manage("list " + R() + " --json");
  EXPECT_TRUE(Has(list.out, "\"NameSpace\": 1, \"UsedBytes\": 67108864")) << "nothing was done: " << list.out;
}

TEST_F(ManageTest, DestructiveSubcommandsAskOnATerminal) {
  StartEmu();
  Ran no = ManageOnTerminal({"delete-ns", "-r", Trid(), "-n", "1"}, "n");
  EXPECT_EQ(no.code, 1) << no.out;
  EXPECT_TRUE(Has(no.out, "delete namespace 1 on " + Trid() + ". Are you sure? [y/N] ")) << no.out;
  EXPECT_TRUE(Has(no.out, "delete-ns: not confirmed; nothing done")) << no.out;
  Ran list = Manage("list " + R() + " --json");
  EXPECT_TRUE(Has(list.out, "\"NameSpace\": 1, ")) << "namespace 1 must remain: " << list.out;

  Ran yes = ManageOnTerminal({"create-ns", "-r", Trid(), "--nsze", "64"}, "y");
  EXPECT_EQ(yes.code, 0) << yes.out;
  EXPECT_TRUE(Has(yes.out, "create-ns: Success, created nsid:2")) << yes.out;
}

TEST_F(ManageTest, BadValuesNameTheOptionAndTheValue) {
  StartEmu();
  struct Case {
    std::string args;
    int code;
    std::string message;
  };
  const Case cases[] = {
      {"get-feature " + R() + " -f 256", 1, "-f '256': out of range (allowed 0..255)"},
      {"get-feature " + R() + " -f abc", 1, "-f 'abc': not a number (decimal or 0x hex)"},
      {"get-feature " + R() + " -f 1 --sel 4", 1, "--sel '4': out of range (allowed 0..3)"},
      {"get-feature " + R() + " -f 1 --cdw11 -1", 1, "--cdw11 '-1': not a number"},
      {"delete-ns " + R() + " -n 0 --yes", 1, "-n '0': not a namespace id (allowed 1..0xfffffffe"},
      {"attach-ns " + R() + " -n 0xffffffff --yes", 1, "-n '0xffffffff': not a namespace id (allowed 1..0xfffffffe)"},
      {"attach-ns " + R() + " -n 1 -c 1,x --yes", 1, "-c '1,x': item 'x' is not a number"},
      {"create-ns " + R() + " --nsze 12abc --yes", 1, "--nsze '12abc': not a number"},
      {"create-ns " + R() + " --nsze 0 --yes", 1, "--nsze '0': out of range"},
      {"format " + R() + " -n 1 --lbaf 16 --yes", 1, "--lbaf '16': out of range (allowed 0..15)"},
      {"format " + R() + " -n 1 --lbaf 0 --ms 2 --yes", 1, "--ms '2': out of range (allowed 0..1)"},
      {"get-log " + R() + " --log-id 2 --log-len 0", 1, "--log-len '0': out of range"},
      {"get-log " + R() + " --log-id 2 --log-len 4 --lpo 2", 1,
       "--lpo '2': the log page offset must be a multiple of 4"},
      {"error-log " + R() + " -e 0", 1, "-e '0': out of range (allowed 1..256)"},
      {"list -r 'trtype:bogus traddr:/x'", 1, "-r 'trtype:bogus traddr:/x': "},
      {"list -r 'trtype:vfiouser traddr:" + dir_ + "/nothing-here'", 1, dir_ + "/nothing-here"},
      {"list -i 1234567", 1, "-i '1234567': out of range (allowed 0..999999)"},
      {"status -i x", 1, "-i 'x': not a number"},
      {"list", 2, "which controller? give -r TRID"},
      {"list " + R() + " --frobnicate", 2, "--frobnicate"},
      {"set-feature " + R() + " -f 6 --yes", 2, "--value is required"},
      {"", 2, "A subcommand is required"},
      {"reset " + I() + " --yes", 1, "a group's controllers belong to its primary"},
  };
  for (const Case& c : cases) {
    Ran r = Manage(c.args);
    EXPECT_EQ(r.code, c.code) << c.args << ": " << r.out;
    EXPECT_TRUE(Has(r.out, c.message)) << c.args << ": expected '" << c.message << "' in: " << r.out;
    if (c.code == 1) {
      EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << c.args << ": one line expected: " << r.out;
    }
  }
}

TEST_F(ManageTest, GroupModeStatusShowsThePublishedControllerAndSecondariesWork) {
  StartEmu();
  StartDaemon();
  Ran status = Manage("status " + I() + " --json");
  ASSERT_EQ(status.code, 0) << status.out;
  EXPECT_TRUE(Has(status.out, "\"state\": \"live\", \"primary_pid\": " + std::to_string(daemon_->pid()))) << status.out;
  EXPECT_TRUE(Has(status.out, "\"name\": \"nvmuxd\", \"cores\": \"any\", \"qpairs\": 0, \"admin_outstanding\": 0"))
      << status.out;
  EXPECT_TRUE(Has(status.out, "\"controllers\": [{\"index\": 0, \"trid\": \"" + Trid() + "\"")) << status.out;
  EXPECT_TRUE(Has(status.out, "\"serial\": \"NVMUXEMU0001\"")) << status.out;
  EXPECT_TRUE(Has(status.out, "\"namespaces\": [{\"nsid\": 1, \"size_blocks\": 131072")) << status.out;
  EXPECT_TRUE(Has(status.out, "\"block_size\": 512")) << status.out;
  EXPECT_TRUE(Has(status.out, "\"aers_outstanding\": ")) << status.out;
  EXPECT_TRUE(Has(status.out, "\"mailboxes\": [{\"slot\": 0, \"pid\": " + std::to_string(daemon_->pid())))
      << status.out;
  EXPECT_TRUE(Has(status.out, "\"consistent\": true")) << status.out;

  // A secondary that stays: listed with its slot, no queues.
  auto child =
      Subprocess::Spawn({NVMUX_SHM_CHILD, "--role", "secondary", "-i", std::to_string(group_), "--name", "stayer"});
  ASSERT_TRUE(child);
  others_.push_back(std::make_unique<Subprocess>(std::move(*child)));
  ASSERT_EQ(others_.back()->ReadLine(10s)->rfind("ready", 0), 0u);
  Ran text = Manage("status " + I());
  ASSERT_EQ(text.code, 0) << text.out;
  EXPECT_TRUE(Has(text.out, "controller 0: " + Trid())) << text.out;
  EXPECT_TRUE(Has(text.out, "serial NVMUXEMU0001")) << text.out;
  EXPECT_TRUE(Has(text.out, "stayer")) << text.out;

  Ran smart = Manage("smart-log " + I());
  ASSERT_EQ(smart.code, 0) << smart.out;
  EXPECT_TRUE(Has(smart.out, "Smart Log for NVME device:" + Trid())) << smart.out;
  EXPECT_TRUE(Has(smart.out, "\ncritical_warning ")) << smart.out;
  Ran by_trid = Manage("get-feature " + I() + " " + R() + " -f 7");
  ASSERT_EQ(by_trid.code, 0) << by_trid.out;
  EXPECT_TRUE(Has(by_trid.out, "get-feature:0x07 (Number of Queues), Current value:0x")) << by_trid.out;
  Ran list = Manage("list " + I());
  ASSERT_EQ(list.code, 0) << list.out;
  EXPECT_TRUE(Has(list.out, Trid() + " NVMUXEMU0001")) << list.out;
  // Standalone on the controller nvmuxd holds: refused at once, naming -i;
  // nvmuxd keeps serving it.
  Ran held = Manage("list " + R());
  EXPECT_EQ(held.code, 1) << held.out;
  EXPECT_TRUE(Has(held.out, "if nvmuxd holds it, use -i GROUP")) << held.out;
  EXPECT_EQ(Manage("smart-log " + I()).code, 0);
  Ran wrong = Manage("list " + I() + " -r 'trtype:vfiouser traddr:/tmp/nvmux-mng-not-there'");
  EXPECT_EQ(wrong.code, 1) << wrong.out;
  EXPECT_TRUE(Has(wrong.out, "is not attached in group " + std::to_string(group_))) << wrong.out;

  // The secondaries' admin commands went through the shared queue.
  Ran after = Manage("status " + I() + " --json");
  EXPECT_FALSE(Has(after.out, "\"admin_submitted\": 0,")) << after.out;

  ASSERT_TRUE(others_.back()->WriteLine("quit"));
  EXPECT_TRUE(others_.back()->Wait());
  StopDaemon();
  EXPECT_TRUE(Has(Manage("status " + I()).out, "absent"));
}

TEST_F(ManageTest, DeadGroupsAreReportedAndCleanedOnlyWithYes) {
  StartEmu();
  StartDaemon();
  auto child =
      Subprocess::Spawn({NVMUX_SHM_CHILD, "--role", "secondary", "-i", std::to_string(group_), "--name", "survivor"});
  ASSERT_TRUE(child);
  others_.push_back(std::make_unique<Subprocess>(std::move(*child)));
  ASSERT_EQ(others_.back()->ReadLine(10s)->rfind("ready", 0), 0u);
  daemon_->Kill(SIGKILL);
  ASSERT_TRUE(daemon_->Wait());
  daemon_.reset();

  // Primary dead, a secondary alive: orphaned, said at once.
  auto start = std::chrono::steady_clock::now();
  Ran orphaned = Manage("status " + I() + " --json");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(orphaned.code, 1) << orphaned.out;
  EXPECT_TRUE(Has(orphaned.out, "\"state\": \"orphaned\", \"attached_pid\": " + std::to_string(others_.back()->pid())))
      << orphaned.out;

  ASSERT_TRUE(others_.back()->WriteLine("quit"));
  EXPECT_TRUE(others_.back()->Wait());
  Ran stale = Manage("status " + I());
  EXPECT_TRUE(Has(stale.out, "stale")) << stale.out;
  Ran refused = Manage("cleanup " + I());
  EXPECT_EQ(refused.code, 2) << refused.out;
  EXPECT_TRUE(Has(refused.out, "pass --yes to remove group " + std::to_string(group_))) << refused.out;
  EXPECT_FALSE(shm::ListGroupFiles(*shm::GroupPaths::For(group_)).empty());
  Ran cleaned = Manage("cleanup " + I() + " --yes");
  EXPECT_EQ(cleaned.code, 0) << cleaned.out;
  EXPECT_TRUE(Has(cleaned.out, "removed")) << cleaned.out;
  EXPECT_TRUE(shm::ListGroupFiles(*shm::GroupPaths::For(group_)).empty());
}

}  // namespace
}  // namespace nvmux
