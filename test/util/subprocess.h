// Subprocess: a child started with fork/exec for multi-process tests, with
// line-oriented pipes to its stdin and stdout (stderr is inherited, so the
// child's messages land in the test log). The destructor kills (SIGKILL) and
// reaps a child that is still running, so a failing test leaves no process.
//
// Thread safety: one thread per Subprocess.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shm/base/clock.h"
#include "shm/base/result.h"
#include "shm/base/unique_fd.h"

namespace nvmux::test {

class Subprocess {
 public:
  // argv[0] is the program path. Errors: from pipe2/fork; an exec failure
  // shows as exit status 127.
  // `env` entries ("NAME=value") are added to the child's environment.
  static Result<Subprocess> Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env = {});

  Subprocess(Subprocess&&) noexcept;
  Subprocess& operator=(Subprocess&&) = delete;
  ~Subprocess();

  pid_t pid() const { return pid_; }
  // Next line of stdout without the newline. Errors: ETIMEDOUT, EPIPE (closed).
  Result<std::string> ReadLine(Nanos timeout = std::chrono::seconds(10));
  // Reads lines until one starts with `prefix`; returns it.
  Result<std::string> ReadUntil(std::string_view prefix, Nanos timeout = std::chrono::seconds(10));
  Status WriteLine(std::string_view line);
  void CloseStdin() { stdin_.Reset(); }
  void Kill(int sig);
  // Waits for exit; returns the wait status. Errors: ETIMEDOUT (child then killed).
  Result<int> Wait(Nanos timeout = std::chrono::seconds(10));
  // The wait status if the child has exited (reaping it), else nullopt;
  // never blocks.
  std::optional<int> TryWait();
  bool running() const { return pid_ > 0; }

 private:
  Subprocess(pid_t pid, UniqueFd in, UniqueFd out) : pid_(pid), stdin_(std::move(in)), stdout_(std::move(out)) {}

  pid_t pid_ = -1;
  UniqueFd stdin_;
  UniqueFd stdout_;
  std::string buffer_;
};

// "exited 0", "killed by signal 9", ...
std::string DescribeStatus(int wait_status);

}  // namespace nvmux::test
