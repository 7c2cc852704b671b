#include "libclient/tcp/pdu.h"

#include <array>
#include <cerrno>
#include <algorithm>
#include <cstring>

namespace nvmux::tcp {
namespace {

// Slice-by-one table for the Castagnoli polynomial (reflected 0x82F63B78).
constexpr std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrcTable = MakeCrcTable();

uint32_t CrcUpdate(uint32_t state, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) state = kCrcTable[(state ^ p[i]) & 0xFF] ^ (state >> 8);
  return state;
}

constexpr uint32_t kMaxTermReqData = 152;  // the offending PDU's header, at most

Status Proto(const std::string& why) { return Fail(EPROTO, "NVMe/TCP: " + why); }

}  // namespace

const char* PduTypeName(uint8_t type) {
  switch (type) {
    case pdu::kIcReq: return "ICReq";
    case pdu::kIcResp: return "ICResp";
    case pdu::kH2CTermReq: return "H2CTermReq";
    case pdu::kC2HTermReq: return "C2HTermReq";
    case pdu::kCapsuleCmd: return "CapsuleCmd";
    case pdu::kCapsuleResp: return "CapsuleResp";
    case pdu::kH2CData: return "H2CData";
    case pdu::kC2HData: return "C2HData";
    case pdu::kR2T: return "R2T";
  }
  return "unknown";
}

uint8_t HeaderLength(uint8_t type) {
  switch (type) {
    case pdu::kIcReq:
    case pdu::kIcResp: return 128;
    case pdu::kH2CTermReq:
    case pdu::kC2HTermReq: return 24;
    case pdu::kCapsuleCmd: return 72;
    case pdu::kCapsuleResp:
    case pdu::kH2CData:
    case pdu::kC2HData:
    case pdu::kR2T: return 24;
  }
  return 0;
}

uint32_t Crc32c(const void* data, size_t bytes, uint32_t crc) {
  return ~CrcUpdate(~crc, static_cast<const uint8_t*>(data), bytes);
}

uint32_t Crc32c(std::span<const iovec> iov, uint32_t crc) {
  uint32_t state = ~crc;
  for (const iovec& v : iov) state = CrcUpdate(state, static_cast<const uint8_t*>(v.iov_base), v.iov_len);
  return ~state;
}

Status PduReader::CheckHeader(std::span<const uint8_t> header, const Negotiated& n, bool connected,
                              uint32_t& data_bytes) {
  data_bytes = 0;
  if (header.size() < sizeof(CommonHeader)) return Proto("PDU header of " + std::to_string(header.size()) + " bytes");
  CommonHeader ch;
  std::memcpy(&ch, header.data(), sizeof(ch));
  const std::string name = std::string(PduTypeName(ch.type)) + " PDU";
  const uint8_t hlen = HeaderLength(ch.type);
  if (hlen == 0) return Proto("PDU type " + std::to_string(ch.type) + " is not defined");
  if (ch.hlen != hlen || header.size() != hlen)
    return Proto(name + " with HLEN " + std::to_string(ch.hlen) + " (must be " + std::to_string(hlen) + ")");
  switch (ch.type) {
    case pdu::kIcResp:
      if (connected) return Proto("ICResp after the connection was initialised");
      break;
    case pdu::kC2HTermReq: break;
    case pdu::kCapsuleResp:
    case pdu::kC2HData:
    case pdu::kR2T:
      if (!connected) return Proto(name + " before ICResp");
      break;
    default: return Proto(name + " sent to the host (controller-to-host PDUs only)");
  }
  const bool control = ch.type == pdu::kIcResp || ch.type == pdu::kC2HTermReq;  // never digested
  const bool hdgst = (ch.flags & pdu::kFlagHdgst) != 0;
  const bool ddgst = (ch.flags & pdu::kFlagDdgst) != 0;
  if (hdgst != (!control && n.header_digest))
    return Proto(name + ": HDGSTF is " + (hdgst ? "set" : "clear") + " but header digests are " +
                 (n.header_digest && !control ? "on" : "off"));
  const uint32_t head = hlen + (hdgst ? 4u : 0u);
  if (ch.plen < head) return Proto(name + ": PLEN " + std::to_string(ch.plen) + " is shorter than its header");
  if (ch.type == pdu::kC2HData) {
    const auto& d = *reinterpret_cast<const DataHeader*>(header.data());
    if (ddgst != n.data_digest)
      return Proto(name + ": DDGSTF is " + (ddgst ? "set" : "clear") + " but data digests are " +
                   (n.data_digest ? "on" : "off"));
    if (ch.pdo < head || ch.pdo >= ch.plen)
      return Proto(name + ": PDO " + std::to_string(ch.pdo) + " outside [header end " + std::to_string(head) +
                   ", PLEN " + std::to_string(ch.plen) + ")");
    if (n.rx_align != 0 && ch.pdo % n.rx_align != 0)
      return Proto(name + ": PDO " + std::to_string(ch.pdo) + " is not aligned to HPDA (" + std::to_string(n.rx_align) + ")");
    const uint64_t data = uint64_t{ch.plen} - ch.pdo - (ddgst ? 4u : 0u);
    if (data == 0 || data > ch.plen || data != d.length)
      return Proto(name + ": DATAL " + std::to_string(d.length) + " does not match PLEN " + std::to_string(ch.plen) +
                   " - PDO " + std::to_string(ch.pdo));
    if ((ch.flags & pdu::kFlagSuccess) != 0 && (ch.flags & pdu::kFlagLastPdu) == 0)
      return Proto(name + ": SUCCESS without LAST_PDU");
    data_bytes = static_cast<uint32_t>(data);
    return Ok();
  }
  if (ddgst) return Proto(name + ": DDGSTF set on a PDU without data digest");
  if (ch.type == pdu::kC2HTermReq) {
    const uint32_t data = ch.plen - hlen;
    if (data > kMaxTermReqData || ch.pdo != 0)
      return Proto(name + ": PLEN " + std::to_string(ch.plen) + " / PDO " + std::to_string(ch.pdo) + " (at most " +
                   std::to_string(hlen + kMaxTermReqData) + " bytes, PDO 0)");
    data_bytes = data;
    return Ok();
  }
  if (ch.pdo != 0 || ch.plen != head)
    return Proto(name + ": PLEN " + std::to_string(ch.plen) + " / PDO " + std::to_string(ch.pdo) +
                 " (a PDU without data: PLEN " + std::to_string(head) + ", PDO 0)");
  if (ch.type == pdu::kR2T) {
    const auto& d = *reinterpret_cast<const DataHeader*>(header.data());
    if (d.length == 0) return Proto("R2T for 0 bytes");
  }
  return Ok();
}

