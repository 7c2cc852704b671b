#include "tools/emu/control_socket.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "shm/base/log.h"

namespace nvmux::emu {
namespace {

struct Connection {
  UniqueFd fd;
  std::string buffer;  // bytes received, not yet a whole line
};

bool SendLine(int fd, std::string line) {
  line.push_back('\n');
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::send(fd, line.data() + done, line.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Result<std::unique_ptr<ControlSocket>> ControlSocket::Create(const std::string& path, Handler handler) {
  std::unique_ptr<ControlSocket> control(new ControlSocket(path, std::move(handler)));
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    return Fail(ENAMETOOLONG, "control socket '" + path + "' is longer than " +
                                  std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  struct stat st{};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Fail(EEXIST, "'" + path + "' exists and is not a socket");
    // The vfio-user socket next to it is ours, so this one is stale.
    ::unlink(path.c_str());
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError("socket");
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoError("bind '" + path + "'");
  }
  control->listen_fd_ = std::move(fd);  // from here on the destructor unlinks path
  if (::listen(control->listen_fd_.get(), 4) != 0) return ErrnoError("listen '" + path + "'");
  control->stop_fd_.Reset(::eventfd(0, EFD_CLOEXEC));
  if (!control->stop_fd_.valid()) return ErrnoError("eventfd");
  return control;
}

ControlSocket::~ControlSocket() {
  Stop();
  if (listen_fd_.valid()) {
    listen_fd_.Reset();
    ::unlink(path_.c_str());
  }
}

Status ControlSocket::Start() {
  if (thread_.joinable()) return Fail(EINVAL, "control socket already started");
  thread_ = std::thread([this] { Run(); });
  return Ok();
}

void ControlSocket::Stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  (void)!::write(stop_fd_.get(), &one, sizeof(one));
  thread_.join();
}

void ControlSocket::Run() {
  std::vector<Connection> conns;
  for (;;) {
    std::vector<pollfd> pfds;
    pfds.push_back({stop_fd_.get(), POLLIN, 0});
    pfds.push_back({listen_fd_.get(), POLLIN, 0});
    for (const Connection& c : conns) pfds.push_back({c.fd.get(), POLLIN, 0});
    if (::poll(pfds.data(), pfds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      NVMUX_LOG(kError, "nvmux-emu: control socket poll: %s", std::strerror(errno));
      return;
    }
    if (pfds[0].revents != 0) return;
    // Connections first (indices shift as closed ones go, so walk backwards).
    for (size_t i = conns.size(); i-- > 0;) {
      if (pfds[i + 2].revents == 0) continue;
      Connection& c = conns[i];
      char buf[1024];
      ssize_t n = ::recv(c.fd.get(), buf, sizeof(buf), 0);
      if (n < 0 && errno == EINTR) continue;
      bool keep = n > 0;
      if (keep) c.buffer.append(buf, static_cast<size_t>(n));
      size_t nl;
      while (keep && (nl = c.buffer.find('\n')) != std::string::npos) {
        std::string line = c.buffer.substr(0, nl);
        c.buffer.erase(0, nl + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        keep = SendLine(c.fd.get(), handler_(line));
      }
      if (keep && c.buffer.size() > kMaxLine) {
        (void)SendLine(c.fd.get(), "error line too long (at most " + std::to_string(kMaxLine) + " bytes)");
        keep = false;
      }
      if (!keep) conns.erase(conns.begin() + static_cast<std::ptrdiff_t>(i));
    }
    if ((pfds[1].revents & POLLIN) != 0) {
      UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!fd.valid()) continue;
      if (conns.size() >= kMaxClients) {
        (void)SendLine(fd.get(), "error too many control connections (at most " + std::to_string(kMaxClients) + ")");
        continue;
      }
      conns.push_back({std::move(fd), {}});
    }
  }
}

}  // namespace nvmux::emu
