// A client of nvmux-emu's control socket (<socket dir>/control) for tests:
// one command line out, one reply line back, with a deadline.
//
// Thread safety: one test thread per ControlClient.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>

#include "shm/base/unique_fd.h"

namespace nvmux::conformance {

class ControlClient {
 public:
  // Connects to socket_dir/control; connected() tells whether it worked.
  explicit ControlClient(const std::string& socket_dir) {
    const std::string path = socket_dir + "/control";
    sockaddr_un addr{};
    if (path.size() >= sizeof(addr.sun_path)) return;
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid() || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return;
    fd_ = std::move(fd);
  }
  bool connected() const { return fd_.valid(); }

  // Sends line (a newline is appended) and returns the reply line without
  // its newline, or "<no reply>" / "<not connected>" on failure or timeout.
  std::string Send(const std::string& line, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    if (!fd_.valid()) return "<not connected>";
    const std::string out = line + "\n";
    if (::send(fd_.get(), out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) {
      return "<no reply>";
    }
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      size_t nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        std::string reply = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return reply;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return "<no reply>";
      pollfd pfd{fd_.get(), POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[512];
      ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
      if (n <= 0) return "<no reply>";
      buffer_.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  UniqueFd fd_;
  std::string buffer_;
};

// True if reply starts with prefix ("ok", "error").
inline bool StartsWith(const std::string& reply, const std::string& prefix) { return reply.rfind(prefix, 0) == 0; }

}  // namespace nvmux::conformance
