// ControlSocket: nvmux-emu's run-time control channel, <socket dir>/control.
//
// AF_UNIX stream socket speaking a line protocol: each command is one line
// of text ending in '\n'; each gets exactly one reply line, "ok ..." or
// "error ...". What the commands mean is up to the handler (the Emulator:
// fault injection, surprise removal, corruption; see tools/emu/README.md).
// Up to kMaxClients connections are served at once, in turn; a line longer
// than kMaxLine gets "error line too long" and the connection is closed.
//
// Thread safety: Create/Start/Stop/destructor from the owning thread. The
// handler runs on the control thread, one line at a time.
// Ownership: the socket file is created by Create and removed by the
// destructor.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "shm/base/result.h"
#include "shm/base/unique_fd.h"

namespace nvmux::emu {

class ControlSocket {
 public:
  static constexpr size_t kMaxClients = 8;
  static constexpr size_t kMaxLine = 4096;
  // Returns the reply line, without the trailing newline.
  using Handler = std::function<std::string(std::string_view line)>;

  // Binds and listens on path (a stale socket file there is replaced).
  // Errors: ENAMETOOLONG, EEXIST (path is not a socket), or the errno of
  // socket/bind/listen/eventfd, naming the path.
  [[nodiscard]] static Result<std::unique_ptr<ControlSocket>> Create(const std::string& path, Handler handler);
  ~ControlSocket();  // Stop(), then closes and unlinks the socket
  ControlSocket(const ControlSocket&) = delete;
  ControlSocket& operator=(const ControlSocket&) = delete;

  // Starts the control thread.
  [[nodiscard]] Status Start();
  // Stops and joins the control thread, closing every connection. Idempotent.
  void Stop();
  const std::string& path() const { return path_; }

 private:
  ControlSocket(std::string path, Handler handler) : path_(std::move(path)), handler_(std::move(handler)) {}
  void Run();

  std::string path_;
  Handler handler_;
  UniqueFd listen_fd_;
  UniqueFd stop_fd_;
  std::thread thread_;
};

}  // namespace nvmux::emu
