// nvmux-identify as users run it: a real nvmux-emu process with two
// namespaces (512- and 4096-byte blocks) in a fresh /tmp/nvmux-identify-*
// directory, and the tool run against it as a separate process, its stdout
// and stderr captured apart. Checks the text, JSON and hex output, -n, and
// that every bad command line fails with one clear line and the right exit
// status.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test/util/json_checker.h"
#include "test/util/subprocess.h"

extern char** environ;

namespace nvmux {
namespace {

constexpr const char* kSerial = "NVMUXIDT42";

struct ToolRun {
  int exit_code = -1;  // -1: did not exit normally
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

using test::JsonChecker;

class NvmuxIdentifyTest : public ::testing::Test {
 protected:
  // One emulator for the suite: every run attaches, reads and shuts the
  // controller down again, which the emulator allows any number of times.
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/nvmux-identify-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto emu = test::Subprocess::Spawn({NVMUX_EMU, "--socket", dir_, "--serial", kSerial, "--ns",
                                        "size=64M,lbads=512", "--ns", "size=32M,lbads=4096"});
    ASSERT_TRUE(emu) << emu.error().ToString();
    emu_ = new test::Subprocess(std::move(*emu));
    for (int i = 0; i < 500 && !std::filesystem::exists(dir_ + "/cntrl"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(std::filesystem::exists(dir_ + "/cntrl")) << "nvmux-emu did not create its socket in " << dir_;
  }
  static void TearDownTestSuite() {
    if (emu_ != nullptr) {
      emu_->Kill(SIGTERM);
      auto st = emu_->Wait();
      EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0)
          << "nvmux-emu: " << (st ? test::DescribeStatus(*st) : st.error().message);
      delete emu_;  // kills it if it is still running
      emu_ = nullptr;
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  static std::string Trid() { return "trtype:vfiouser traddr:" + dir_; }

  // Runs nvmux-identify with `args`, stdout and stderr into files of the
  // test directory; kills it after 30 s.
  static ToolRun Identify(const std::vector<std::string>& args) {
    const std::string out_path = dir_ + "/stdout", err_path = dir_ + "/stderr";
    std::vector<std::string> argv_s = {NVMUX_IDENTIFY};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ToolRun run;
    if (rc != 0) {
      run.err = std::string("posix_spawn: ") + std::strerror(rc);
      return run;
    }
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (WIFEXITED(status)) run.exit_code = WEXITSTATUS(status);
    run.out = ReadFile(out_path);
    run.err = ReadFile(err_path);
    std::filesystem::remove(out_path);
    std::filesystem::remove(err_path);
    return run;
  }

  static size_t Count(const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  }
  // The data size of the LBA format in use by namespace `nsid` in the text
  // output ("Current LBA Format: LBA Format #04", then its "LBA Format #04:
  // Data Size: 4096 ..." line); empty when not found.
  static std::string CurrentDataSize(const std::string& text, uint32_t nsid) {
    const size_t start = text.find("Namespace ID:" + std::to_string(nsid) + "\n");
    if (start == std::string::npos) return "";
    const std::string section = text.substr(start, text.find("\nNamespace ID:", start + 1) - start);
    const std::string current = "Current LBA Format:";
    size_t at = section.find(current);
    if (at == std::string::npos) return "";
    at = section.find("LBA Format #", at + current.size());
    const std::string format = section.substr(at, section.find('\n', at) - at);  // "LBA Format #04"
    const std::string line = format + ": Data Size: ";
    at = section.find(line);
    if (at == std::string::npos) return "";
    at += line.size();
    return section.substr(at, section.find(' ', at) - at);
  }
  // One line on stderr and nothing on stdout: how every failure looks.
  static void ExpectOneLineError(const ToolRun& r) {
    EXPECT_TRUE(r.out.empty()) << r.out;
    EXPECT_EQ(Count(r.err, "\n"), 1u) << r.err;
    EXPECT_EQ(r.err.rfind("nvmux-identify: ", 0), 0u) << r.err;
  }

  static inline std::string dir_;
  static inline test::Subprocess* emu_ = nullptr;
};

TEST_F(NvmuxIdentifyTest, TextShowsControllerHealthAndBothNamespaces) {
  const ToolRun r = Identify({"-r", Trid()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  EXPECT_NE(r.out.find("Serial Number:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(kSerial), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(dir_), std::string::npos) << "the transport id is shown";
  EXPECT_NE(r.out.find("Namespace ID:1\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Namespace ID:2\n"), std::string::npos) << r.out;
  // Both namespaces list every format the emulator offers; the one in use
  // is what --ns asked for.
  EXPECT_EQ(CurrentDataSize(r.out, 1), "512");
  EXPECT_EQ(CurrentDataSize(r.out, 2), "4096");
  EXPECT_NE(r.out.find("Health Information"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("Raw Data"), std::string::npos) << "no hex dump without -x";
}

TEST_F(NvmuxIdentifyTest, JsonIsOneValidObjectWithBothNamespaces) {
  const ToolRun r = Identify({"--json", "-r", Trid()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_FALSE(r.out.empty());
  EXPECT_EQ(r.out.front(), '{');
  EXPECT_EQ(r.out.back(), '\n');
  EXPECT_TRUE(JsonChecker(r.out).Valid()) << r.out;
  EXPECT_NE(r.out.find("\"sn\": \"" + std::string(kSerial) + "\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"nsid\": 1,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"nsid\": 2,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"lba_data_size\": 512"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"lba_data_size\": 4096"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"smart_health\": {"), std::string::npos) << "the health log was read";
}

TEST_F(NvmuxIdentifyTest, HexDumpFollowsTheText) {
  const ToolRun r = Identify({"-r", Trid(), "-x"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const size_t text = r.out.find("Serial Number:");
  const size_t raw = r.out.find("Raw Data");
  ASSERT_NE(text, std::string::npos);
  ASSERT_NE(raw, std::string::npos) << r.out;
  EXPECT_LT(text, raw);
  // Identify Controller starts with VID/SSVID then the serial number, so a
  // dump line at 0000 exists and the serial shows in the ASCII column of 0000 or 0010.
  EXPECT_NE(r.out.find("\n0000: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\n0010: "), std::string::npos) << r.out;
  EXPECT_GE(Count(r.out, "\n0ff0: "), 3u) << "Identify Controller and two Identify Namespace pages";
}

TEST_F(NvmuxIdentifyTest, NamespaceOptionShowsOnlyThatNamespace) {
  const ToolRun r = Identify({"-r", Trid(), "-n", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Namespace ID:2\n"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("Namespace ID:1\n"), std::string::npos) << r.out;
  // The ns key of the transport id means the same.
  const ToolRun j = Identify({"--json", "-r", Trid() + " ns:1"});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  EXPECT_NE(j.out.find("\"nsid\": 1,"), std::string::npos) << j.out;
  EXPECT_EQ(j.out.find("\"nsid\": 2,"), std::string::npos) << j.out;
}

TEST_F(NvmuxIdentifyTest, InactiveNamespaceFailsListingTheActiveOnes) {
  const ToolRun r = Identify({"-r", Trid(), "-n", "9"});
  EXPECT_EQ(r.exit_code, 1);
  ExpectOneLineError(r);
  EXPECT_NE(r.err.find("-n/--namespace 9"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("active namespaces: 1, 2"), std::string::npos) << r.err;
}

TEST_F(NvmuxIdentifyTest, BadTransportIdNamesTheKeyAndTheAllowedValues) {
  const ToolRun r = Identify({"-r", "trtype:bogus traddr:x"});
  EXPECT_EQ(r.exit_code, 2);
  ExpectOneLineError(r);
  EXPECT_NE(r.err.find("trtype 'bogus'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("vfiouser, pcie, tcp"), std::string::npos) << r.err;
}

TEST_F(NvmuxIdentifyTest, NothingAtTraddrNamesThePathAndSuggestsTheEmulator) {
  const std::string absent = dir_ + "/absent";
  const ToolRun r = Identify({"-r", "trtype:vfiouser traddr:" + absent});
  EXPECT_EQ(r.exit_code, 1);
  ExpectOneLineError(r);
  EXPECT_NE(r.err.find(absent + " is not a directory"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nvmux-emu --socket " + absent), std::string::npos) << r.err;
  // A directory without a server in it.
  const ToolRun empty = Identify({"-r", "trtype:vfiouser traddr:/tmp"});
  EXPECT_EQ(empty.exit_code, 1);
  ExpectOneLineError(empty);
  EXPECT_NE(empty.err.find("/tmp/cntrl"), std::string::npos) << empty.err;
}

TEST_F(NvmuxIdentifyTest, EmulatorKilledLeavesAStaleSocketThatFailsCleanly) {
  const std::string dead = dir_ + "/dead";
  auto emu = test::Subprocess::Spawn({NVMUX_EMU, "--socket", dead});
  ASSERT_TRUE(emu) << emu.error().ToString();
  for (int i = 0; i < 500 && !std::filesystem::exists(dead + "/cntrl"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(std::filesystem::exists(dead + "/cntrl"));
  emu->Kill(SIGKILL);
  ASSERT_TRUE(emu->Wait());
  ASSERT_TRUE(std::filesystem::exists(dead + "/cntrl")) << "kill -9 leaves the socket file behind";
  const ToolRun r = Identify({"-r", "trtype:vfiouser traddr:" + dead});
  EXPECT_EQ(r.exit_code, 1);
  ExpectOneLineError(r);
  EXPECT_NE(r.err.find(dead + "/cntrl"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nvmux-emu"), std::string::npos) << r.err;
  std::filesystem::remove_all(dead);
}

TEST_F(NvmuxIdentifyTest, BadCommandLinesAreUsageErrors) {
  const ToolRun missing = Identify({});
  EXPECT_EQ(missing.exit_code, 2);
  ExpectOneLineError(missing);
  EXPECT_NE(missing.err.find("which controller? give -r TRID, or -i GROUP"), std::string::npos) << missing.err;

  const struct {
    std::vector<std::string> args;
    std::string expected;
  } cases[] = {
      {{"-r", Trid(), "-n", "abc"}, "-n/--namespace 'abc': allowed a namespace id 1..4294967294"},
      {{"-r", Trid(), "-n", "0"}, "-n/--namespace '0'"},
      {{"-r", Trid(), "-i", "-1"}, "-i/--shm-id '-1': allowed a group id 0..999999"},
      {{"-r", Trid(), "-L", "loud"}, "-L/--log-level 'loud': allowed error, warning"},
      {{"-r", Trid() + " ns:1", "-n", "2"}, "contradicts ns:1"},
      {{"-r", Trid(), "--json", "-x"}, "excludes"},
      {{"-r", Trid(), "--bogus"}, "--bogus"},
  };
  for (const auto& c : cases) {
    const ToolRun r = Identify(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.expected;
    ExpectOneLineError(r);
    EXPECT_NE(r.err.find(c.expected), std::string::npos) << r.err;
  }
}

TEST_F(NvmuxIdentifyTest, HelpGoesToStdoutWithExamples) {
  const ToolRun r = Identify({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(r.err.empty()) << r.err;
  EXPECT_NE(r.out.find("-r,--transport-id"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Examples:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("nvmux-identify -r 'trtype:vfiouser traddr:"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace nvmux
