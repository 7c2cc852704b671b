// RunPduStream: one fuzz input through a PduReader (see fuzz_tcp_pdu.cc for
// the input format). Header only, shared by the libFuzzer target and the
// unit test that runs random streams in every build.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "libclient/tcp/pdu.h"

namespace nvmux::tcp {

struct FuzzHandler : PduReader::Handler {
  uint8_t buffers[4][4096] = {};
  uint64_t pdus = 0;
  Status PlaceData(const DataHeader& h, std::vector<iovec>& out) override {
    if (h.cccid >= 4 || uint64_t{h.offset} + h.length > 4096) return Fail(EPROTO, "not outstanding");
    // Two pieces, as a scattered buffer would give.
    uint32_t first = h.length / 2;
    if (first > 0) out.push_back({buffers[h.cccid] + h.offset, first});
    out.push_back({buffers[h.cccid] + h.offset + first, h.length - first});
    return Ok();
  }
  Status OnPdu(const ReceivedPdu& p) override {
    ++pdus;
    if (p.header.size() < sizeof(CommonHeader) || p.header.size() > 128) __builtin_trap();
    return Ok();
  }
};

// Returns the number of PDUs the reader delivered before the stream ended
// or it failed.
inline uint64_t RunPduStream(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t config = data[0];
  const uint8_t* p = data + 1;
  size_t left = size - 1;
  const size_t step = (config >> 4) + 1u;
  PduReader reader;
  if ((config & 4) != 0) {
    Negotiated n;
    n.header_digest = (config & 1) != 0;
    n.data_digest = (config & 2) != 0;
    n.rx_align = 4;
    n.maxh2cdata = 8192;
    reader.SetNegotiated(n);
  }
  FuzzHandler handler;
  auto read = [&](const iovec* iov, int count) -> ssize_t {
    if (left == 0) {
      errno = EAGAIN;
      return -1;
    }
    size_t budget = std::min(left, step), done = 0;
    for (int i = 0; i < count && budget > 0; ++i) {
      size_t n = std::min(budget, iov[i].iov_len);
      std::memcpy(iov[i].iov_base, p, n);
      p += n;
      left -= n;
      budget -= n;
      done += n;
    }
    return static_cast<ssize_t>(done);
  };
  // Each Pump reads until the source says EAGAIN (all consumed) or an error.
  (void)reader.Pump(read, handler);
  return handler.pdus;
}

}  // namespace nvmux::tcp
