#include "libclient/tcp/pdu.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "libclient/tcp/fuzz/pdu_fuzz_driver.h"

namespace nvmux::tcp {
namespace {

std::vector<uint8_t> Bytes(const void* p, size_t n) {
  auto* b = static_cast<const uint8_t*>(p);
  return std::vector<uint8_t>(b, b + n);
}

void Append(std::vector<uint8_t>& out, const std::vector<uint8_t>& more) { out.insert(out.end(), more.begin(), more.end()); }

std::vector<uint8_t> Resp(uint16_t cid, bool hdgst) {
  CapsuleResp r;
  r.ch = {pdu::kCapsuleResp, static_cast<uint8_t>(hdgst ? pdu::kFlagHdgst : 0), 24, 0, hdgst ? 28u : 24u};
  r.cqe.cid = cid;
  r.cqe.cdw0 = 0xABCD;
  auto b = Bytes(&r, sizeof(r));
  if (hdgst) {
    uint32_t crc = Crc32c(&r, sizeof(r));
    Append(b, Bytes(&crc, 4));
  }
  return b;
}

std::vector<uint8_t> C2H(uint16_t cid, uint32_t offset, const std::vector<uint8_t>& data, bool ddgst, bool success) {
  DataHeader h;
  h.ch = {pdu::kC2HData, static_cast<uint8_t>((ddgst ? pdu::kFlagDdgst : 0) | pdu::kFlagLastPdu |
                                              (success ? pdu::kFlagSuccess : 0)),
          24, 24, static_cast<uint32_t>(24 + data.size() + (ddgst ? 4 : 0))};
  h.cccid = cid;
  h.offset = offset;
  h.length = static_cast<uint32_t>(data.size());
  auto b = Bytes(&h, sizeof(h));
  Append(b, data);
  if (ddgst) {
    uint32_t crc = Crc32c(data.data(), data.size());
    Append(b, Bytes(&crc, 4));
  }
  return b;
}

struct Recorder : FuzzHandler {
  std::vector<std::vector<uint8_t>> headers;
  Status OnPdu(const ReceivedPdu& p) override {
    headers.emplace_back(p.header.begin(), p.header.end());
    return FuzzHandler::OnPdu(p);
  }
};

// Feeds `stream` `step` bytes per read.
Status Feed(PduReader& reader, PduReader::Handler& h, const std::vector<uint8_t>& stream, size_t step,
            bool eof = false, PduReader::Drain drain = PduReader::Drain::kUntilEagain, int* calls = nullptr) {
  size_t at = 0;
  auto read = [&](const iovec* iov, int count) -> ssize_t {
    if (calls != nullptr) ++*calls;
    if (at == stream.size()) {
      if (eof) return 0;
      errno = EAGAIN;
      return -1;
    }
    size_t budget = std::min(step, stream.size() - at), done = 0;
    for (int i = 0; i < count && budget > 0; ++i) {
      size_t n = std::min(budget, iov[i].iov_len);
      std::memcpy(iov[i].iov_base, stream.data() + at, n);
      at += n;
      budget -= n;
      done += n;
    }
    return static_cast<ssize_t>(done);
  };
  return reader.Pump(read, h, drain);
}

PduReader Connected(bool hdgst = false, bool ddgst = false) {
  PduReader r;
  Negotiated n;
  n.header_digest = hdgst;
  n.data_digest = ddgst;
  n.rx_align = 4;
  r.SetNegotiated(n);
  return r;
}

TEST(TcpPdu, Crc32cKnownValue) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);  // the CRC-32C check value
  const char* a = "1234";
  const char* b = "56789";
  iovec iov[2] = {{const_cast<char*>(a), 4}, {const_cast<char*>(b), 5}};
  EXPECT_EQ(Crc32c(std::span<const iovec>(iov, 2)), 0xE3069283u);
}

TEST(TcpPdu, ResponsesArriveWhateverTheReadSizes) {
  for (size_t step : {1, 3, 7, 24, 1000}) {
    for (bool hdgst : {false, true}) {
      PduReader reader = Connected(hdgst);
      Recorder h;
      std::vector<uint8_t> s = Resp(1, hdgst);
      Append(s, Resp(2, hdgst));
      ASSERT_TRUE(Feed(reader, h, s, step)) << step;
      ASSERT_EQ(h.headers.size(), 2u);
      CapsuleResp r;
      std::memcpy(&r, h.headers[1].data(), sizeof(r));
      EXPECT_EQ(r.cqe.cid, 2);
      EXPECT_EQ(r.cqe.cdw0, 0xABCDu);
    }
  }
}

