#include "test/util/emu_control.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdio>

#include "shm/base/clock.h"
#include "shm/base/unique_fd.h"

namespace nvmux::test {

Result<std::string> EmuControl(const std::string& dir, std::string_view command) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return ErrnoError("socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = dir + "/control";
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return ErrnoError("connect " + path);
  std::string line(command);
  line.push_back('\n');
  if (::send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size()))
    return ErrnoError("send to " + path);
  std::string reply;
  int64_t deadline = MonotonicNanos() + 5'000'000'000;
  for (;;) {
    size_t nl = reply.find('\n');
    if (nl != std::string::npos) return reply.substr(0, nl);
    int left_ms = static_cast<int>((deadline - MonotonicNanos()) / 1'000'000);
    if (left_ms <= 0) return Fail(ETIMEDOUT, "no reply to '" + std::string(command) + "' on " + path);
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, left_ms) <= 0) continue;
    char buf[512];
    ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
    if (n == 0) return Fail(EPIPE, path + " closed without a reply to '" + std::string(command) + "'");
    if (n < 0 && errno != EINTR) return ErrnoError("recv from " + path);
    if (n > 0) reply.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace nvmux::test
