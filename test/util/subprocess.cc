#include "test/util/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace nvmux::test {
namespace {

std::string ReadSmall(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// The state letter of a /proc/.../stat file ('?' when unreadable).
char StateIn(const std::string& stat_path) {
  const std::string stat = ReadSmall(stat_path);
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() ? stat[paren + 2] : '?';
}

// Where a child that did not exit is: each thread's name, state, wait
// channel, system call and kernel stack (/proc; the stack needs root), then
// the user stacks if gdb is installed. Printed to stderr, so a hang that
// only a loaded CI machine shows leaves its trace in the test log.
void ReportStuck(pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  std::fprintf(stderr, "subprocess %d did not exit in time; its threads:\n", static_cast<int>(pid));
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator(proc + "/task", ec)) {
    const std::string t = task.path().string();
    const char state = StateIn(t + "/stat");
    std::string comm = ReadSmall(t + "/comm"), syscall = ReadSmall(t + "/syscall");
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    if (!syscall.empty() && syscall.back() == '\n') syscall.pop_back();
    std::fprintf(stderr, "  thread %s (%s) state %c wchan %s syscall %s\n%s", task.path().filename().c_str(),
                 comm.c_str(), state, ReadSmall(t + "/wchan").c_str(), syscall.c_str(), ReadSmall(t + "/stack").c_str());
  }
  if (::access("/usr/bin/gdb", X_OK) == 0) {
    const std::string cmd = "timeout 30 /usr/bin/gdb -p " + std::to_string(pid) +
                            " -batch -nx -ex 'thread apply all bt' 2>&1 | grep -E '^(Thread|#)' >&2";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "  (gdb gave no stacks)\n");
  }
}

// Whether the child's main thread has exited: its own code is done and
// the kernel is tearing the process down (other threads, the address
// space).
bool Exiting(pid_t pid) { return StateIn("/proc/" + std::to_string(pid) + "/stat") == 'Z'; }

}  // namespace

Result<Subprocess> Subprocess::Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return ErrnoError("pipe2");
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]);
    ::close(in[1]);
    return ErrnoError("pipe2");
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork");
  if (pid == 0) {
    ::dup2(in[0], STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  return Subprocess(pid, UniqueFd(in[1]), UniqueFd(out[0]));
}

Subprocess::Subprocess(Subprocess&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), stdin_(std::move(o.stdin_)), stdout_(std::move(o.stdout_)),
      buffer_(std::move(o.buffer_)) {}

Subprocess::~Subprocess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status;
    ::waitpid(pid_, &status, 0);
  }
}

Result<std::string> Subprocess::ReadLine(Nanos timeout) {
  int64_t deadline = MonotonicNanos() + timeout.count();
  for (;;) {
    size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    int64_t left_ms = (deadline - MonotonicNanos()) / 1'000'000;
    if (left_ms <= 0) return Fail(ETIMEDOUT, "no line from child " + std::to_string(pid_) + " in time");
    pollfd p{stdout_.get(), POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left_ms));
    if (n < 0 && errno != EINTR) return ErrnoError("poll");
    if (n <= 0) continue;
    char buf[4096];
    ssize_t r = ::read(stdout_.get(), buf, sizeof(buf));
    if (r == 0) return Fail(EPIPE, "child " + std::to_string(pid_) + " closed its stdout");
    if (r < 0 && errno != EINTR) return ErrnoError("read");
    if (r > 0) buffer_.append(buf, static_cast<size_t>(r));
  }
}

Result<std::string> Subprocess::ReadUntil(std::string_view prefix, Nanos timeout) {
  int64_t deadline = MonotonicNanos() + timeout.count();
  for (;;) {
    auto line = ReadLine(Nanos(std::max<int64_t>(deadline - MonotonicNanos(), 0)));
    if (!line) return line;
    if (line->rfind(prefix, 0) == 0) return line;
  }
}

Status Subprocess::WriteLine(std::string_view line) {
  std::string l(line);
  l.push_back('\n');
  if (::write(stdin_.get(), l.data(), l.size()) != static_cast<ssize_t>(l.size())) return ErrnoError("write to child");
  return Ok();
}

void Subprocess::Kill(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

Result<int> Subprocess::Wait(Nanos timeout) {
  if (pid_ <= 0) return Fail(ECHILD, "child already reaped");
  int64_t deadline = MonotonicNanos() + timeout.count();
  constexpr int kExitGraceSeconds = 180;
  bool extended = false;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return status;
    }
    if (MonotonicNanos() >= deadline && !extended && Exiting(pid_)) {
      // Past its own code, in the kernel's exit. Under ASan on a loaded
      // machine, unmapping the group's hugepage file there has taken tens
      // of seconds (waiting for the file's i_mmap lock): not a hang of
      // ours, so it gets more time; the report below still names a real one.
      std::fprintf(stderr, "subprocess %d: still exiting in the kernel after the timeout; waiting up to %d s more\n",
                   static_cast<int>(pid_), kExitGraceSeconds);
      deadline = MonotonicNanos() + int64_t{kExitGraceSeconds} * 1'000'000'000;
      extended = true;
    }
    if (MonotonicNanos() >= deadline) {
      ReportStuck(pid_);
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
      return Fail(ETIMEDOUT, "child did not exit in time; killed it");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

std::optional<int> Subprocess::TryWait() {
  if (pid_ <= 0) return std::nullopt;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) != pid_) return std::nullopt;
  pid_ = -1;
  return status;
}

std::string DescribeStatus(int s) {
  if (WIFEXITED(s)) return "exited " + std::to_string(WEXITSTATUS(s));
  if (WIFSIGNALED(s)) return "killed by signal " + std::to_string(WTERMSIG(s));
  return "status " + std::to_string(s);
}

}  // namespace nvmux::test
