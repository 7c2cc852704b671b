#include "libclient/vfiouser/framing.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>

namespace nvmux::vfiouser {
namespace {

// Waits until sock is readable. ETIMEDOUT on timeout, ECANCELED if
// cancel_fd (when >= 0) becomes readable first.
Status WaitReadable(int sock, int timeout_ms, int cancel_fd) {
  pollfd pfds[2] = {{sock, POLLIN, 0}, {cancel_fd, POLLIN, 0}};
  for (;;) {
    int rc = ::poll(pfds, cancel_fd >= 0 ? 2 : 1, timeout_ms);
    if (rc > 0 && cancel_fd >= 0 && pfds[1].revents != 0) {
      return Fail(ECANCELED, "vfio-user: receive cancelled");
    }
    if (rc > 0) return Ok();
    if (rc == 0) return Fail(ETIMEDOUT, "vfio-user: no message within " + std::to_string(timeout_ms) + " ms");
    if (errno != EINTR) return ErrnoError("vfio-user: poll");
  }
}

void CloseFds(std::vector<UniqueFd>& fds) { fds.clear(); }

}  // namespace

const char* ToString(Command cmd) {
  switch (cmd) {
    case Command::kVersion: return "VERSION";
    case Command::kDmaMap: return "DMA_MAP";
    case Command::kDmaUnmap: return "DMA_UNMAP";
    case Command::kDeviceGetInfo: return "DEVICE_GET_INFO";
    case Command::kDeviceGetRegionInfo: return "DEVICE_GET_REGION_INFO";
    case Command::kDeviceGetRegionIoFds: return "DEVICE_GET_REGION_IO_FDS";
    case Command::kDeviceGetIrqInfo: return "DEVICE_GET_IRQ_INFO";
    case Command::kDeviceSetIrqs: return "DEVICE_SET_IRQS";
    case Command::kRegionRead: return "REGION_READ";
    case Command::kRegionWrite: return "REGION_WRITE";
    case Command::kDmaRead: return "DMA_READ";
    case Command::kDmaWrite: return "DMA_WRITE";
    case Command::kDeviceReset: return "DEVICE_RESET";
    case Command::kDirtyPages: return "DIRTY_PAGES";
  }
  return "UNKNOWN";
}

Status SendMessage(int sock, Header header, std::span<const uint8_t> payload,
                   std::span<const int> fds) {
  if (fds.size() > kMaxMsgFdsLimit) return Fail(EINVAL, "vfio-user: too many fds to send");
  if (payload.size() > UINT32_MAX - sizeof(Header)) return Fail(E2BIG, "vfio-user: payload too large");
  header.msg_size = static_cast<uint32_t>(sizeof(Header) + payload.size());

  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kMaxMsgFdsLimit)> control{};
  size_t sent = 0;
  const size_t total = header.msg_size;
  while (sent < total) {
    std::array<iovec, 2> iov{};
    int iovcnt = 0;
    if (sent < sizeof(Header)) {
      iov[0] = {reinterpret_cast<char*>(&header) + sent, sizeof(Header) - sent};
      iov[1] = {const_cast<uint8_t*>(payload.data()), payload.size()};
      iovcnt = payload.empty() ? 1 : 2;
    } else {
      size_t off = sent - sizeof(Header);
      iov[0] = {const_cast<uint8_t*>(payload.data()) + off, payload.size() - off};
      iovcnt = 1;
    }
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = static_cast<size_t>(iovcnt);
    if (sent == 0 && !fds.empty()) {
      msg.msg_control = control.data();
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("vfio-user: sendmsg");
    }
    sent += static_cast<size_t>(n);
  }
  return Ok();
}

Result<ReceivedHeader> RecvHeader(int sock, int timeout_ms, uint32_t max_fds, int cancel_fd) {
  ReceivedHeader out;
  auto* dst = reinterpret_cast<uint8_t*>(&out.header);
  size_t got = 0;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kMaxMsgFdsLimit)> control{};
  bool protocol_error = false;
  while (got < sizeof(Header)) {
    NVMUX_TRY(WaitReadable(sock, timeout_ms, cancel_fd));
    iovec iov{dst + got, sizeof(Header) - got};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    ssize_t n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("vfio-user: recvmsg");
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        out.fds.emplace_back(fd);
      }
    }
    if ((msg.msg_flags & MSG_CTRUNC) != 0) protocol_error = true;
    if (n == 0) {
      CloseFds(out.fds);
      if (got == 0) return Fail(ENOTCONN, "vfio-user: peer closed the connection");
      return Fail(EPROTO, "vfio-user: peer closed the connection inside a message header");
    }
    got += static_cast<size_t>(n);
  }
  if (protocol_error || out.fds.size() > max_fds) {
    size_t count = out.fds.size();
    CloseFds(out.fds);
    return Fail(EPROTO, "vfio-user: message carries " + std::to_string(count) +
                            " or more fds, at most " + std::to_string(max_fds) + " allowed");
  }
  return out;
}

Status RecvExact(int sock, std::span<uint8_t> out, int timeout_ms, int cancel_fd) {
  size_t got = 0;
  while (got < out.size()) {
    NVMUX_TRY(WaitReadable(sock, timeout_ms, cancel_fd));
    ssize_t n = ::recv(sock, out.data() + got, out.size() - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("vfio-user: recv");
    }
    if (n == 0) return Fail(EPROTO, "vfio-user: peer closed the connection inside a message");
    got += static_cast<size_t>(n);
  }
  return Ok();
}

Status Discard(int sock, uint64_t n, int timeout_ms, int cancel_fd) {
  std::array<uint8_t, 16384> scratch;
  while (n > 0) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, scratch.size()));
    NVMUX_TRY(RecvExact(sock, std::span<uint8_t>(scratch.data(), chunk), timeout_ms, cancel_fd));
    n -= chunk;
  }
  return Ok();
}

Result<Message> RecvMessage(int sock, int timeout_ms, uint32_t max_size, uint32_t max_fds, int cancel_fd) {
  auto head = RecvHeader(sock, timeout_ms, max_fds, cancel_fd);
  if (!head) return head.error();
  Message msg;
  msg.header = head->header;
  msg.fds = std::move(head->fds);
  if (msg.header.msg_size < sizeof(Header)) {
    return Fail(EPROTO, "vfio-user: msg_size " + std::to_string(msg.header.msg_size) +
                            " is smaller than the 16-byte header");
  }
  const uint64_t body = msg.header.msg_size - sizeof(Header);
  if (msg.header.msg_size > max_size) {
    msg.fds.clear();
    NVMUX_TRY(Discard(sock, body, timeout_ms, cancel_fd));
    return Fail(E2BIG, "vfio-user: msg_size " + std::to_string(msg.header.msg_size) +
                           " exceeds the limit " + std::to_string(max_size));
  }
  msg.payload.resize(static_cast<size_t>(body));
  NVMUX_TRY(RecvExact(sock, msg.payload, timeout_ms, cancel_fd));
  return msg;
}

}  // namespace nvmux::vfiouser
