// nvmux-perf as users run it: a real nvmux-emu process in a fresh
// /tmp/nvmux-perf-* directory (null backing for speed, RAM backing where data
// must survive), and nvmux-perf run against it as a separate process with
// its stdout and stderr captured apart. Checks SPDK's table, the JSON of the
// same run, -d, --verify passing on rw and failing on a block corrupted
// through the emulator's control socket, and that bad values fail with one
// line naming them. Every run is about a second.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "shm/base/unique_fd.h"
#include "test/util/json_checker.h"
#include "test/util/subprocess.h"

extern char** environ;

namespace nvmux {
namespace {

struct ToolRun {
  int exit_code = -1;  // -1: did not exit normally
  std::string out;
  std::string err;
  double seconds = 0;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

using test::JsonChecker;

// The number after `"key":` at or after `from` in a JSON text; -1 if absent.
double JsonNumber(const std::string& json, const std::string& key, size_t from = 0) {
  size_t at = json.find("\"" + key + "\"", from);
  if (at == std::string::npos) return -1;
  at = json.find(':', at);
  if (at == std::string::npos) return -1;
  return std::strtod(json.c_str() + at + 1, nullptr);
}

// The value of the --transport-stats counter `name` ("\tNAME:   N"); -1 if absent.
int64_t StatsCounter(const std::string& out, const std::string& name) {
  const size_t at = out.find("\t" + name + ":");
  if (at == std::string::npos) return -1;
  return std::strtoll(out.c_str() + at + name.size() + 2, nullptr, 10);
}

// The table's columns after the ':' of the first line starting with `prefix`:
// IOPS, MiB/s, average, min, max. Empty when there is no such line.
std::vector<double> TableColumns(const std::string& table, const std::string& prefix) {
  for (const std::string& line : Lines(table)) {
    if (line.rfind(prefix, 0) != 0) continue;
    std::istringstream in(line.substr(line.rfind(':') + 1));
    std::vector<double> v;
    for (double x; in >> x;) v.push_back(x);
    return v;
  }
  return {};
}

class NvmuxPerfTest : public ::testing::Test {
 protected:
  void TearDown() override {
    StopEmu();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Starts nvmux-emu in a fresh directory with `args` added.
  void StartEmu(const std::vector<std::string>& args) {
    char tmpl[] = "/tmp/nvmux-perf-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::vector<std::string> argv = {NVMUX_EMU, "--socket", dir_ + "/emu"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto emu = test::Subprocess::Spawn(argv);
    ASSERT_TRUE(emu) << emu.error().ToString();
    emu_ = std::make_unique<test::Subprocess>(std::move(*emu));
    for (int i = 0; i < 500 && !std::filesystem::exists(dir_ + "/emu/control"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(std::filesystem::exists(dir_ + "/emu/cntrl")) << "nvmux-emu did not create its socket in " << dir_;
  }
  void StopEmu() {
    if (!emu_) return;
    emu_->Kill(SIGTERM);
    auto st = emu_->Wait();
    EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
        << "nvmux-emu: " << (st ? test::DescribeStatus(*st) : st.error().message);
    emu_.reset();  // kills it if it is still running
  }
  std::string Trid() const { return "trtype:vfiouser traddr:" + dir_ + "/emu"; }
  std::string CtrlrName() const { return "VFIOUSER (" + dir_ + "/emu)"; }

  // One command on the emulator's control socket; returns the reply line.
  std::string Control(const std::string& command) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) return "error socket";
    sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    std::string path = dir_ + "/emu/control";
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return "error connect";
    std::string line = command + "\n";
    if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) return "error write";
    std::string reply;
    char c = 0;
    while (::read(fd.get(), &c, 1) == 1 && c != '\n') reply += c;
    return reply;
  }

  // Runs nvmux-perf with `args`, stdout and stderr into files of the test
  // directory (or /tmp when no emulator runs); kills it after 60 s.
  ToolRun Perf(const std::vector<std::string>& args) {
    const std::string base = dir_.empty() ? "/tmp/nvmux-perf-run-" + std::to_string(::getpid()) : dir_ + "/perf";
    const std::string out_path = base + ".out", err_path = base + ".err";
    std::vector<std::string> argv_s = {NVMUX_PERF};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid = -1;
    const auto start = std::chrono::steady_clock::now();
    const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ToolRun run;
    if (rc != 0) {
      run.err = std::string("posix_spawn: ") + std::strerror(rc);
      return run;
    }
    int status = 0;
    const auto deadline = start + std::chrono::seconds(60);
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (WIFEXITED(status)) run.exit_code = WEXITSTATUS(status);
    run.out = ReadFile(out_path);
    run.err = ReadFile(err_path);
    std::filesystem::remove(out_path);
    std::filesystem::remove(err_path);
    return run;
  }