TEST(TcpPdu, C2HDataLandsInTheCommandBufferWithDigest) {
  std::vector<uint8_t> data(1000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7);
  for (size_t step : {1, 5, 4096}) {
    PduReader reader = Connected(false, true);
    Recorder h;
    ASSERT_TRUE(Feed(reader, h, C2H(2, 100, data, true, true), step));
    ASSERT_EQ(h.headers.size(), 1u);
    EXPECT_EQ(std::memcmp(h.buffers[2] + 100, data.data(), data.size()), 0);
  }
}

// A socket's reader takes whatever one read gives (many PDUs) and reads no
// more in that poll; what did not fit in its buffer is the next poll's.
TEST(TcpPdu, ManyPdusComeFromOneReadAndTheRestFromTheNextPoll) {
  std::vector<uint8_t> s;
  for (uint16_t cid = 0; cid < 10; ++cid) Append(s, Resp(cid, false));
  const size_t one = s.size() / 10;
  for (auto drain : {PduReader::Drain::kOneRead, PduReader::Drain::kUntilEagain}) {
    PduReader reader = Connected();
    Recorder h;
    int calls = 0;
    ASSERT_TRUE(Feed(reader, h, s, 1 << 20, false, drain, &calls));
    EXPECT_EQ(h.headers.size(), 10u);
    EXPECT_EQ(reader.reads(), 1u);
    EXPECT_EQ(calls, drain == PduReader::Drain::kOneRead ? 1 : 2);
    EXPECT_EQ(reader.copied_bytes(), 0u);
  }
  // More than the buffer holds: one poll parses the whole PDUs of its read.
  std::vector<uint8_t> big;
  const size_t count = PduReader::kBufferBytes / one + 100;
  for (size_t i = 0; i < count; ++i) Append(big, Resp(static_cast<uint16_t>(i), false));
  PduReader reader = Connected();
  Recorder h;
  int calls = 0;
  size_t at = 0;
  auto read = [&](const iovec* iov, int n) -> ssize_t {
    ++calls;
    EXPECT_EQ(n, 1);
    if (at == big.size()) return errno = EAGAIN, -1;
    const size_t take = std::min(iov[0].iov_len, big.size() - at);
    std::memcpy(iov[0].iov_base, big.data() + at, take);
    at += take;
    return static_cast<ssize_t>(take);
  };
  ASSERT_TRUE(reader.Pump(read, h, PduReader::Drain::kOneRead));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(h.headers.size(), PduReader::kBufferBytes / one);
  ASSERT_TRUE(reader.Pump(read, h, PduReader::Drain::kOneRead));
  EXPECT_EQ(h.headers.size(), count);
}

// A payload whose header is parsed is read straight into the command's
// buffer pieces (more pieces than one read takes, too); only what came in
// the same read as its header is copied from the receive buffer.
TEST(TcpPdu, LargePayloadGoesStraightIntoItsBufferPieces) {
  struct Large : PduReader::Handler {
    std::vector<uint8_t> buffer = std::vector<uint8_t>(256 * 1024);
    uint64_t pdus = 0;
    Status PlaceData(const DataHeader& h, std::vector<iovec>& out) override {
      const size_t piece = 2621;  // 101 pieces
      for (size_t at = 0; at < h.length; at += piece)
        out.push_back({buffer.data() + h.offset + at, std::min<size_t>(piece, h.length - at)});
      return Ok();
    }
    Status OnPdu(const ReceivedPdu&) override {
      ++pdus;
      return Ok();
    }
  };
  std::vector<uint8_t> data(256 * 1024);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 13 + (i >> 12));
  for (bool ddgst : {false, true}) {
    for (size_t step : {size_t{16384}, size_t{1} << 20}) {
      PduReader reader = Connected(false, ddgst);
      Large h;
      std::vector<uint8_t> s = C2H(0, 0, data, ddgst, true);
      Append(s, Resp(1, false));
      ASSERT_TRUE(Feed(reader, h, s, step)) << step;
      EXPECT_EQ(h.pdus, 2u);
      EXPECT_EQ(h.buffer, data) << step;
      if (step == 16384) {
        // The first read (header and 16,360 bytes), then direct reads, then
        // the last bytes (under kDirectThreshold) with what follows.
        EXPECT_LE(reader.copied_bytes(), 16384u + PduReader::kDirectThreshold);
      }
    }
  }
}

