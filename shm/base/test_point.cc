#include "shm/base/test_point.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace nvmux {
namespace {

// The process's short name (/proc/self/comm), for the record of who died.
void ReadComm(char* out, size_t size) {
  std::snprintf(out, size, "?");
  int fd = ::open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = ::read(fd, out, size - 1);
  ::close(fd);
  if (n <= 0) return;
  out[n] = '\0';
  if (char* nl = std::strchr(out, '\n')) *nl = '\0';
}

}  // namespace

void TestPoint(const char* point) {
  static const char* die_at = std::getenv("NVMUX_DIE_AT");
  static const char* die_once = std::getenv("NVMUX_DIE_ONCE");
  if (die_at == nullptr || std::strcmp(die_at, point) != 0) return;
  if (die_once != nullptr && die_once[0] != '\0') {
    // O_EXCL makes the first arrival the only one, across processes.
    int fd = ::open(die_once, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return;  // someone already died here (or the file cannot be made: do not die unrecorded)
    char comm[32];
    ReadComm(comm, sizeof comm);
    char line[160];
    int n = std::snprintf(line, sizeof line, "%d %s %s\n", static_cast<int>(::getpid()), comm, point);
    if (n > 0) (void)!::write(fd, line, static_cast<size_t>(n));
    ::close(fd);  // no fsync needed: the page cache outlives the process
  }
  ::kill(::getpid(), SIGKILL);
}

}  // namespace nvmux
