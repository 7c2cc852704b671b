// TcpQueue against a scripted fake target on a loopback socket: the queue
// engine's capsules, R2T/H2CData and C2HData, completions written into a
// ring in plain memory (IOVA = address), and what a misbehaving target's
// PDUs do (an error on the connection, never a crash or an overflow).
#include "libclient/tcp/tcp_queue.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <optional>
#include <thread>

namespace nvmux::tcp {
namespace {

bool ReadAll(int fd, void* p, size_t n) {
  auto* b = static_cast<uint8_t*>(p);
  while (n > 0) {
    ssize_t r = ::read(fd, b, n);
    if (r <= 0) return false;
    b += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void WriteAll(int fd, const void* p, size_t n) {
  auto* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    ssize_t r = ::write(fd, b, n);
    if (r <= 0) return;
    b += r;
    n -= static_cast<size_t>(r);
  }
}

// Reads one host PDU (no digests): its header and data.
bool ReadPdu(int fd, std::vector<uint8_t>& header, std::vector<uint8_t>& data) {
  CommonHeader ch;
  if (!ReadAll(fd, &ch, sizeof(ch))) return false;
  header.resize(ch.hlen);
  std::memcpy(header.data(), &ch, sizeof(ch));
  if (!ReadAll(fd, header.data() + 8, ch.hlen - 8u)) return false;
  data.clear();
  if (ch.plen > ch.hlen) {
    std::vector<uint8_t> pad(ch.pdo > ch.hlen ? ch.pdo - ch.hlen : 0);
    if (!pad.empty() && !ReadAll(fd, pad.data(), pad.size())) return false;
    data.resize(ch.plen - std::max<uint32_t>(ch.hlen, ch.pdo));
    if (!ReadAll(fd, data.data(), data.size())) return false;
  }
  return true;
}

void SendResp(int fd, uint16_t cid, uint32_t cdw0 = 0, uint16_t status = 0) {
  CapsuleResp r;
  r.ch = {pdu::kCapsuleResp, 0, 24, 0, 24};
  r.cqe.cid = cid;
  r.cqe.cdw0 = cdw0;
  r.cqe.status = status;
  WriteAll(fd, &r, sizeof(r));
}

// A target: accepts one connection, answers ICReq and Connect (CNTLID 7),
// then runs `script` on the connection.
class FakeTarget {
 public:
  explicit FakeTarget(std::function<void(int)> script) {
    listen_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    EXPECT_EQ(::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(listen_, 1), 0);
    EXPECT_EQ(::getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    std::memcpy(&ep_.addr, &a, sizeof(a));
    ep_.addr_len = sizeof(a);
    ep_.text = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    thread_ = std::thread([this, script] {
      int fd = ::accept(listen_, nullptr, nullptr);
      if (fd < 0) return;
      IcReq req;
      if (ReadAll(fd, &req, sizeof(req))) {
        icreq_maxr2t = req.maxr2t;
        IcResp resp;
        resp.ch = {pdu::kIcResp, 0, 128, 0, 128};
        resp.maxh2cdata = 8192;
        WriteAll(fd, &resp, sizeof(resp));
        std::vector<uint8_t> h, d;
        if (ReadPdu(fd, h, d) && d.size() == 1024) {
          connect_subnqn = std::string(reinterpret_cast<char*>(d.data() + 256));
          SendResp(fd, reinterpret_cast<CapsuleCmd*>(h.data())->sqe.cid, 7);
          script(fd);
        }
      }
      ::shutdown(fd, SHUT_RDWR);
      ::close(fd);
    });
  }
  ~FakeTarget() {
    ::shutdown(listen_, SHUT_RDWR);
    thread_.join();
    ::close(listen_);
  }
  const Endpoint& endpoint() const { return ep_; }
  std::string connect_subnqn;
  uint32_t icreq_maxr2t = 0xFFFFFFFF;

 private:
  int listen_ = -1;
  Endpoint ep_;
  std::thread thread_;
};

struct Ring {
  spec::Sqe sq[8];
  spec::Cqe cq[8];
};

ConnectParams Params() {
  ConnectParams p;
  p.qid = 1;
  p.entries = 8;
  p.subnqn = "nqn.test:sub";
  p.hostnqn = "nqn.test:host";
  p.timeout = std::chrono::seconds(5);
  return p;
}

// `cmd` with an SGL Data Block over `data`.
spec::Sqe WithSgl(spec::Sqe cmd, void* data, uint32_t length) {
  spec::SglDescriptor d;
  d.address = reinterpret_cast<uint64_t>(data);
  d.length = length;
  cmd.set_psdt(1);
  std::memcpy(&cmd.prp1, static_cast<const void*>(&d), sizeof(d));
  return cmd;
}

// Submits `cmd` with an SGL Data Block over `data` at ring slot 0.
void Submit(TcpQueue& q, Ring& ring, spec::Sqe cmd, void* data, uint32_t length) {
  ring.sq[0] = WithSgl(cmd, data, length);
  *q.doorbells().sq_tail = 1;
  q.OnSqTail();
}

// Polls the queue (about 5 s at most) until `done` or the queue broke.
bool PollUntil(TcpQueue& q, const std::function<bool()>& done) {
  for (int i = 0; i < 5000 && !done() && !q.broken(); ++i) {
    q.OnCqEmpty();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

// Polls until the CQ slot 0 has phase 1 or the queue broke.
bool WaitCompletion(TcpQueue& q, Ring& ring) {
  return PollUntil(q, [&] { return (ring.cq[0].status & 1) != 0; });
}

TEST(TcpQueue, ConnectThenReadByC2HDataWithSuccess) {
  FakeTarget target([](int fd) {
    std::vector<uint8_t> h, d;
    if (!ReadPdu(fd, h, d)) return;
    const auto& cmd = reinterpret_cast<CapsuleCmd*>(h.data())->sqe;
    // Transport SGL for 512 bytes, no data in the capsule.
    if (cmd.opc != 0x02 || !d.empty()) return;
    DataHeader c2h;
    c2h.ch = {pdu::kC2HData, pdu::kFlagLastPdu | pdu::kFlagSuccess, 24, 24, 24 + 512};
    c2h.cccid = cmd.cid;
    c2h.length = 512;
    std::vector<uint8_t> payload(512);
    for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(i ^ 0x5A);
    WriteAll(fd, &c2h, sizeof(c2h));
    WriteAll(fd, payload.data(), payload.size());
    uint8_t b;
    (void)::read(fd, &b, 1);  // until the host closes
  });
  auto q = TcpQueue::Connect(target.endpoint(), Params());
  ASSERT_TRUE(q) << q.error().message;
  EXPECT_EQ((*q)->cntlid(), 7);
  EXPECT_EQ(target.connect_subnqn, "nqn.test:sub");
  Ring ring{};
  (*q)->AttachRing(ring.sq, ring.cq, 8);
  std::vector<uint8_t> buf(512);
  spec::Sqe read;
  read.opc = 0x02;
  read.cid = 5;
  Submit(**q, ring, read, buf.data(), 512);
  ASSERT_TRUE(WaitCompletion(**q, ring)) << ((*q)->broken() ? (*q)->error().message : "timeout");
  EXPECT_EQ(ring.cq[0].cid, 5);
  EXPECT_EQ(ring.cq[0].status >> 1, 0);
  EXPECT_EQ(ring.cq[0].sqhd, 1);
  EXPECT_EQ(ring.cq[0].sqid, 1);
  for (size_t i = 0; i < buf.size(); ++i) ASSERT_EQ(buf[i], static_cast<uint8_t>(i ^ 0x5A)) << i;
}

TEST(TcpQueue, LargeWriteAnswersR2TWithH2CDataInMaxH2CDataPieces) {
  std::vector<uint8_t> received;
  size_t pieces = 0;
  FakeTarget target([&](int fd) {
    std::vector<uint8_t> h, d;
    if (!ReadPdu(fd, h, d)) return;
    const auto cmd = reinterpret_cast<CapsuleCmd*>(h.data())->sqe;
    DataHeader r2t;
    r2t.ch = {pdu::kR2T, 0, 24, 0, 24};
    r2t.cccid = cmd.cid;
    r2t.ttag = 3;
    r2t.length = 20000;
    WriteAll(fd, &r2t, sizeof(r2t));
    while (received.size() < 20000) {
      if (!ReadPdu(fd, h, d) || h[0] != pdu::kH2CData) return;
      const auto& hd = *reinterpret_cast<DataHeader*>(h.data());
      if (hd.ttag != 3 || hd.offset != received.size() || hd.length != d.size()) return;
      received.insert(received.end(), d.begin(), d.end());
      ++pieces;
    }
    SendResp(fd, cmd.cid);
    uint8_t b;
    (void)::read(fd, &b, 1);
  });
  auto q = TcpQueue::Connect(target.endpoint(), Params());
  ASSERT_TRUE(q) << q.error().message;
  Ring ring{};
  (*q)->AttachRing(ring.sq, ring.cq, 8);
  std::vector<uint8_t> buf(20000);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<uint8_t>(i * 13);
  spec::Sqe write;
  write.opc = 0x01;
  write.cid = 2;
  Submit(**q, ring, write, buf.data(), 20000);
  ASSERT_TRUE(WaitCompletion(**q, ring)) << ((*q)->broken() ? (*q)->error().message : "timeout");
  EXPECT_EQ(ring.cq[0].cid, 2);
  EXPECT_EQ(received, buf);
  EXPECT_EQ(pieces, 3u);  // MAXH2CDATA 8192: 8192 + 8192 + 3616
}

// MAXR2T > 0: the target asks for a write's data with several R2Ts at once
// (as a target may, up to the host's MAXR2T + 1); the host answers each
// with H2CData carrying that R2T's tag and range, in MAXH2CDATA pieces.
TEST(TcpQueue, SeveralR2TsOutstandingAreEachAnsweredWithTheirOwnData) {
  std::vector<uint8_t> received(24000);
  std::vector<std::pair<uint16_t, uint32_t>> pdus;  // (ttag, offset) of each H2CData
  FakeTarget target([&](int fd) {
    std::vector<uint8_t> h, d;
    if (!ReadPdu(fd, h, d)) return;
    const auto cmd = reinterpret_cast<CapsuleCmd*>(h.data())->sqe;
    // Three R2Ts before any data: [0, 8000), [8000, 20000), [20000, 24000).
    const uint32_t ranges[3][2] = {{0, 8000}, {8000, 12000}, {20000, 4000}};
    for (uint16_t i = 0; i < 3; ++i) {
      DataHeader r2t;
      r2t.ch = {pdu::kR2T, 0, 24, 0, 24};
      r2t.cccid = cmd.cid;
      r2t.ttag = static_cast<uint16_t>(10 + i);
      r2t.offset = ranges[i][0];
      r2t.length = ranges[i][1];
      WriteAll(fd, &r2t, sizeof(r2t));
    }
    size_t got = 0;
    while (got < received.size()) {
      if (!ReadPdu(fd, h, d) || h[0] != pdu::kH2CData) return;
      const auto& hd = *reinterpret_cast<DataHeader*>(h.data());
      if (hd.length != d.size() || hd.offset + d.size() > received.size()) return;
      std::memcpy(received.data() + hd.offset, d.data(), d.size());
      pdus.emplace_back(hd.ttag, hd.offset);
      got += d.size();
    }
    SendResp(fd, cmd.cid);
    uint8_t b;
    (void)::read(fd, &b, 1);
  });
  auto q = TcpQueue::Connect(target.endpoint(), Params());
  ASSERT_TRUE(q) << q.error().message;
  EXPECT_EQ(target.icreq_maxr2t, TcpQueue::kMaxR2t - 1);
  Ring ring{};
  (*q)->AttachRing(ring.sq, ring.cq, 8);
  std::vector<uint8_t> buf(24000);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<uint8_t>(i * 7 + 1);
  spec::Sqe write;
  write.opc = 0x01;
  write.cid = 3;
  Submit(**q, ring, write, buf.data(), static_cast<uint32_t>(buf.size()));
  ASSERT_TRUE(WaitCompletion(**q, ring)) << ((*q)->broken() ? (*q)->error().message : "timeout");
  EXPECT_EQ(ring.cq[0].status >> 1, 0);
  EXPECT_EQ(received, buf);
  // MAXH2CDATA 8192: R2T 10 in one piece, R2T 11 in two (8192 + 3808), R2T 12 in one.
  std::vector<std::pair<uint16_t, uint32_t>> expect = {{10, 0}, {11, 8000}, {11, 16192}, {12, 20000}};
  EXPECT_EQ(pdus, expect);
}

// What a broken target sends ends the connection with EPROTO naming it.
// The host may consume completions, submit more and ring the CQ head
// doorbell only later (the core rings it once per ProcessCompletions, after
// the callbacks that submit): completions that find the CQ full by its
// doorbell wait for space, as a controller's do, instead of breaking the
// connection. (The old engine broke it: "completion queue overflow".)
TEST(TcpQueue, CompletionsWaitForCqSpaceUntilTheHeadDoorbellMoves) {
  FakeTarget target([](int fd) {
    std::vector<uint8_t> h, d;
    for (int round = 0; round < 2; ++round) {
      std::vector<uint16_t> cids;
      for (int i = 0; i < 6; ++i) {
        if (!ReadPdu(fd, h, d)) return;
        cids.push_back(reinterpret_cast<CapsuleCmd*>(h.data())->sqe.cid);
      }
      for (uint16_t cid : cids) SendResp(fd, cid);
    }
    uint8_t b;
    (void)::read(fd, &b, 1);
  });
  auto q = TcpQueue::Connect(target.endpoint(), Params());
  ASSERT_TRUE(q) << q.error().message;
  TcpQueue& queue = **q;
  Ring ring{};
  queue.AttachRing(ring.sq, ring.cq, 8);
  auto put = [&](uint32_t slot, uint16_t cid) {
    spec::Sqe flush;  // no data: an SGL of length 0
    flush.opc = 0x00;
    flush.cid = cid;
    flush.set_psdt(1);
    ring.sq[slot] = flush;
  };
  auto phase = [&](uint32_t slot) { return ring.cq[slot].status & 1; };
  for (uint16_t i = 0; i < 6; ++i) put(i, i);
  *queue.doorbells().sq_tail = 6;
  queue.OnSqTail();
  ASSERT_TRUE(PollUntil(queue, [&] { return phase(5) == 1; })) << (queue.broken() ? queue.error().message : "timeout");
  // Entries 0-5 consumed, the head doorbell not rung; six more commands.
  for (uint16_t i = 0; i < 6; ++i) put((6 + i) % 8, static_cast<uint16_t>(10 + i));
  *queue.doorbells().sq_tail = 4;
  queue.OnSqTail();
  // ICResp, the Connect response, then 12 responses.
  ASSERT_TRUE(PollUntil(queue, [&] { return queue.counters().pdus_received >= 14; }))
      << (queue.broken() ? queue.error().message : "timeout");
  ASSERT_FALSE(queue.broken()) << queue.error().message;
  EXPECT_EQ(phase(6), 1u);
  EXPECT_EQ(ring.cq[6].cid, 10);
  EXPECT_EQ(phase(7), 0u);  // the next entry would fill the CQ: held
  *queue.doorbells().cq_head = 6;
  queue.OnCqEmpty();
  EXPECT_EQ(phase(7), 1u);
  EXPECT_EQ(ring.cq[7].cid, 11);
  for (uint32_t slot = 0; slot < 4; ++slot) {
    EXPECT_EQ(phase(slot), 0u) << slot;  // the second pass through the ring
    EXPECT_EQ(ring.cq[slot].cid, 12 + slot) << slot;
  }
  EXPECT_FALSE(queue.broken());
}

// A batch of in-capsule writes: the first sendmsg stops after 48 KiB of
// capsules (the target starts on them while the host copies the rest), the
// rest goes in the next. 8 writes of 4 KiB (33 KiB) go in one call, 16
// (67 KiB) in two; every PDU arrives whole and in order.
TEST(TcpQueue, TheFirstSendOfABatchOfWritesStopsAfter48KiBOfCapsules) {
  constexpr uint32_t kEntries = 32;
  constexpr uint32_t kBlock = 4096;
  std::vector<uint8_t> first_bytes;  // of each write's data, in arrival order
  FakeTarget target([&](int fd) {
    std::vector<uint8_t> h, d;
    for (int batch : {8, 16}) {
      std::vector<uint16_t> cids;
      for (int i = 0; i < batch; ++i) {
        if (!ReadPdu(fd, h, d) || d.size() != kBlock) return;
        cids.push_back(reinterpret_cast<CapsuleCmd*>(h.data())->sqe.cid);
        first_bytes.push_back(d[0]);
      }
      for (uint16_t cid : cids) SendResp(fd, cid);
    }
    uint8_t b;
    (void)::read(fd, &b, 1);
  });
  ConnectParams params = Params();
  params.entries = kEntries;
  auto q = TcpQueue::Connect(target.endpoint(), params);
  ASSERT_TRUE(q) << q.error().message;
  TcpQueue& queue = **q;
  // Room for a whole batch in the socket: each call then sends all it holds.
  int sndbuf = 4 << 20;
  ASSERT_EQ(::setsockopt(queue.socket_fd(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
  queue.set_in_capsule_limit(8192);
  std::vector<spec::Sqe> sq(kEntries);
  std::vector<spec::Cqe> cq(kEntries);
  queue.AttachRing(sq.data(), cq.data(), kEntries);
  std::vector<uint8_t> data(size_t{24} * kBlock);
  for (size_t i = 0; i < 24; ++i) std::fill_n(data.begin() + static_cast<ptrdiff_t>(i * kBlock), kBlock, uint8_t(i + 1));
  uint32_t tail = 0;
  auto send_batch = [&](uint32_t count) {
    const uint64_t calls = queue.counters().send_calls;
    for (uint32_t i = 0; i < count; ++i, ++tail) {
      spec::Sqe write;
      write.opc = 0x01;
      write.cid = static_cast<uint16_t>(tail);
      sq[tail] = WithSgl(write, data.data() + size_t{tail} * kBlock, kBlock);
    }
    *queue.doorbells().sq_tail = tail;
    queue.OnSqTail();
    return queue.counters().send_calls - calls;
  };
  auto wait_completed = [&](uint32_t slot) { return PollUntil(queue, [&] { return (cq[slot].status & 1) != 0; }); };
  EXPECT_EQ(send_batch(8), 1u);
  ASSERT_TRUE(wait_completed(7)) << (queue.broken() ? queue.error().message : "timeout");
  *queue.doorbells().cq_head = 8;
  EXPECT_EQ(send_batch(16), 2u);  // 12 capsules (50,016 bytes), then 4
  ASSERT_TRUE(wait_completed(23)) << (queue.broken() ? queue.error().message : "timeout");
  EXPECT_EQ(queue.counters().in_capsule_writes, 24u);
  std::vector<uint8_t> expect(24);
  for (size_t i = 0; i < 24; ++i) expect[i] = static_cast<uint8_t>(i + 1);
  EXPECT_EQ(first_bytes, expect);
  EXPECT_FALSE(queue.broken());
}

TEST(TcpQueue, MisbehavingTargetBreaksTheConnection) {
  struct Case {
    const char* name;
    std::function<void(int, uint16_t)> send;
    const char* expect;
  } cases[] = {
      {"R2T beyond the data",
       [](int fd, uint16_t cid) {
         DataHeader r2t;
         r2t.ch = {pdu::kR2T, 0, 24, 0, 24};
         r2t.cccid = cid;
         r2t.offset = 256;
         r2t.length = 512;
         WriteAll(fd, &r2t, sizeof(r2t));
       },
       "R2T for bytes 256+512"},
      {"R2Ts asking for the same bytes twice",
       [](int fd, uint16_t cid) {
         DataHeader r2t;
         r2t.ch = {pdu::kR2T, 0, 24, 0, 24};
         r2t.cccid = cid;
         r2t.length = 256;
         WriteAll(fd, &r2t, sizeof(r2t));
         r2t.ttag = 1;
         r2t.offset = 128;  // overlaps the first: the next must start at 256
         WriteAll(fd, &r2t, sizeof(r2t));
       },
       "must start at 256"},
      {"response for an unknown command",
       [](int fd, uint16_t) { SendResp(fd, 77); }, "command id 77, which is not outstanding"},
      {"an undefined PDU type",
       [](int fd, uint16_t) {
         uint8_t junk[24] = {0x42, 0, 24, 0, 24};
         WriteAll(fd, junk, sizeof(junk));
       },
       "PDU"},
      {"C2HTermReq",
       [](int fd, uint16_t) {
         TermReq t;
         t.ch = {pdu::kC2HTermReq, 0, 24, 0, 24};
         t.fes = 2;
         WriteAll(fd, &t, sizeof(t));
       },
       "terminated the connection"},
      {"a closed connection", [](int fd, uint16_t) { ::shutdown(fd, SHUT_RDWR); }, "closed the connection"},
  };
  for (const Case& c : cases) {
    FakeTarget target([&](int fd) {
      std::vector<uint8_t> h, d;
      if (!ReadPdu(fd, h, d)) return;
      c.send(fd, reinterpret_cast<CapsuleCmd*>(h.data())->sqe.cid);
      uint8_t b;
      (void)::read(fd, &b, 1);
    });
    auto q = TcpQueue::Connect(target.endpoint(), Params());
    ASSERT_TRUE(q) << c.name << ": " << q.error().message;
    Ring ring{};
    (*q)->AttachRing(ring.sq, ring.cq, 8);
    std::vector<uint8_t> buf(512);
    spec::Sqe write;
    write.opc = 0x01;
    write.cid = 4;
    Submit(**q, ring, write, buf.data(), 512);
    EXPECT_FALSE(WaitCompletion(**q, ring)) << c.name;
    ASSERT_TRUE((*q)->broken()) << c.name;
    EXPECT_NE((*q)->error().message.find(c.expect), std::string::npos) << c.name << ": " << (*q)->error().message;
    (*q)->Close();
  }
}

TEST(TcpQueue, DisconnectSendsTheFabricsCommandThenCloses) {
  uint8_t fctype = 0xFF;
  bool closed = false;
  std::optional<FakeTarget> target;
  target.emplace([&](int fd) {
    std::vector<uint8_t> h, d;
    if (!ReadPdu(fd, h, d)) return;
    const auto& cmd = reinterpret_cast<CapsuleCmd*>(h.data())->sqe;
    if (cmd.opc != 0x7F) return;
    fctype = static_cast<uint8_t>(cmd.nsid & 0xFF);
    SendResp(fd, cmd.cid);
    uint8_t b;
    closed = ::read(fd, &b, 1) == 0;
  });
  auto q = TcpQueue::Connect(target->endpoint(), Params());
  ASSERT_TRUE(q) << q.error().message;
  (*q)->Disconnect();
  EXPECT_FALSE((*q)->open());
  target.reset();  // joins its thread: the fields are final
  EXPECT_EQ(fctype, 0x08);
  EXPECT_TRUE(closed);
}

TEST(TcpQueue, ARefusedConnectIsDecoded) {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::listen(s, 1), 0);
  ASSERT_EQ(::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len), 0);
  std::thread t([s] {
    int fd = ::accept(s, nullptr, nullptr);
    IcReq req;
    ReadAll(fd, &req, sizeof(req));
    IcResp resp;
    resp.ch = {pdu::kIcResp, 0, 128, 0, 128};
    resp.maxh2cdata = 8192;
    WriteAll(fd, &resp, sizeof(resp));
    std::vector<uint8_t> h, d;
    ReadPdu(fd, h, d);
    // Connect Invalid Host: SCT 1, SC 84h.
    SendResp(fd, reinterpret_cast<CapsuleCmd*>(h.data())->sqe.cid, 0, static_cast<uint16_t>((1 << 9) | (0x84 << 1)));
    uint8_t b;
    (void)::read(fd, &b, 1);
    ::close(fd);
  });
  Endpoint ep;
  std::memcpy(&ep.addr, &a, sizeof(a));
  ep.addr_len = sizeof(a);
  ep.text = "here";
  auto q = TcpQueue::Connect(ep, Params());
  t.join();
  ::close(s);
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error().code, EACCES);
  EXPECT_NE(q.error().message.find("invalid host"), std::string::npos) << q.error().message;
  EXPECT_NE(q.error().message.find("nqn.test:host"), std::string::npos) << q.error().message;
}

}  // namespace
}  // namespace nvmux::tcp