TEST(TcpPdu, DigestMismatchIsAnError) {
  PduReader reader = Connected(false, true);
  Recorder h;
  auto s = C2H(0, 0, std::vector<uint8_t>(64, 1), true, false);
  s.back() ^= 1;
  Status st = Feed(reader, h, s, 9);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EPROTO);
  EXPECT_NE(st.error().message.find("data digest"), std::string::npos) << st.error().message;
  // The reader stays failed.
  EXPECT_FALSE(Feed(reader, h, Resp(1, false), 24));

  PduReader r2 = Connected(true, false);
  auto resp = Resp(3, true);
  resp[25] ^= 0x10;
  st = Feed(r2, h, resp, 24);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("header digest"), std::string::npos) << st.error().message;
}

TEST(TcpPdu, MalformedHeadersNameTheField) {
  struct Case {
    const char* what;
    std::function<void(std::vector<uint8_t>&)> mutate;
    const char* expect;
  } cases[] = {
      {"hlen", [](auto& b) { b[2] = 40; }, "HLEN"},
      {"type", [](auto& b) { b[0] = 0x42; }, "type"},
      {"host-bound type", [](auto& b) { b[0] = pdu::kH2CData; }, "controller-to-host"},
      {"plen", [](auto& b) { b[4] = 8; }, "PLEN"},
      {"digest flag", [](auto& b) { b[1] |= pdu::kFlagHdgst; }, "HDGSTF"},
  };
  for (const Case& c : cases) {
    PduReader reader = Connected();
    Recorder h;
    auto s = Resp(1, false);
    c.mutate(s);
    s.resize(s.size() + 8, 0);  // a digest the bad header may claim
    Status st = Feed(reader, h, s, 24);
    ASSERT_FALSE(st) << c.what;
    EXPECT_EQ(st.error().code, EPROTO) << c.what;
    EXPECT_NE(st.error().message.find(c.expect), std::string::npos) << c.what << ": " << st.error().message;
    EXPECT_TRUE(h.headers.empty()) << c.what;
  }
  // C2HData whose DATAL disagrees with PLEN, or outside the command's buffer.
  PduReader reader = Connected();
  Recorder h;
  auto s = C2H(1, 0, std::vector<uint8_t>(32), false, false);
  s[16] = 33;  // DATAL
  EXPECT_FALSE(Feed(reader, h, s, 100));
  PduReader r2 = Connected();
  EXPECT_FALSE(Feed(r2, h, C2H(1, 4090, std::vector<uint8_t>(32), false, false), 100));
  PduReader r3 = Connected();
  EXPECT_FALSE(Feed(r3, h, C2H(9, 0, std::vector<uint8_t>(32), false, false), 100));
}

TEST(TcpPdu, ConnectionStateIsChecked) {
  PduReader fresh;  // before ICResp: no responses
  Recorder h;
  Status st = Feed(fresh, h, Resp(1, false), 24);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("before ICResp"), std::string::npos);
  IcResp ic;
  ic.ch = {pdu::kIcResp, 0, 128, 0, 128};
  PduReader r2;
  EXPECT_TRUE(Feed(r2, h, Bytes(&ic, sizeof(ic)), 50));
  PduReader r3 = Connected();
  EXPECT_FALSE(Feed(r3, h, Bytes(&ic, sizeof(ic)), 50));
}

TEST(TcpPdu, EndOfStreamMidPduIsConnectionReset) {
  PduReader reader = Connected();
  Recorder h;
  auto s = Resp(1, false);
  s.resize(10);
  Status st = Feed(reader, h, s, 4, /*eof=*/true);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ECONNRESET);
}

// The fuzz target's driver over mutated valid streams, in every build (the
// ASan build of CI turns any overflow into a failure).
TEST(TcpPdu, RandomStreamsNeverOverflow) {
  std::mt19937 rng(1234);
  uint64_t delivered = 0;
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> s{static_cast<uint8_t>(rng())};
    s[0] |= 4;
    const bool hd = (s[0] & 1) != 0, dd = (s[0] & 2) != 0;
    for (int k = 0; k < 3; ++k) {
      if (rng() % 2) Append(s, Resp(static_cast<uint16_t>(rng() % 4), hd));
      else Append(s, C2H(static_cast<uint16_t>(rng() % 4), rng() % 2048, std::vector<uint8_t>(rng() % 300 + 1), dd, false));
    }
    const int flips = static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) s[1 + rng() % (s.size() - 1)] = static_cast<uint8_t>(rng());
    if (rng() % 4 == 0) s.resize(1 + rng() % (s.size() - 1));
    delivered += RunPduStream(s.data(), s.size());
  }
  EXPECT_GT(delivered, 1000u);  // most unflipped streams parse
}

}  // namespace
}  // namespace nvmux::tcp