Status PduReader::Fail(const std::string& why) {
  error_ = Proto(why);
  return error_;
}

Status PduReader::Finish(Handler& handler) {
  ReceivedPdu p{std::span<const uint8_t>(header_, header_bytes_), std::span<const uint8_t>(small_.data(), small_.size())};
  phase_ = Phase::kCommon;
  got_ = 0;
  ++pdus_;
  Status st = handler.OnPdu(p);
  if (!st) error_ = st;
  return st;
}

uint32_t PduReader::PhaseLeft() const {
  switch (phase_) {
    case Phase::kCommon: return static_cast<uint32_t>(sizeof(CommonHeader)) - got_;
    case Phase::kHeader: return header_bytes_ - got_;
    case Phase::kPad: return pad_ - got_;
    case Phase::kData: return data_bytes_ - got_;
    case Phase::kDataDigest: return 4 - got_;
  }
  return 0;
}

Status PduReader::Advance(uint32_t got, Handler& handler) {
  switch (phase_) {
    case Phase::kCommon: {
      got_ += got;
      if (got_ < sizeof(CommonHeader)) break;
      CommonHeader ch;
      std::memcpy(&ch, header_, sizeof(ch));
      uint8_t hlen = HeaderLength(ch.type);
      if (hlen == 0 || ch.hlen != hlen)
        return Fail(std::string(PduTypeName(ch.type)) + " PDU (type " + std::to_string(ch.type) + ") with HLEN " +
                    std::to_string(ch.hlen));
      // The digest is read with the header when the PDU says it has one;
      // CheckHeader then tells whether it may.
      header_bytes_ = hlen + ((ch.flags & pdu::kFlagHdgst) != 0 ? 4u : 0u);
      phase_ = Phase::kHeader;
      break;
    }
    case Phase::kHeader: {
      got_ += got;
      if (got_ < header_bytes_) break;
      CommonHeader ch;
      std::memcpy(&ch, header_, sizeof(ch));
      const uint32_t hlen = ch.hlen;
      NVMUX_TRY(error_ = CheckHeader(std::span<const uint8_t>(header_, hlen), negotiated_, connected_, data_bytes_));
      if (header_bytes_ > hlen) {
        uint32_t wire;
        std::memcpy(&wire, header_ + hlen, 4);
        if (wire != Crc32c(header_, hlen)) return Fail(std::string(PduTypeName(ch.type)) + " PDU: header digest mismatch");
      }
      header_bytes_ = hlen;  // what Finish hands over
      pad_ = 0;
      if (data_bytes_ > 0 && ch.pdo != 0) {
        const uint32_t head = hlen + ((ch.flags & pdu::kFlagHdgst) != 0 ? 4u : 0u);
        pad_ = ch.pdo - head;  // CheckHeader: pdo >= head
      }
      small_.clear();
      data_iov_.clear();
      got_ = 0;
      if (data_bytes_ == 0) return Finish(handler);
      if (ch.type == pdu::kC2HData) {
        const auto& d = *reinterpret_cast<const DataHeader*>(header_);
        Status placed = handler.PlaceData(d, data_iov_);
        if (!placed) {
          error_ = placed;
          return error_;
        }
        uint64_t total = 0;
        for (const iovec& v : data_iov_) total += v.iov_len;
        if (total != data_bytes_)
          return Fail("C2HData of " + std::to_string(data_bytes_) + " bytes placed into " + std::to_string(total));
      } else {
        small_.resize(data_bytes_);
        data_iov_.push_back({small_.data(), small_.size()});
      }
      if ((ch.flags & pdu::kFlagDdgst) != 0) digest_iov_ = data_iov_;
      phase_ = pad_ > 0 ? Phase::kPad : Phase::kData;
      break;
    }
    case Phase::kPad:
      got_ += got;
      if (got_ < pad_) break;
      got_ = 0;
      phase_ = Phase::kData;
      break;
    case Phase::kData: {
      size_t left = got;
      for (iovec& v : data_iov_) {
        if (left == 0) break;
        size_t take = std::min(left, v.iov_len);
        v.iov_base = static_cast<uint8_t*>(v.iov_base) + take;
        v.iov_len -= take;
        left -= take;
      }
      got_ += got;
      if (got_ < data_bytes_) break;
      got_ = 0;
      if ((header_[1] & pdu::kFlagDdgst) != 0) {
        phase_ = Phase::kDataDigest;
        break;
      }
      return Finish(handler);
    }
    case Phase::kDataDigest: {
      got_ += got;
      if (got_ < 4) break;
      uint32_t wire;
      std::memcpy(&wire, digest_, 4);
      if (wire != Crc32c(std::span<const iovec>(digest_iov_)))
        return Fail(std::string(PduTypeName(header_[0])) + " PDU: data digest mismatch");
      return Finish(handler);
    }
  }
  return Ok();
}

