#include "libclient/tcp/tcp_queue.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "nvmux/spec/nvme.h"
#include "shm/base/format.h"
#include "shm/base/log.h"

namespace nvmux::tcp {
namespace {

constexpr uint16_t kInternalCid = 0xFFFE;  // Connect, Property Get/Set (core cids stay below 4096)
constexpr uint8_t kFabricsOpcode = 0x7F;
constexpr uint8_t kFctypeConnect = 0x01;
constexpr uint32_t kAdminInCapsule = 8192;  // the admin queue's in-capsule data (as Linux and SPDK use)
constexpr uint32_t kMaxDescriptors = 4096;  // SGL descriptors walked per command, at most
// The first sendmsg of a flush carries at most this many bytes of command
// capsules with in-capsule data; the rest follows in the next calls. A
// batch of writes is one long copy into the socket, and the target sat idle
// until its first segment came: now it starts on the first twelve 4 KiB
// writes while the host copies the rest. Against SPDK's target, batches
// alternating with and without it in one run (medians of 5-6 runs), 4 KiB
// randwrite: QD16 +8 %, QD32 +3 %, QD64 and QD128 within 1 %
// (BENCHMARKS.md). Capping every call instead cost up to 5 % at QD64-128,
// and 16 or 32 KiB gained less. H2CData (R2T) PDUs are not counted: they
// go out together, as before.
constexpr size_t kFirstSendCapsuleData = 48 * 1024;

constexpr uint8_t kSglInCapsule = 0x01;   // Data Block, subtype Offset
constexpr uint8_t kSglTransport = 0x5A;   // Transport Data Block, subtype Transport specific

spec::Cqe StatusCqe(uint16_t cid, uint8_t sct, uint8_t sc) {
  spec::Cqe c;
  c.cid = cid;
  c.status = static_cast<uint16_t>((sct << 9) | (sc << 1));
  return c;
}

void Slice(std::span<const iovec> iov, uint64_t offset, uint64_t length, std::vector<iovec>& out) {
  for (const iovec& v : iov) {
    if (length == 0) break;
    if (offset >= v.iov_len) {
      offset -= v.iov_len;
      continue;
    }
    size_t take = static_cast<size_t>(std::min<uint64_t>(v.iov_len - offset, length));
    out.push_back({static_cast<uint8_t*>(v.iov_base) + offset, take});
    length -= take;
    offset = 0;
  }
}

}  // namespace

std::string ConnectStatusText(const spec::Cqe& c) {
  std::string s = "status " + std::to_string(c.sct()) + "/" + Hex(c.sc(), 2);
  if (c.sct() == 1) {
    switch (c.sc()) {
      case 0x80: return s + " (incompatible format)";
      case 0x81: return s + " (controller busy)";
      case 0x82: {
        // CDW0: IPO bits 15:0, IATTR bits 23:16 (bit 16 set: the offset is
        // in the Connect data, else in the command).
        const bool data = ((c.cdw0 >> 16) & 1) != 0;
        const unsigned ipo = c.cdw0 & 0xFFFF;
        std::string field = data ? (ipo == 256 ? "subnqn" : ipo == 512 ? "hostnqn" : ipo == 16 ? "cntlid"
                                                                                                : "data byte " + std::to_string(ipo))
                                 : (ipo == 42 ? "qid" : ipo == 44 ? "sqsize" : "command byte " + std::to_string(ipo));
        return s + " (invalid parameters: " + field + ")";
      }
      case 0x83: return s + " (restart discovery)";
      case 0x84: return s + " (invalid host: this host NQN is not allowed to reach the subsystem)";
    }
  }
  if (c.sct() == 0 && c.sc() == 0x02) return s + " (invalid field)";
  return s;
}

TcpQueue::~TcpQueue() = default;

Result<std::unique_ptr<TcpQueue>> TcpQueue::Connect(const Endpoint& ep, const ConnectParams& params) {
  auto q = std::make_unique<TcpQueue>(ep, params);
  NVMUX_TRY(q->Open(params));
  return q;
}

void TcpQueue::Close() {
  fd_.Reset();
  held_.clear();
  readiness_.Reset();
  tx_.clear();
  for (Command& c : commands_) c.active = false;
  internal_.active = false;
  wire_outstanding_ = 0;
  r2t_writes_ = 0;
}

void TcpQueue::Disconnect() {
  if (fd_.valid() && !broken() && params_.qid != 0) {
    spec::Sqe cmd;
    cmd.opc = kFabricsOpcode;
    cmd.nsid = 0x08;  // FCTYPE Disconnect; RECFMT 0
    const Nanos saved = params_.timeout;
    params_.timeout = std::min<Nanos>(saved, std::chrono::seconds(1));
    auto c = Execute(cmd);
    params_.timeout = saved;
    if (!c) NVMUX_LOG(kInfo, "NVMe/TCP %s queue %u: Disconnect: %s", ep_.text.c_str(), params_.qid, c.error().message.c_str());
    else if (c->sct() == 0 && c->sc() == 0x01)  // invalid opcode: SPDK's target, for one
      NVMUX_LOG(kDebug, "NVMe/TCP %s queue %u: the target does not implement Disconnect", ep_.text.c_str(), params_.qid);
    else if (c->sct() != 0 || c->sc() != 0)
      NVMUX_LOG(kInfo, "NVMe/TCP %s queue %u: Disconnect refused: %s", ep_.text.c_str(), params_.qid,
                ConnectStatusText(*c).c_str());
    else
      NVMUX_LOG(kDebug, "NVMe/TCP %s queue %u: disconnected", ep_.text.c_str(), params_.qid);
  }
  Close();
}

Status TcpQueue::Open(const ConnectParams& params) {
  Close();
  params_ = params;
  error_ = Ok();
  reader_ = PduReader{};
  negotiated_ = Negotiated{};
  icresp_ = false;
  internal_done_.reset();
  const Endpoint& ep = ep_;
  int s = ::socket(ep.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) return ErrnoError("NVMe/TCP: socket for " + ep.text);
  UniqueFd fd(s);
  int one = 1;
  (void)::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  const int64_t deadline = MonotonicNanos() + params.timeout.count();
  if (::connect(s, reinterpret_cast<const sockaddr*>(&ep.addr), ep.addr_len) != 0) {
    if (errno != EINPROGRESS) {
      int e = errno;
      return Fail(e, "NVMe/TCP: cannot connect to " + ep.text + ": " + std::strerror(e));
    }
    pollfd p{s, POLLOUT, 0};
    int left_ms = static_cast<int>(std::max<int64_t>(0, (deadline - MonotonicNanos()) / 1'000'000));
    int r = ::poll(&p, 1, left_ms);
    if (r == 0)
      return Fail(ETIMEDOUT, "NVMe/TCP: cannot connect to " + ep.text + ": no answer within " +
                                 std::to_string(params.timeout.count() / 1'000'000) + " ms (connect timeout)");
    int err = 0;
    socklen_t len = sizeof(err);
    if (r < 0 || ::getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) return Fail(err, "NVMe/TCP: cannot connect to " + ep.text + ": " + std::strerror(err));
  }
  // Readiness through epoll: a poll that finds nothing then costs no
  // socket lock, which the target's kernel path needs to deliver (a recv
  // that finds nothing takes it, and at high queue depth most polls do).
  readiness_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  if (!readiness_.valid() || ::epoll_ctl(readiness_.get(), EPOLL_CTL_ADD, s, &ev) != 0)
    return ErrnoError("NVMe/TCP: epoll for " + ep.text);
  fd_ = std::move(fd);
  Status st = Handshake();
  if (!st) {
    Close();
    error_ = st;
    return st;
  }
  return Ok();
}

Status TcpQueue::WaitFor(const std::function<bool()>& done, const char* what) {
  const int64_t deadline = MonotonicNanos() + params_.timeout.count();
  for (;;) {
    if (done()) return Ok();
    if (broken()) return Fail(error().code, std::string(what) + ": " + error().message);
    int64_t left = deadline - MonotonicNanos();
    if (left <= 0)
      return Fail(ETIMEDOUT, std::string(what) + ": no answer from " + ep_.text + " within " +
                                 std::to_string(params_.timeout.count() / 1'000'000) + " ms");
    pollfd p{fd_.get(), static_cast<short>(POLLIN | (tx_.empty() ? 0 : POLLOUT)), 0};
    (void)::poll(&p, 1, static_cast<int>(std::min<int64_t>(left / 1'000'000 + 1, 100)));
    if (Status f = Flush(); !f) Break(f.error());
    Receive();
  }
}

Status TcpQueue::Handshake() {
  TxItem& item = tx_.Push();
  IcReq req;
  req.ch = {pdu::kIcReq, 0, 128, 0, 128};
  req.hpda = 0;  // 4-byte alignment of C2H data is enough: it is copied or read into the buffers
  req.dgst = static_cast<uint8_t>((params_.header_digest ? pdu::kDigestHeader : 0) |
                                  (params_.data_digest ? pdu::kDigestData : 0));
  req.maxr2t = kMaxR2t - 1;  // 0's based: a controller may ask for a large write's data in pieces at once
  std::memcpy(item.header, &req, sizeof(req));
  item.header_len = sizeof(req);
  item.total = sizeof(req);
  counters_.pdus_sent++;
  const std::string where = "NVMe/TCP " + ep_.text + " queue " + std::to_string(params_.qid);
  NVMUX_TRY(WaitFor([this] { return icresp_; }, (where + ": ICReq").c_str()));
  reader_.SetNegotiated(negotiated_);

  // Fabrics Connect: SQSIZE 0's based; the data in the capsule.
  spec::Sqe cmd;
  cmd.opc = kFabricsOpcode;
  cmd.nsid = kFctypeConnect;  // FCTYPE is byte 4
  cmd.cdw10 = static_cast<uint32_t>(params_.qid) << 16;  // RECFMT 0
  cmd.cdw11 = static_cast<uint32_t>(params_.entries - 1u);  // SQSIZE; CATTR 0
  cmd.cdw12 = params_.qid == 0 ? params_.kato_ms : 0;
  uint8_t data[1024] = {};
  std::memcpy(data, params_.hostid, 16);
  std::memcpy(data + 16, &params_.cntlid, 2);
  std::memcpy(data + 256, params_.subnqn.data(), std::min<size_t>(params_.subnqn.size(), 255));
  std::memcpy(data + 512, params_.hostnqn.data(), std::min<size_t>(params_.hostnqn.size(), 255));
  auto c = Execute(cmd, {}, std::span<uint8_t>(data, sizeof(data)));
  if (!c) return Fail(c.error().code, where + ": Fabrics Connect: " + c.error().message);
  if (c->sct() != 0 || c->sc() != 0) {
    int code = c->sct() == 1 && c->sc() == 0x84 ? EACCES : c->sct() == 1 && c->sc() == 0x82 ? EINVAL : ECONNABORTED;
    return Fail(code, where + ": Fabrics Connect to subsystem '" + params_.subnqn + "' as host '" + params_.hostnqn +
                          "' refused: " + ConnectStatusText(*c));
  }
  cntlid_ = static_cast<uint16_t>(c->cdw0 & 0xFFFF);
  // The controller's queue holds SQSIZE (entries - 1) commands: the ring's
  // keep one slot free for an internal command (Property Get/Set, Disconnect).
  wire_limit_ = std::max(1u, params_.entries - 2u);
  in_capsule_ = params_.qid == 0 ? kAdminInCapsule : 0;
  NVMUX_LOG(kInfo, "%s: connected (cntlid %u, digests %s/%s, MAXH2CDATA %u)", where.c_str(), cntlid_,
            negotiated_.header_digest ? "header" : "-", negotiated_.data_digest ? "data" : "-",
            negotiated_.maxh2cdata);
  return Ok();
}

void TcpQueue::AttachRing(spec::Sqe* sq, spec::Cqe* cq, uint32_t entries) {
  sq_ = sq;
  cq_ = cq;
  entries_ = entries;
  std::atomic_ref<uint32_t>(*sq_db_).store(0, std::memory_order_relaxed);
  std::atomic_ref<uint32_t>(*cq_db_).store(0, std::memory_order_relaxed);
  sq_head_ = cq_tail_ = 0;
  phase_ = 1;
}

void TcpQueue::Break(Error e) {
  if (broken()) return;
  NVMUX_LOG(kError, "NVMe/TCP %s queue %u: %s", ep_.text.c_str(), params_.qid, e.message.c_str());
  error_ = std::move(e);
  fd_.Reset();
  readiness_.Reset();
  tx_.clear();
}

TcpQueue::Command& TcpQueue::Slot(uint16_t cid) {
  if (cid == kInternalCid) return internal_;  // not in the table: it would grow to 64 Ki slots
  if (cid >= commands_.size()) commands_.resize(size_t{cid} + 1);
  return commands_[cid];
}

TcpQueue::Command* TcpQueue::Find(uint16_t cid) {
  if (cid == kInternalCid) return internal_.active ? &internal_ : nullptr;
  return cid < commands_.size() && commands_[cid].active ? &commands_[cid] : nullptr;
}

uint32_t TcpQueue::DataOffset(uint32_t header_len) const {
  uint32_t head = header_len + (negotiated_.header_digest ? 4u : 0u);
  uint32_t align = tx_align_;
  return align <= 4 ? head : (head + align - 1) / align * align;
}

TcpQueue::TxItem& TcpQueue::TxRing::Push() {
  if (count_ == items_.size()) {
    std::vector<TxItem> grown(std::max<size_t>(8, items_.size() * 2));
    for (size_t i = 0; i < count_; ++i) grown[i] = std::move(at(i));
    items_ = std::move(grown);
    head_ = 0;
  }
  TxItem& item = items_[(head_ + count_) % items_.size()];
  ++count_;
  item.header_len = 0;
  item.data.clear();
  item.digest = 0;
  item.has_digest = false;
  item.sent = 0;
  item.total = 0;
  item.r2t_done_cid = -1;
  item.capsule_data = false;
  return item;
}

Status TcpQueue::DataIov(const spec::Sqe& sqe, std::vector<iovec>& iov, uint32_t& length) {
  iov.clear();
  length = 0;
  if (sqe.psdt() == spec::kPsdtPrp) {
    if (sqe.prp1 != 0)
      return Fail(EINVAL, "command " + Hex(sqe.opc, 2) + " describes its data with PRPs; NVMe/TCP needs SGLs");
    return Ok();
  }
  if (sqe.psdt() != 1) return Fail(EINVAL, "command " + Hex(sqe.opc, 2) + ": metadata SGLs are not carried over NVMe/TCP");
  spec::SglDescriptor d;
  std::memcpy(static_cast<void*>(&d), &sqe.prp1, sizeof(d));
  uint64_t total = 0;
  uint32_t walked = 0;
  const spec::SglDescriptor* list = nullptr;
  uint32_t list_left = 0;
  for (;;) {
    const uint8_t type = d.type();
    if (type == spec::sgl::kDataBlock) {
      if (d.length > 0) {
        iov.push_back({reinterpret_cast<void*>(d.address), d.length});  // IOVA = virtual address
        total += d.length;
      }
    } else if (type == spec::sgl::kSegment || type == spec::sgl::kLastSegment) {
      if (d.length == 0 || d.length % sizeof(spec::SglDescriptor) != 0 || list_left != 0)
        return Fail(EINVAL, "command " + Hex(sqe.opc, 2) + ": malformed SGL segment descriptor");
      list = reinterpret_cast<const spec::SglDescriptor*>(d.address);
      list_left = d.length / static_cast<uint32_t>(sizeof(spec::SglDescriptor));
    } else {
      return Fail(EINVAL, "command " + Hex(sqe.opc, 2) + ": SGL descriptor type " + std::to_string(type) +
                              " is not carried over NVMe/TCP");
    }
    if (list_left == 0) break;
    if (++walked > kMaxDescriptors)
      return Fail(EINVAL, "command " + Hex(sqe.opc, 2) + ": more than " + std::to_string(kMaxDescriptors) + " SGL descriptors");
    d = *list++;
    --list_left;
  }
  if (total > UINT32_MAX) return Fail(EINVAL, "command " + Hex(sqe.opc, 2) + ": more than 4 GiB of data");
  length = static_cast<uint32_t>(total);
  return Ok();
}

bool TcpQueue::Send(Command& cmd, uint16_t cid) {
  TxItem& item = tx_.Push();
  CapsuleCmd hdr;
  hdr.sqe = cmd.sqe;
  hdr.sqe.cid = cid;
  hdr.sqe.flags = static_cast<uint8_t>((hdr.sqe.flags & 0x3F) | 0x40);  // PSDT 01b: SGL
  spec::SglDescriptor d;
  const bool in_capsule = cmd.to_controller && cmd.length > 0 && (cmd.internal || cmd.length <= in_capsule_);
  cmd.by_r2t = cmd.to_controller && cmd.length > 0 && !in_capsule;
  if (cmd.by_r2t) r2t_writes_++;
  d.length = cmd.length;
  d.type_subtype = in_capsule ? kSglInCapsule : kSglTransport;
  std::memcpy(&hdr.sqe.prp1, static_cast<const void*>(&d), sizeof(d));
  const uint8_t hd = negotiated_.header_digest ? pdu::kFlagHdgst : 0;
  const uint8_t dd = negotiated_.data_digest && in_capsule ? pdu::kFlagDdgst : 0;
  const uint32_t pdo = in_capsule ? DataOffset(sizeof(CapsuleCmd)) : 0;
  const uint32_t head = in_capsule ? pdo : sizeof(CapsuleCmd) + (hd ? 4u : 0u);
  hdr.ch = {pdu::kCapsuleCmd, static_cast<uint8_t>(hd | dd), sizeof(CapsuleCmd), static_cast<uint8_t>(pdo),
            head + (in_capsule ? cmd.length + (dd ? 4u : 0u) : 0u)};
  std::memcpy(item.header, &hdr, sizeof(hdr));
  if (hd) {
    uint32_t crc = Crc32c(&hdr, sizeof(hdr));
    std::memcpy(item.header + sizeof(hdr), &crc, 4);
  }
  item.header_len = head;
  if (in_capsule) {
    if (!cmd.internal) counters_.in_capsule_writes++;  // not the Fabrics Connect
    item.data = cmd.iov;
    item.capsule_data = true;
    if (dd) {
      item.digest = Crc32c(std::span<const iovec>(item.data));
      item.has_digest = true;
    }
  }
  item.total = hdr.ch.plen;
  counters_.pdus_sent++;
  return true;
}

void TcpQueue::QueueData(uint16_t cid, uint16_t ttag, uint32_t offset, uint32_t length, const Command& cmd) {
  // One R2T's range in H2CData PDUs of at most MAXH2CDATA bytes each.
  const uint32_t chunk_max = std::max<uint32_t>(negotiated_.maxh2cdata, 4096);
  for (uint32_t done = 0; done < length;) {
    const uint32_t n = std::min(chunk_max, length - done);
    TxItem& item = tx_.Push();
    DataHeader h;
    const uint8_t hd = negotiated_.header_digest ? pdu::kFlagHdgst : 0;
    const uint8_t dd = negotiated_.data_digest ? pdu::kFlagDdgst : 0;
    const uint32_t pdo = DataOffset(sizeof(DataHeader));
    const bool last = done + n == length;
    h.ch = {pdu::kH2CData, static_cast<uint8_t>(hd | dd | (last ? pdu::kFlagLastPdu : 0)), sizeof(DataHeader),
            static_cast<uint8_t>(pdo), pdo + n + (dd ? 4u : 0u)};
    h.cccid = cid;
    h.ttag = ttag;
    h.offset = offset + done;
    h.length = n;
    std::memcpy(item.header, &h, sizeof(h));
    if (hd) {
      uint32_t crc = Crc32c(&h, sizeof(h));
      std::memcpy(item.header + sizeof(h), &crc, 4);
    }
    item.header_len = pdo;
    Slice(cmd.iov, h.offset, n, item.data);
    if (dd) {
      item.digest = Crc32c(std::span<const iovec>(item.data));
      item.has_digest = true;
    }
    item.total = h.ch.plen;
    if (last) item.r2t_done_cid = cid;
    counters_.h2c_data++;
    counters_.pdus_sent++;
    done += n;
  }
}

Result<spec::Cqe> TcpQueue::Execute(spec::Sqe cmd, std::span<uint8_t> out_data, std::span<uint8_t> in_data) {
  if (broken()) return Fail(ENXIO, error().message);
  Command& c = Slot(kInternalCid);
  if (c.active) return Fail(EBUSY, "NVMe/TCP: an internal command is already outstanding");
  c = Command{};
  c.active = true;
  c.internal = true;
  c.sqe = cmd;
  if (!in_data.empty()) {
    c.to_controller = true;
    c.iov.push_back({in_data.data(), in_data.size()});
    c.length = static_cast<uint32_t>(in_data.size());
  } else if (!out_data.empty()) {
    c.iov.push_back({out_data.data(), out_data.size()});
    c.length = static_cast<uint32_t>(out_data.size());
  }
  internal_done_.reset();
  Send(c, kInternalCid);
  Status st = WaitFor([this] { return internal_done_.has_value(); }, "NVMe/TCP command");
  Slot(kInternalCid).active = false;
  if (!st) {
    if (st.error().code == ETIMEDOUT) Break(st.error());  // a late answer would confuse the queue
    return st.error();
  }
  return *internal_done_;
}

void TcpQueue::Complete(const spec::Cqe& cqe) {
  if (cq_ == nullptr) return;
  // A full CQ (by its head doorbell) holds the completion back until the
  // host rings the head, as a controller does (NVMe base spec: no entry is
  // posted to a full CQ). The host may legally have consumed entries
  // without ringing yet and submitted more, so "full" is not an error.
  if (!held_.empty() || !PostCompletion(cqe)) held_.push_back(cqe);
}

bool TcpQueue::PostCompletion(const spec::Cqe& cqe) {
  const uint32_t next = cq_tail_ + 1 == entries_ ? 0 : cq_tail_ + 1;
  if (next == std::atomic_ref<uint32_t>(*cq_db_).load(std::memory_order_acquire) % entries_) return false;
  spec::Cqe* slot = &cq_[cq_tail_];
  slot->cdw0 = cqe.cdw0;
  slot->cdw1 = cqe.cdw1;
  slot->sqhd = static_cast<uint16_t>(sq_head_);
  slot->sqid = params_.qid;
  slot->cid = cqe.cid;
  // The phase tag last: the core reads the rest only after seeing it.
  std::atomic_ref<uint16_t>(slot->status).store(static_cast<uint16_t>((cqe.status & ~1u) | phase_),
                                                std::memory_order_release);
  cq_tail_ = next;
  if (next == 0) phase_ ^= 1;
  return true;
}

void TcpQueue::PostHeld() {
  while (!held_.empty() && PostCompletion(held_.front())) held_.pop_front();
}

void TcpQueue::TakeNewEntries() {
  if (sq_ == nullptr || broken()) return;
  // Acquire: the entries before the tail (written by any process of a
  // group, for the shared admin queue) are visible once the tail is.
  const uint32_t tail = std::atomic_ref<uint32_t>(*sq_db_).load(std::memory_order_acquire);
  if (tail >= entries_) {
    Break(Fail(EINVAL, "SQ tail doorbell " + std::to_string(tail) + " beyond the ring"));
    return;
  }
  while (sq_head_ != tail && wire_outstanding_ < wire_limit_) {
    std::atomic_thread_fence(std::memory_order_acquire);
    const spec::Sqe sqe = sq_[sq_head_];
    sq_head_ = sq_head_ + 1 == entries_ ? 0 : sq_head_ + 1;
    if (intercept_) {
      if (std::optional<spec::Cqe> local = intercept_(sqe)) {
        spec::Cqe c = *local;
        c.cid = sqe.cid;
        Complete(c);
        continue;
      }
    }
    uint32_t length = 0;
    Status iov = DataIov(sqe, scratch_iov_, length);
    Command& c = Slot(sqe.cid);
    if (!iov || c.active || sqe.cid == kInternalCid) {
      NVMUX_LOG(kWarning, "NVMe/TCP queue %u: command %u not sent: %s", params_.qid, sqe.cid,
                iov ? "its command id is already outstanding" : iov.error().message.c_str());
      Complete(StatusCqe(sqe.cid, 0, 0x02));  // invalid field
      continue;
    }
    c.active = true;
    c.internal = false;
    c.sqe = sqe;
    c.length = length;
    c.iov.swap(scratch_iov_);  // both keep their capacity: no allocation per command
    c.to_controller = (sqe.opc & 0x3) == 0x1;  // data transfer bits: host to controller
    c.r2t_next = 0;
    c.r2t_pending = 0;
    Send(c, sqe.cid);
    wire_outstanding_++;
  }
}

Status TcpQueue::Flush() {
  size_t capsule_limit = kFirstSendCapsuleData;
  while (!tx_.empty() && !broken()) {
    iovec iov[64];
    int count = 0;
    size_t capsule_data = 0;
    for (size_t i = 0; i < tx_.size(); ++i) {
      TxItem& item = tx_.at(i);
      if (item.capsule_data) capsule_data += item.total - item.sent;
      size_t skip = item.sent;
      auto add = [&](void* base, size_t len) {
        if (count == 64) return;
        if (skip >= len) {
          skip -= len;
          return;
        }
        iov[count++] = {static_cast<uint8_t*>(base) + skip, len - skip};
        skip = 0;
      };
      add(item.header, item.header_len);
      for (const iovec& v : item.data) add(v.iov_base, v.iov_len);
      if (item.has_digest) add(&item.digest, 4);
      if (count == 64 || capsule_data >= capsule_limit) break;
    }
    capsule_limit = SIZE_MAX;
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(count);
    ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Ok();
      if (errno == EINTR) continue;
      return ErrnoError("NVMe/TCP: sending to " + ep_.text);
    }
    counters_.send_calls++;
    auto left = static_cast<size_t>(n);
    while (left > 0 && !tx_.empty()) {
      TxItem& front = tx_.front();
      size_t take = std::min(left, front.total - front.sent);
      front.sent += take;
      left -= take;
      if (front.sent != front.total) continue;
      if (front.r2t_done_cid >= 0) {
        if (Command* c = Find(static_cast<uint16_t>(front.r2t_done_cid)); c != nullptr && c->r2t_pending > 0)
          c->r2t_pending--;
      }
      tx_.PopFront();
    }
  }
  return Ok();
}

