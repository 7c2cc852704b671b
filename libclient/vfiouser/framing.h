// vfio-user message framing over a connected AF_UNIX SOCK_STREAM socket.
//
// A message is sent with one sendmsg (looping on partial writes; fds go with
// the first byte) and received as a header, whose ancillary data carries the
// fds, then a body of msg_size - 16 bytes. The receive side enforces limits
// so that a hostile peer can make it neither allocate without bound nor hold
// fds: too many fds or a truncated control message is EPROTO with every
// received fd closed.
//
// Errors (all calls): ETIMEDOUT when nothing arrives within timeout_ms
// (negative waits forever); ECANCELED when cancel_fd (if >= 0) becomes
// readable first; ENOTCONN when the peer closed cleanly before the
// first byte of a message; EPROTO when it closed mid-message or sent an
// ill-formed one; E2BIG for a message above max_size (its body is read and
// discarded so the stream stays usable); other errno values from the socket.
// Sends use MSG_NOSIGNAL: a vanished peer is EPIPE/ECONNRESET, not SIGPIPE.
//
// Thread safety: functions are reentrant; callers serialise use of one
// socket per direction.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "libclient/vfiouser/protocol.h"
#include "shm/base/result.h"
#include "shm/base/unique_fd.h"

namespace nvmux::vfiouser {

struct Message {
  Header header;
  std::vector<uint8_t> payload;
  std::vector<UniqueFd> fds;
};

struct ReceivedHeader {
  Header header;
  std::vector<UniqueFd> fds;
};

// Sends header (msg_size is filled in) + payload + fds. REQUIRES: fds.size()
// <= kMaxMsgFdsLimit.
[[nodiscard]] Status SendMessage(int sock, Header header, std::span<const uint8_t> payload,
                                 std::span<const int> fds = {});

// Receives one header and the fds that came with it (at most max_fds).
[[nodiscard]] Result<ReceivedHeader> RecvHeader(int sock, int timeout_ms, uint32_t max_fds, int cancel_fd = -1);

// Receives exactly out.size() bytes; EOF before that is EPROTO.
[[nodiscard]] Status RecvExact(int sock, std::span<uint8_t> out, int timeout_ms, int cancel_fd = -1);

// Reads and drops n bytes.
[[nodiscard]] Status Discard(int sock, uint64_t n, int timeout_ms, int cancel_fd = -1);

// Header + body. msg_size < 16 is EPROTO (the stream cannot be resynchronised);
// msg_size > max_size is E2BIG after the body was discarded.
[[nodiscard]] Result<Message> RecvMessage(int sock, int timeout_ms, uint32_t max_size,
                                          uint32_t max_fds, int cancel_fd = -1);

// Copies a T from bytes at offset, or nullopt if too short.
template <typename T>
std::optional<T> ReadStruct(std::span<const uint8_t> bytes, size_t offset = 0) {
  if (offset > bytes.size() || bytes.size() - offset < sizeof(T)) return std::nullopt;
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

// Appends the bytes of value to out.
template <typename T>
void AppendStruct(std::vector<uint8_t>& out, const T& value) {
  const auto* p = reinterpret_cast<const uint8_t*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

}  // namespace nvmux::vfiouser