Status PduReader::Consume(Handler& handler) {
  while (buffer_pos_ < buffer_end_) {
    const uint8_t* src = buffer_.data() + buffer_pos_;
    const auto n = static_cast<uint32_t>(std::min<size_t>(buffer_end_ - buffer_pos_, PhaseLeft()));
    switch (phase_) {
      case Phase::kCommon:
      case Phase::kHeader: std::memcpy(header_ + got_, src, n); break;
      case Phase::kPad: break;
      case Phase::kDataDigest: std::memcpy(digest_ + got_, src, n); break;
      case Phase::kData: {
        // Into the pieces still empty, in order (Advance then moves past them).
        size_t left = n;
        for (const iovec& v : data_iov_) {
          if (left == 0) break;
          const size_t take = std::min(left, v.iov_len);
          std::memcpy(v.iov_base, src + (n - left), take);
          left -= take;
        }
        copied_ += n;
        break;
      }
    }
    buffer_pos_ += n;
    NVMUX_TRY(Advance(n, handler));
  }
  buffer_pos_ = buffer_end_ = 0;
  return Ok();
}

Status PduReader::Pump(const ReadFn& read, Handler& handler, Drain drain) {
  if (!error_) return error_;
  if (buffer_.empty()) buffer_.resize(kBufferBytes);
  for (;;) {
    NVMUX_TRY(Consume(handler));
    // A large payload whose header is parsed goes straight to its buffers;
    // the receive buffer behind it takes what follows in the same read.
    iovec target[65];
    int count = 0;
    size_t direct = 0;
    if (phase_ == Phase::kData && PhaseLeft() >= kDirectThreshold) {
      for (const iovec& v : data_iov_) {
        if (v.iov_len == 0) continue;
        target[count++] = v;
        direct += v.iov_len;
        if (count == 64) break;
      }
    }
    target[count++] = {buffer_.data(), buffer_.size()};
    const ssize_t n = read(target, count);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Ok();
      if (errno == EINTR) continue;
      error_ = ErrnoError("NVMe/TCP: receiving");
      return error_;
    }
    if (n == 0) {
      error_ = nvmux::Fail(ECONNRESET, "NVMe/TCP: the controller closed the connection");
      return error_;
    }
    ++reads_;
    const auto got = static_cast<size_t>(n);
    const size_t placed = std::min(got, direct);
    buffer_end_ = got - placed;  // bytes past the direct pieces landed in the buffer
    if (placed > 0) NVMUX_TRY(Advance(static_cast<uint32_t>(placed), handler));
    if (drain == Drain::kOneRead) return Consume(handler);
  }
}

}  // namespace nvmux::tcp