void TcpQueue::Receive() {
  if (broken()) return;
  if (epoll_event ev; readiness_.valid() && ::epoll_wait(readiness_.get(), &ev, 1, 0) == 0) return;
  const int fd = fd_.get();
  // recv/recvmsg rather than readv: a socket call skips the file position
  // lock, and one buffer (the common case) skips importing an iovec.
  auto read = [fd](const iovec* iov, int count) -> ssize_t {
    if (count == 1) return ::recv(fd, iov[0].iov_base, iov[0].iov_len, MSG_DONTWAIT);
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov);
    msg.msg_iovlen = static_cast<size_t>(count);
    return ::recvmsg(fd, &msg, MSG_DONTWAIT);
  };
  Status st = reader_.Pump(read, *this, PduReader::Drain::kOneRead);
  if (!st) Break(st.error());
}

void TcpQueue::OnSqTail() {
  if (!fd_.valid()) return;
  SendNew();
}

void TcpQueue::SendNew() {
  TakeNewEntries();
  if (Status f = Flush(); !f) Break(f.error());
}

void TcpQueue::OnCqEmpty() {
  if (broken() || !fd_.valid()) return;
  if (!held_.empty()) PostHeld();
  // What the completions taken so far submitted (published by the ring just
  // before it asked) goes out before the read: a read first would put its
  // readiness check and recv between a QD1 completion and the next command
  // (about 1-3 us here). Nothing new: no system call. Except while writes
  // wait for R2Ts: then the new capsules go out after the read, with the
  // H2CData it called for, in one sendmsg (128 KiB writes at QD8 did
  // better so, BENCHMARKS.md).
  if (r2t_writes_ == 0) SendNew();
  Receive();
  // Then what the read called for (H2CData for its R2Ts), and entries held
  // back by the controller's queue depth that its completions freed.
  SendNew();
}

