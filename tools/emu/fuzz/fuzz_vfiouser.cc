// libFuzzer target: fuzzer-chosen vfio-user messages sent to a real,
// in-process nvmux-emu (Emulator: socket thread + poller) over its AF_UNIX
// socket — the same path a client takes, framing and dispatch included.
//
// One Emulator lives for the whole process, on a directory under
// $NVMUX_FUZZ_DIR (scripts/fuzz.sh points it at its own work directory) or
// a mkdtemp /tmp/nvmux-fuzz-XXXXXX; it is stopped and removed at exit.
// Each input is one client connection:
//
//   byte 0: session flags; bit 0 clear = start with a valid VERSION
//   then messages, each [ctl][16-byte header][len lo][len hi][len bytes]:
//     ctl bits 0-1: number of fds to attach (memfd or eventfd, bit 2)
//     ctl bit 3:    send the header as is (msg_size may lie); otherwise
//                   msg_size is the real size, cmd is taken mod 16 and the
//                   type bits say "command"
//
// Everything is written with non-blocking sendmsg while replies are read
// and dropped (fds they carry are closed), so neither side can block the
// other; then the write side is shut and the server must close the
// connection within kDeadlineMs. A server that does not is reported as a
// crash (abort), as is any sanitizer report from either server thread.
// After each input the controller is reset (DEVICE_RESET's effect).
//
// Thread safety: libFuzzer calls LLVMFuzzerTestOneInput on one thread.
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "libclient/vfiouser/protocol.h"
#include "shm/base/log.h"
#include "tools/emu/emulator.h"

namespace {

using namespace nvmux;
using namespace nvmux::vfiouser;

constexpr int kDeadlineMs = 5000;
constexpr uint64_t kMemfdSize = 1ull << 20;

struct Fixture {
  std::string dir;  // removed at exit
  std::unique_ptr<emu::Emulator> emu;
  int memfd = -1;
  int eventfd = -1;

  Fixture() {
    SetLogLevel(LogLevel::kError);
    const char* base = std::getenv("NVMUX_FUZZ_DIR");
    std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/nvmux-fuzz-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    dir = tmpl;
    emu::EmulatorOptions options;
    options.socket_dir = dir + "/sock";
    options.namespaces.push_back({4ull << 20, 512, 0, false});
    options.io_queues = 8;
    auto created = emu::Emulator::Create(options);
    if (!created) {
      std::fprintf(stderr, "fuzz_vfiouser: %s\n", created.error().ToString().c_str());
      std::abort();
    }
    emu = std::move(*created);
    if (!emu->Start()) std::abort();
    memfd = ::memfd_create("nvmux-fuzz-dma", MFD_CLOEXEC);
    eventfd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (memfd < 0 || eventfd < 0 || ::ftruncate(memfd, static_cast<off_t>(kMemfdSize)) != 0) std::abort();
  }
  ~Fixture() {
    emu.reset();
    ::close(memfd);
    ::close(eventfd);
    ::nftw(
        dir.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
        FTW_DEPTH | FTW_PHYS);
  }
};

Fixture* g_fixture = nullptr;

Fixture& GetFixture() {
  if (g_fixture == nullptr) {
    g_fixture = new Fixture();
    std::atexit([] {
      delete g_fixture;
      g_fixture = nullptr;
    });
  }
  return *g_fixture;
}

struct OutMessage {
  std::vector<uint8_t> bytes;
  std::vector<int> fds;  // borrowed
};

std::vector<OutMessage> Decode(const uint8_t* data, size_t size, const Fixture& f) {
  std::vector<OutMessage> out;
  size_t pos = 0;
  auto u8 = [&]() -> uint8_t { return pos < size ? data[pos++] : 0; };
  const uint8_t session = u8();
  if ((session & 1) == 0) {
    OutMessage m;
    Header h;
    h.msg_id = 0;
    h.cmd = static_cast<uint16_t>(Command::kVersion);
    const char caps[] = R"({"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576}})";
    VersionPayload v{kVersionMajor, kVersionMinor};
    h.msg_size = static_cast<uint32_t>(sizeof(h) + sizeof(v) + sizeof(caps));
    m.bytes.resize(h.msg_size);
    std::memcpy(m.bytes.data(), &h, sizeof(h));
    std::memcpy(m.bytes.data() + sizeof(h), &v, sizeof(v));
    std::memcpy(m.bytes.data() + sizeof(h) + sizeof(v), caps, sizeof(caps));
    out.push_back(std::move(m));
  }
  while (pos < size) {
    const uint8_t ctl = u8();
    Header h;
    uint8_t raw[sizeof(Header)] = {};
    for (uint8_t& b : raw) b = u8();
    std::memcpy(&h, raw, sizeof(h));
    size_t len = u8();
    len |= size_t{u8()} << 8;
    if (len > size - pos) len = size - pos;
    OutMessage m;
    if ((ctl & 8) == 0) {
      h.msg_size = static_cast<uint32_t>(sizeof(h) + len);
      h.cmd = static_cast<uint16_t>(h.cmd % 16);
      h.flags = (h.flags & ~kFlagTypeMask & 0x3F) | kFlagTypeCommand;
    }
    m.bytes.resize(sizeof(h) + len);
    std::memcpy(m.bytes.data(), &h, sizeof(h));
    std::memcpy(m.bytes.data() + sizeof(h), data + pos, len);
    pos += len;
    for (int i = 0; i < (ctl & 3); ++i) m.fds.push_back((ctl & 4) != 0 ? f.eventfd : f.memfd);
    out.push_back(std::move(m));
  }
  return out;
}