  // A failure: exactly one line on stderr, "nvmux-perf: ...", containing `what`.
  static void ExpectOneLineError(const ToolRun& r, int exit_code, const std::string& what) {
    EXPECT_EQ(r.exit_code, exit_code) << r.err;
    EXPECT_EQ(Count(r.err, "\n"), 1u) << r.err;
    EXPECT_EQ(r.err.rfind("nvmux-perf: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(what), std::string::npos) << "expected '" << what << "' in: " << r.err;
  }

  std::string dir_;
  std::unique_ptr<test::Subprocess> emu_;
};

TEST_F(NvmuxPerfTest, RandreadPrintsSpdkTable) {
  StartEmu({"--backing", "null"});
  const ToolRun r = Perf({"-r", Trid(), "-q", "8", "-o", "4096", "-w", "randread", "-t", "1", "--transport-stats"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  EXPECT_NE(r.out.find("Attaching to " + Trid() + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Attached to " + Trid() + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Associating " + CtrlrName() + " NSID 1 with lcore 0\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Latency(us)"), std::string::npos) << r.out;
  EXPECT_EQ(Count(r.out, "\nDevice Information "), 1u) << r.out;
  EXPECT_EQ(Count(r.out, "\n" + CtrlrName() + " NSID 1 from core  0:"), 1u) << r.out;
  std::vector<double> row = TableColumns(r.out, CtrlrName() + " NSID 1 from core");
  std::vector<double> total = TableColumns(r.out, "Total ");
  ASSERT_EQ(row.size(), 5u) << r.out;
  ASSERT_EQ(total.size(), 5u) << r.out;
  EXPECT_GT(total[0], 0) << r.out;     // IOPS
  EXPECT_EQ(row[0], total[0]) << r.out;  // one row: the total is the row
  EXPECT_NEAR(total[1], total[0] * 4096 / (1 << 20), 0.02) << r.out;  // MiB/s
  EXPECT_LE(total[3], total[2]) << r.out;  // min <= average
  EXPECT_LE(total[2], total[4]) << r.out;  // average <= max
  // --transport-stats: the one queue pair's counters.
  EXPECT_NE(r.out.find("lcore 0, ns " + CtrlrName() + " NSID 1 statistics:"), std::string::npos) << r.out;
  EXPECT_EQ(Count(r.out, "VFIOUSER transport, I/O queue pair "), 1u) << r.out;
  EXPECT_NE(r.out.find("\tpolls:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\tcompletions:"), std::string::npos) << r.out;
  // Shadow doorbells are in use against nvmux-emu: most updates go there.
  EXPECT_GT(StatsCounter(r.out, "shadow_doorbell_updates"), 0) << r.out;
}

// --no-shadow-doorbells: every submission writes the SQ doorbell itself and
// no update goes to a shadow page; verified I/O works the same.
TEST_F(NvmuxPerfTest, NoShadowDoorbellsWritesEveryDoorbell) {
  StartEmu({"--backing", "ram", "--ns", "size=64M,lbads=512"});
  const ToolRun r = Perf({"-r", Trid(), "-q", "4", "-o", "4096", "-w", "randrw", "-M", "50", "-t", "1", "--verify",
                          "--no-shadow-doorbells", "--transport-stats"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(StatsCounter(r.out, "shadow_doorbell_updates"), 0) << r.out;
  const int64_t submitted = StatsCounter(r.out, "submitted_requests");
  ASSERT_GT(submitted, 0) << r.out;
  // A doorbell write per submission pass (a pass may submit several).
  EXPECT_GT(StatsCounter(r.out, "sq_doorbell_writes"), 0) << r.out;
  EXPECT_LE(StatsCounter(r.out, "sq_doorbell_writes"), submitted) << r.out;
}

TEST_F(NvmuxPerfTest, JsonOnStdoutAgreesWithTheTableOfTheSameRun) {
  StartEmu({"--backing", "null"});
  const ToolRun r = Perf({"-r", Trid(), "-q", "8", "-o", "4096", "-w", "randread", "-t", "1", "--json", "-L"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  // stdout is the JSON alone; the attach lines and the table went to stderr.
  EXPECT_TRUE(JsonChecker(r.out).Valid()) << r.out;
  EXPECT_EQ(r.out.find("Attaching"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("Attached to " + Trid()), std::string::npos) << r.err;
  EXPECT_EQ(Count(r.out, "\"name\""), 1u) << r.out;
  EXPECT_NE(r.out.find("\"name\":\"" + CtrlrName() + " NSID 1\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"percentiles\""), std::string::npos) << r.out;  // -L
  size_t total_at = r.out.find("\"total\"");
  ASSERT_NE(total_at, std::string::npos) << r.out;
  double json_iops = JsonNumber(r.out, "iops", total_at);
  std::vector<double> table = TableColumns(r.err, "Total ");
  ASSERT_EQ(table.size(), 5u) << r.err;
  EXPECT_GT(json_iops, 0) << r.out;
  EXPECT_NEAR(json_iops, table[0], 0.006) << r.out << r.err;  // the table rounds to 2 decimals
  EXPECT_NEAR(JsonNumber(r.out, "avg", total_at), table[2], 0.006) << r.out << r.err;
}

TEST_F(NvmuxPerfTest, NumberOfIosStopsEachNamespaceAndCoreEarly) {
  StartEmu({"--backing", "null"});
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(::sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  bool two_cores = CPU_ISSET(0, &allowed) && CPU_ISSET(1, &allowed);
  const ToolRun r = Perf({"-r", Trid(), "-q", "8", "-o", "4096", "-w", "randread", "-t", "30", "-d", "500", "-c",
                          two_cores ? "0x3" : "0x1", "-P", "2", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_LT(r.seconds, 20) << "-d 500 should end the run long before -t 30";
  ASSERT_TRUE(JsonChecker(r.out).Valid()) << r.out;
  size_t total_at = r.out.find("\"total\"");
  ASSERT_NE(total_at, std::string::npos) << r.out;
  EXPECT_EQ(JsonNumber(r.out, "ios", total_at), two_cores ? 1000 : 500) << r.out;
  EXPECT_EQ(Count(r.out, "\"name\""), two_cores ? 2u : 1u) << r.out;
  if (two_cores) {
    EXPECT_NE(r.err.find("Associating " + CtrlrName() + " NSID 1 with lcore 1"), std::string::npos) << r.err;
  }
}

TEST_F(NvmuxPerfTest, RandrwWithVerifyPassesOnRam) {
  StartEmu({"--backing", "ram", "--ns", "size=64M,lbads=512"});
  const ToolRun r =
      Perf({"-r", Trid(), "-q", "8", "-o", "4096", "-w", "randrw", "-M", "50", "--verify", "-t", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  std::vector<double> total = TableColumns(r.out, "Total ");
  ASSERT_EQ(total.size(), 5u) << r.out;
  EXPECT_GT(total[0], 0) << r.out;
}

TEST_F(NvmuxPerfTest, VerifyReadFailsNamingACorruptedLba) {
  StartEmu({"--backing", "ram", "--ns", "size=64M,lbads=512"});
  // 256 blocks = 32 I/O slots of 8 blocks, each written once, then read once.
  const std::vector<std::string> range = {"-r", Trid(), "-q", "4", "-o", "4096", "--lba-range", "0:256",
                                          "-d", "32", "-t", "10", "--verify"};
  auto with = [&](std::vector<std::string> more) {
    std::vector<std::string> args = range;
    args.insert(args.end(), more.begin(), more.end());
    return args;
  };
  const ToolRun write = Perf(with({"-w", "write", "--json"}));
  ASSERT_EQ(write.exit_code, 0) << write.out << write.err;
  EXPECT_EQ(JsonNumber(write.out, "ios", write.out.find("\"total\"")), 32) << write.out;
  const ToolRun clean = Perf(with({"-w", "read"}));
  ASSERT_EQ(clean.exit_code, 0) << "the intact blocks must verify: " << clean.out << clean.err;

  ASSERT_EQ(Control("corrupt lba=77 ns=1"), "ok corrupted ns=1 lba=77");
  const ToolRun bad = Perf(with({"-w", "read"}));
  ExpectOneLineError(bad, 1, "LBA 77");
  EXPECT_NE(bad.err.find("verify failed"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("read of LBA 72 (8 blocks)"), std::string::npos) << bad.err;
}

TEST_F(NvmuxPerfTest, BadCommandLinesFailWithOneLineNamingTheValue) {
  const std::string trid = "trtype:vfiouser traddr:/tmp/nvmux-perf-absent";
  ExpectOneLineError(Perf({"-r", trid, "-q", "0", "-o", "4096", "-w", "read", "-t", "1"}), 2, "-q 0");
  ExpectOneLineError(Perf({"-r", trid, "-q", "1", "-o", "4096", "-w", "foo", "-t", "1"}), 2, "-w foo");
  ExpectOneLineError(Perf({"-q", "1", "-o", "4096", "-w", "read", "-t", "1"}), 2, "-r");
  ExpectOneLineError(Perf({"-r", "trtype:bogus traddr:/x", "-q", "1", "-o", "4096", "-w", "read", "-t", "1"}), 2,
                     "bogus");
  // Nothing listens at the address: a runtime failure naming it.
  const ToolRun absent = Perf({"-r", trid, "-q", "1", "-o", "4096", "-w", "read", "-t", "1"});
  ExpectOneLineError(absent, 1, "/tmp/nvmux-perf-absent");
}

TEST_F(NvmuxPerfTest, NamespaceChecksFailNamingTheValue) {
  StartEmu({"--backing", "null", "--ns", "size=1M,lbads=512"});
  const ToolRun odd = Perf({"-r", Trid(), "-q", "1", "-o", "1000", "-w", "read", "-t", "1"});
  ExpectOneLineError(odd, 1, "-o 1000");
  EXPECT_NE(odd.err.find("512"), std::string::npos) << odd.err;
  EXPECT_NE(odd.err.find(CtrlrName() + " NSID 1"), std::string::npos) << odd.err;
  const ToolRun beyond = Perf({"-r", Trid(), "-q", "1", "-o", "4096", "-w", "read", "-t", "1", "--lba-range",
                               "1000:2000"});
  ExpectOneLineError(beyond, 1, "--lba-range 1000:2000");
}

}  // namespace
}  // namespace nvmux