Status TcpQueue::PlaceData(const DataHeader& h, std::vector<iovec>& out) {
  const Command* found = Find(h.cccid);
  if (found == nullptr || found->to_controller)
    return Fail(EPROTO, "NVMe/TCP: C2HData for command id " + std::to_string(h.cccid) + ", which reads nothing");
  const Command& c = *found;
  if (uint64_t{h.offset} + h.length > c.length)
    return Fail(EPROTO, "NVMe/TCP: C2HData for bytes " + std::to_string(h.offset) + "+" + std::to_string(h.length) +
                            " of command id " + std::to_string(h.cccid) + ", which reads " + std::to_string(c.length));
  Slice(c.iov, h.offset, h.length, out);
  return Ok();
}

Status TcpQueue::OnPdu(const ReceivedPdu& p) {
  Status st = HandlePdu(p);
  // Whatever broke the connection while handling the PDU also ends this
  // read: the reader must not go on with a closed (or reused) descriptor.
  if (st && broken()) return error_;
  return st;
}

Status TcpQueue::HandlePdu(const ReceivedPdu& p) {
  counters_.pdus_received++;
  switch (p.ch().type) {
    case pdu::kIcResp: {
      const IcResp& r = p.as<IcResp>();
      const uint8_t asked = static_cast<uint8_t>((params_.header_digest ? pdu::kDigestHeader : 0) |
                                                 (params_.data_digest ? pdu::kDigestData : 0));
      if (r.pfv != 0 || r.cpda > 31 || r.maxh2cdata < 4096 || r.maxh2cdata % 4 != 0 || (r.dgst & ~asked) != 0)
        return Fail(EPROTO, "NVMe/TCP: ICResp with PFV " + std::to_string(r.pfv) + ", CPDA " + std::to_string(r.cpda) +
                                ", MAXH2CDATA " + std::to_string(r.maxh2cdata) + ", digests " + Hex(r.dgst, 2) +
                                " (asked " + Hex(asked, 2) + ")");
      negotiated_.header_digest = (r.dgst & pdu::kDigestHeader) != 0;
      negotiated_.data_digest = (r.dgst & pdu::kDigestData) != 0;
      negotiated_.maxh2cdata = r.maxh2cdata;
      negotiated_.rx_align = 4;  // HPDA 0
      tx_align_ = (uint32_t{r.cpda} + 1) * 4;
      icresp_ = true;
      return Ok();
    }
    case pdu::kC2HTermReq: {
      const TermReq& t = p.as<TermReq>();
      return Fail(EPROTO, "NVMe/TCP: the controller terminated the connection (C2HTermReq, FES " +
                              Hex(t.fes, 2) + ")");
    }
    case pdu::kCapsuleResp: {
      const spec::Cqe& cqe = p.as<CapsuleResp>().cqe;
      Command* found = Find(cqe.cid);
      if (found == nullptr)
        return Fail(EPROTO, "NVMe/TCP: response for command id " + std::to_string(cqe.cid) + ", which is not outstanding");
      if (found->internal) {
        internal_done_ = cqe;
        return Ok();
      }
      Command& c = *found;
      c.active = false;
      wire_outstanding_--;
      if (c.by_r2t) r2t_writes_--;
      if (snoop_ && cqe.sct() == 0 && cqe.sc() == 0) snoop_(c.sqe, c.iov);
      Complete(cqe);
      return Ok();
    }
    case pdu::kC2HData: {
      counters_.c2h_data++;
      const DataHeader& h = p.as<DataHeader>();
      if ((h.ch.flags & pdu::kFlagSuccess) == 0) return Ok();
      // SUCCESS: the command completed without a response capsule.
      Command& c = *Find(h.cccid);  // PlaceData checked it is outstanding
      if (c.internal) {
        internal_done_ = StatusCqe(h.cccid, 0, 0);
        return Ok();
      }
      c.active = false;
      wire_outstanding_--;
      if (snoop_) snoop_(c.sqe, c.iov);
      Complete(StatusCqe(h.cccid, 0, 0));
      return Ok();
    }
    case pdu::kR2T: {
      counters_.r2ts++;
      const DataHeader& r = p.as<DataHeader>();
      Command* found = Find(r.cccid);
      if (found == nullptr || !found->to_controller)
        return Fail(EPROTO, "NVMe/TCP: R2T for command id " + std::to_string(r.cccid) + ", which writes nothing");
      Command& c = *found;
      if (uint64_t{r.offset} + r.length > c.length)
        return Fail(EPROTO, "NVMe/TCP: R2T for bytes " + std::to_string(r.offset) + "+" + std::to_string(r.length) +
                                " of command id " + std::to_string(r.cccid) + ", which writes " + std::to_string(c.length));
      // The data is asked for in order, each byte once (NVMe/TCP 1.0,
      // R2T: R2TO follows the previous R2T's range), at most kMaxR2t at a time.
      if (r.length == 0 || r.offset != c.r2t_next)
        return Fail(EPROTO, "NVMe/TCP: R2T for bytes " + std::to_string(r.offset) + "+" + std::to_string(r.length) +
                                " of command id " + std::to_string(r.cccid) + ": the next range asked for must start at " +
                                std::to_string(c.r2t_next) + " and not be empty");
      if (c.r2t_pending >= kMaxR2t)
        return Fail(EPROTO, "NVMe/TCP: more than " + std::to_string(kMaxR2t) + " R2Ts outstanding for command id " +
                                std::to_string(r.cccid) + " (MAXR2T)");
      c.r2t_next = r.offset + r.length;
      c.r2t_pending++;
      QueueData(r.cccid, r.ttag, r.offset, r.length, c);
      return Ok();
    }
  }
  return Fail(EPROTO, std::string("NVMe/TCP: unexpected ") + PduTypeName(p.ch().type) + " PDU");
}

}  // namespace nvmux::tcp
