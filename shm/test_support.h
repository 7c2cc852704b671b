// Helpers for shm's unit tests: shared anonymous mappings that survive fork,
// temporary lock files, and forked children that report through a pipe.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <new>
#include <string>

namespace nvmux::shm::testing {

// T in MAP_SHARED|MAP_ANONYMOUS memory: parent and forked children share it.
template <typename T>
class SharedMapping {
 public:
  SharedMapping() {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) std::abort();
    ptr_ = new (p) T();
  }
  ~SharedMapping() { ::munmap(ptr_, sizeof(T)); }
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;
  T& operator*() { return *ptr_; }
  T* operator->() { return ptr_; }

 private:
  T* ptr_;
};

// A lock file path unique to this test process, removed on destruction.
class TempLockFile {
 public:
  TempLockFile() : path_("/tmp/nvmux-test-lock-" + std::to_string(getpid()) + "-" + std::to_string(counter_++)) {}
  ~TempLockFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  std::string path_;
};

// Forks a child running `body` (its return value is the exit code). The
// child never returns into the test framework.
inline pid_t ForkChild(const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  return pid;
}

inline int WaitExit(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

// A pipe to learn when a child reached a point.
struct Pipe {
  int fds[2];
  Pipe() {
    if (::pipe2(fds, O_CLOEXEC) != 0) std::abort();
  }
  ~Pipe() {
    ::close(fds[0]);
    ::close(fds[1]);
  }
  void Signal() {
    char c = 1;
    (void)!::write(fds[1], &c, 1);
  }
  bool Wait() {
    char c;
    return ::read(fds[0], &c, 1) == 1;
  }
};

}  // namespace nvmux::shm::testing
