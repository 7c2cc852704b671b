#include "test/interop/spdk_peer.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "test/util/subprocess.h"

namespace nvmux::test {
namespace {

bool Alive(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

// "<prefix><pid><rest>" -> pid, or 0.
pid_t PidAfter(const std::string& name, const std::string& prefix) {
  if (name.rfind(prefix, 0) != 0) return 0;
  return static_cast<pid_t>(std::strtol(name.c_str() + prefix.size(), nullptr, 10));
}

}  // namespace

bool RunResult::ok() const { return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }

std::string RunResult::Describe() const {
  return (status == -1 ? std::string("could not run") : DescribeStatus(status)) + "; output:\n" + output;
}

RunResult RunCaptured(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                      std::chrono::seconds timeout, const std::optional<std::string>& input) {
  RunResult r;
  int out[2], in[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return r;
  if (::pipe2(in, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return r;
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);  // its own process group, so a timeout kills what it started too
    for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
    ::dup2(in[0], STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(out[1], STDERR_FILENO);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(in[0]);
  if (pid < 0) {
    ::close(out[0]);
    ::close(in[1]);
    return r;
  }
  if (input) {
    // Small inputs (a few commands): the pipe buffer holds them.
    ssize_t n = ::write(in[1], input->data(), input->size());
    (void)n;
  }
  ::close(in[1]);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::kill(-pid, SIGKILL);
      r.output += "\n[killed after " + std::to_string(timeout.count()) + " s]\n";
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    ssize_t got = ::read(out[0], buf, sizeof(buf));
    if (got <= 0) break;
    r.output.append(buf, static_cast<size_t>(got));
  }
  ::close(out[0]);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  r.status = st;
  return r;
}

std::optional<SpdkPeer> SpdkPeer::Find(std::string& why) {
  const char* dir = std::getenv("NVMUX_SPDK_DIR");
  if (dir == nullptr || *dir == '\0') {
    why = "NVMUX_SPDK_DIR is not set: no SPDK build to test against (CI sets it to ../shared/peers/spdk)";
    return std::nullopt;
  }
  std::string d = std::filesystem::absolute(dir).lexically_normal().string();
  if (::access((d + "/bin/spdk_nvme_perf").c_str(), X_OK) != 0) {
    why = "NVMUX_SPDK_DIR=" + d + " holds no bin/spdk_nvme_perf";
    return std::nullopt;
  }
  return SpdkPeer(d);
}

std::vector<std::string> SpdkPeer::Env() const {
  std::string ld = dir_ + "/lib";
  if (const char* old = std::getenv("LD_LIBRARY_PATH"); old != nullptr && *old != '\0') ld += std::string(":") + old;
  return {"LD_LIBRARY_PATH=" + ld};
}

RunResult SpdkPeer::Run(const std::string& program, std::vector<std::string> args, std::chrono::seconds timeout,
                        const std::optional<std::string>& input) const {
  args.insert(args.begin(), Bin(program));
  RunResult r = RunCaptured(args, Env(), timeout, input);
  CleanLeftovers();
  return r;
}

// target.sh keeps its pid file and log here: one directory per test process,
// removed when the target stops (its default /tmp/spdk-peer-target would stay).
static std::string TargetRunDir() { return "/tmp/nvmux-spdk-target." + std::to_string(::getpid()); }

std::optional<std::string> SpdkPeer::StartTarget(const std::string& kind, const std::string& address,
                                                 std::string& error) const {
  RunResult r = RunCaptured({"/bin/bash", dir_ + "/target.sh", "start", kind, address},
                            {"SPDK_PEER_RUN=" + TargetRunDir()}, std::chrono::seconds(60));
  if (!r.ok()) {
    error = "target.sh start " + kind + " " + address + ": " + r.Describe();
    return std::nullopt;
  }
  // The trid is the last line it prints.
  std::string out = r.output;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  size_t nl = out.rfind('\n');
  return nl == std::string::npos ? out : out.substr(nl + 1);
}

void SpdkPeer::StopTarget() const {
  (void)RunCaptured({"/bin/bash", dir_ + "/target.sh", "stop"}, {"SPDK_PEER_RUN=" + TargetRunDir()},
                    std::chrono::seconds(30));
  std::error_code ec;
  std::filesystem::remove_all(TargetRunDir(), ec);
  CleanLeftovers();
}

void SpdkPeer::CleanLeftovers() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/hugepages", ec)) {
    pid_t pid = PidAfter(e.path().filename().string(), "spdk_pid");
    if (pid > 0 && !Alive(pid)) std::filesystem::remove(e.path(), ec);
  }
  for (const auto& e : std::filesystem::directory_iterator("/var/run/dpdk", ec)) {
    pid_t pid = PidAfter(e.path().filename().string(), "spdk_pid");
    if (pid > 0 && !Alive(pid)) std::filesystem::remove_all(e.path(), ec);
  }
}

std::string SpdkVfioUserTrid(const std::string& dir, const std::string& subnqn) {
  return "trtype:VFIOUSER traddr:" + dir + " subnqn:" + subnqn;
}

}  // namespace nvmux::test