// Reads whatever the server sent and drops it, closing any fds. Returns
// false at EOF or on an error.
bool DrainReplies(int sock) {
  for (;;) {
    uint8_t buf[64 * 1024];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxMsgFdsLimit)];
    iovec iov{buf, sizeof(buf)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); n >= 0 && c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        ::close(fd);
      }
    }
    if (n > 0) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;  // EOF, or the server reset the connection
  }
}

[[noreturn]] void Hang(const char* what) {
  std::fprintf(stderr, "fuzz_vfiouser: HANG: %s within %d ms\n", what, kDeadlineMs);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Fixture& f = GetFixture();
  const std::vector<OutMessage> messages = Decode(data, size, f);

  const int sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (sock < 0) std::abort();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", f.emu->socket_path().c_str());
  if (::connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 && errno != EINPROGRESS &&
      errno != EAGAIN) {
    std::perror("fuzz_vfiouser: connect");
    std::abort();
  }

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kDeadlineMs);
  auto remaining_ms = [&] {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    return static_cast<int>(left.count() > 0 ? left.count() : 0);
  };

  bool open = true;
  for (size_t i = 0; i < messages.size() && open;) {
    const OutMessage& m = messages[i];
    size_t sent = 0;
    while (sent < m.bytes.size() && open) {
      pollfd p{sock, POLLIN | POLLOUT, 0};
      if (::poll(&p, 1, remaining_ms()) == 0) Hang("the server stopped reading");
      if ((p.revents & POLLIN) != 0 && !DrainReplies(sock)) open = false;
      if ((p.revents & (POLLERR | POLLHUP)) != 0) open = false;
      if ((p.revents & POLLOUT) == 0 || !open) continue;
      iovec iov{const_cast<uint8_t*>(m.bytes.data()) + sent, m.bytes.size() - sent};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 3)];
      if (sent == 0 && !m.fds.empty()) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * m.fds.size());
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * m.fds.size());
        std::memcpy(CMSG_DATA(c), m.fds.data(), sizeof(int) * m.fds.size());
      }
      const ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        open = false;  // the server dropped us (a legitimate answer to garbage)
      }
    }
    ++i;
  }

  // No more requests: the server must notice EOF (also mid-message) and
  // close the connection.
  ::shutdown(sock, SHUT_WR);
  for (;;) {
    pollfd p{sock, POLLIN, 0};
    if (::poll(&p, 1, remaining_ms()) == 0) Hang("the server did not close the connection");
    if (!DrainReplies(sock)) break;
  }
  ::close(sock);
  // The server dropped this client's DMA maps and eventfds; a controller
  // reset also clears its queues, registers and features, so the next input
  // starts (nearly) from scratch. Namespaces made with Namespace Management
  // and data written persist: a crash may need the inputs before it.
  f.emu->controller().Reset();
  return 0;
}
