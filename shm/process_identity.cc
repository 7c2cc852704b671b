#include "shm/process_identity.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "shm/base/unique_fd.h"

namespace nvmux::shm {
namespace {

// Reads /proc/<pid>/stat. The comm field (2) may hold spaces and parentheses,
// so fields are counted from the last ')'.
Result<std::string> ReadStat(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Fail(ESRCH, "process " + std::to_string(pid) + " is not running");
  char buf[1024];
  ssize_t n = ::read(fd.get(), buf, sizeof(buf) - 1);
  if (n <= 0) return Fail(ESRCH, "process " + std::to_string(pid) + " is not running");
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace

Result<uint64_t> ReadProcessStartTime(pid_t pid) {
  auto stat = ReadStat(pid);
  if (!stat) return stat.error();
  size_t close = stat->rfind(')');
  if (close == std::string::npos) return Fail(EPROTO, "malformed /proc/" + std::to_string(pid) + "/stat");
  // After ')': field 3 (state) is first; start time is field 22.
  const char* p = stat->c_str() + close + 1;
  for (int field = 3; field < 22; ++field) {
    while (*p == ' ') ++p;
    while (*p != ' ' && *p != '\0') ++p;
    if (*p == '\0') return Fail(EPROTO, "short /proc/" + std::to_string(pid) + "/stat");
  }
  char* end = nullptr;
  unsigned long long v = std::strtoull(p, &end, 10);
  if (end == p) return Fail(EPROTO, "bad start time in /proc/" + std::to_string(pid) + "/stat");
  return static_cast<uint64_t>(v);
}

ProcessIdentity SelfIdentity() {
  static thread_local ProcessIdentity cached;
  pid_t pid = getpid();
  if (cached.pid != pid) {
    auto start = ReadProcessStartTime(pid);
    cached = ProcessIdentity{pid, start ? *start : 0};
  }
  return cached;
}

bool IdentityRunning(const ProcessIdentity& id) {
  auto stat = ReadStat(id.pid);
  if (!stat) return false;
  size_t close = stat->rfind(')');
  if (close == std::string::npos || close + 2 >= stat->size()) return false;
  char state = (*stat)[close + 2];
  if (state == 'Z' || state == 'X') return false;
  auto start = ReadProcessStartTime(id.pid);
  return start && *start == id.start_time;
}

}  // namespace nvmux::shm
