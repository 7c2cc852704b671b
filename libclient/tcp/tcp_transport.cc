#include "libclient/tcp/tcp_transport.h"

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "nvmux/spec/nvme.h"
#include "shm/base/format.h"
#include "shm/base/log.h"

namespace nvmux::tcp {
namespace {

constexpr uint8_t kFabricsOpcode = 0x7F;
constexpr uint8_t kFctypePropertySet = 0x00;
constexpr uint8_t kFctypePropertyGet = 0x04;
constexpr uint32_t kRegAqa = 0x24, kRegAsq = 0x28, kRegAcq = 0x30;
constexpr size_t kIoccszOffset = 1792;  // Identify Controller: IOCCSZ, in 16-byte units, SQE included

std::string ReadLine(const char* path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return "";
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ' || line.back() == '\r')) line.pop_back();
  return line;
}

// "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (or 32 hex digits) -> 16 bytes.
bool ParseUuid(std::string_view text, uint8_t out[16]) {
  std::string hex;
  for (char c : text)
    if (c != '-') hex += c;
  if (hex.size() != 32) return false;
  for (size_t i = 0; i < 16; ++i) {
    unsigned v = 0;
    if (std::sscanf(hex.c_str() + 2 * i, "%2x", &v) != 1) return false;
    out[i] = static_cast<uint8_t>(v);
  }
  return true;
}

std::string FormatUuid(const uint8_t id[16]) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", id[0], id[1],
                id[2], id[3], id[4], id[5], id[6], id[7], id[8], id[9], id[10], id[11], id[12], id[13], id[14], id[15]);
  return buf;
}

spec::Cqe StatusOf(uint8_t sct, uint8_t sc) {
  spec::Cqe c;
  c.status = static_cast<uint16_t>((sct << 9) | (sc << 1));
  return c;
}

}  // namespace

HostIdentity DefaultHostIdentity() {
  HostIdentity h;
  std::string machine = ReadLine("/etc/machine-id");
  if (!ParseUuid(machine, h.id)) {
    // A fixed identity rather than none (a container without machine-id).
    static const uint8_t kFallback[16] = {0x6e, 0x76, 0x6d, 0x75, 0x78, 0x2d, 0x40, 0x00,
                                          0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01};
    std::memcpy(h.id, kFallback, 16);
  } else {
    h.id[6] = static_cast<uint8_t>((h.id[6] & 0x0F) | 0x40);  // a version 4 UUID, as nvme-cli's are
    h.id[8] = static_cast<uint8_t>((h.id[8] & 0x3F) | 0x80);
  }
  if (std::string hostid = ReadLine("/etc/nvme/hostid"); !hostid.empty()) (void)ParseUuid(hostid, h.id);
  h.nqn = ReadLine("/etc/nvme/hostnqn");
  if (h.nqn.empty()) h.nqn = "nqn.2014-08.org.nvmexpress:uuid:" + FormatUuid(h.id);
  return h;
}

Result<Endpoint> ResolveEndpoint(const TransportId& trid) {
  Endpoint ep;
  unsigned port = 0;
  if (std::sscanf(trid.trsvcid.c_str(), "%u", &port) != 1 || port == 0 || port > 65535)
    return Fail(EINVAL, "NVMe/TCP: trsvcid '" + trid.trsvcid + "' is not a port (1..65535), e.g. trsvcid:4420");
  if (trid.adrfam == AddressFamily::kIpv6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ep.addr);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, trid.traddr.c_str(), &a->sin6_addr) != 1)
      return Fail(EINVAL, "NVMe/TCP: traddr '" + trid.traddr + "' is not an IPv6 address");
    ep.addr_len = sizeof(*a);
    ep.text = "[" + trid.traddr + "]:" + std::to_string(port);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ep.addr);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, trid.traddr.c_str(), &a->sin_addr) != 1)
      return Fail(EINVAL, "NVMe/TCP: traddr '" + trid.traddr + "' is not an IPv4 address (give adrfam:ipv6 for IPv6)");
    ep.addr_len = sizeof(*a);
    ep.text = trid.traddr + ":" + std::to_string(port);
  }
  return ep;
}

TcpTransport::TcpTransport(const TransportId& trid, const ControllerOptions& options, Endpoint ep, HostIdentity host)
    : trid_(trid), options_(options), ep_(std::move(ep)), host_(std::move(host)) {}

TcpTransport::~TcpTransport() {
  std::lock_guard<std::recursive_mutex> guard(mutex_);
  io_.clear();  // closes the I/O connections first, then the admin one
  admin_.reset();
}

Result<std::unique_ptr<TcpTransport>> TcpTransport::Open(const TransportId& trid, const ControllerOptions& options) {
  auto ep = ResolveEndpoint(trid);
  if (!ep) return ep.error();
  HostIdentity host = DefaultHostIdentity();
  if (!trid.hostnqn.empty()) host.nqn = trid.hostnqn;
  std::unique_ptr<TcpTransport> t(new TcpTransport(trid, options, *ep, host));
  ConnectParams p;
  p.qid = 0;
  p.entries = std::max<uint16_t>(2, options.admin_queue_size);
  p.kato_ms = options.keep_alive_timeout_ms;
  p.subnqn = trid.subnqn.empty() ? std::string(TransportId::kDiscoveryNqn) : trid.subnqn;
  p.hostnqn = host.nqn;
  std::memcpy(p.hostid, host.id, 16);
  p.header_digest = options.tcp_header_digest;
  p.data_digest = options.tcp_data_digest;
  p.timeout = std::chrono::milliseconds(options.connect_timeout_ms);
  t->mailbox_ = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  t->epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!t->mailbox_.valid() || !t->epoll_.valid()) return ErrnoError("NVMe/TCP: eventfd/epoll for the admin queue");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = t->mailbox_.get();
  if (::epoll_ctl(t->epoll_.get(), EPOLL_CTL_ADD, t->mailbox_.get(), &ev) != 0)
    return ErrnoError("NVMe/TCP: epoll_ctl for the admin mailbox");
  auto admin = TcpQueue::Connect(*ep, p);
  if (!admin) return admin.error();
  t->admin_params_ = p;
  t->admin_ = std::move(*admin);
  t->WatchAdminSocket();
  TcpTransport* self = t.get();
  t->admin_->set_intercept([self](const spec::Sqe& cmd) { return self->Intercept(cmd); });
  t->admin_->set_snoop([self](const spec::Sqe& cmd, std::span<const iovec> data) { self->Snoop(cmd, data); });
  auto cap = t->PropertyGet(spec::kRegCap, true);
  if (!cap) return cap.error();
  t->mqes_ = static_cast<uint16_t>(*cap & 0xFFFF);
  return t;
}

bool TcpTransport::Lost() const {
  std::lock_guard<std::recursive_mutex> guard(mutex_);
  if (admin_->broken()) return true;
  for (const auto& [qid, q] : io_)
    if (q->open() && q->broken()) return true;
  return false;
}

void TcpTransport::AdminHook::OnSqTail() {
  std::lock_guard<std::recursive_mutex> guard(t_.mutex_);
  t_.admin_->OnSqTail();
}

void TcpTransport::AdminHook::OnCqEmpty() {
  std::lock_guard<std::recursive_mutex> guard(t_.mutex_);
  t_.admin_->OnCqEmpty();
}

TcpQueue& TcpTransport::IoQueue(uint16_t qid) {
  auto& q = io_[qid];
  if (!q) q = std::make_unique<TcpQueue>(ep_, ConnectParams{});
  return *q;
}

Doorbells TcpTransport::QueueDoorbells(uint16_t qid, uint32_t /*dstrd: no doorbell registers*/) {
  std::lock_guard<std::recursive_mutex> guard(mutex_);
  if (qid == 0) {
    Doorbells d = admin_->doorbells();
    d.hook = &admin_hook_;
    return d;
  }
  return IoQueue(qid).doorbells();
}

Result<uint64_t> TcpTransport::PropertyGet(uint32_t offset, bool eight) {
  std::lock_guard<std::recursive_mutex> guard(mutex_);
  spec::Sqe cmd;
  cmd.opc = kFabricsOpcode;
  cmd.nsid = kFctypePropertyGet;
  cmd.cdw10 = eight ? 1 : 0;  // ATTRIB.SIZE
  cmd.cdw11 = offset;
  auto c = admin_->Execute(cmd);
  if (!c) return Fail(c.error().code == ETIMEDOUT ? ETIMEDOUT : ENXIO,
                      "Property Get " + Hex(offset, 2) + ": " + c.error().message);
  if (c->sct() != 0 || c->sc() != 0)
    return Fail(EIO, "Property Get of offset " + Hex(offset, 2) + " refused: " + ConnectStatusText(*c));
  return eight ? (uint64_t{c->cdw1} << 32) | c->cdw0 : c->cdw0;
}

Status TcpTransport::PropertySet(uint32_t offset, uint64_t value, bool eight) {
  std::lock_guard<std::recursive_mutex> guard(mutex_);
  spec::Sqe cmd;
  cmd.opc = kFabricsOpcode;
  cmd.nsid = kFctypePropertySet;
  cmd.cdw10 = eight ? 1 : 0;
  cmd.cdw11 = offset;
  cmd.cdw12 = static_cast<uint32_t>(value);
  cmd.cdw13 = static_cast<uint32_t>(value >> 32);
  auto c = admin_->Execute(cmd);
  if (!c) return Fail(c.error().code == ETIMEDOUT ? ETIMEDOUT : ENXIO,
                      "Property Set " + Hex(offset, 2) + ": " + c.error().message);
  if (c->sct() != 0 || c->sc() != 0)
    return Fail(EIO, "Property Set of offset " + Hex(offset, 2) + " refused: " + ConnectStatusText(*c));
  return Ok();
}

Result<uint32_t> TcpTransport::Read32(uint32_t offset) {
  if (offset == kRegAqa) return aqa_;
  auto v = PropertyGet(offset, false);
  if (!v) return v.error();
  return static_cast<uint32_t>(*v);
}

Result<uint64_t> TcpTransport::Read64(uint32_t offset) {
  if (offset == kRegAsq) return asq_;
  if (offset == kRegAcq) return acq_;
  return PropertyGet(offset, true);
}

// AQA/ASQ/ACQ are not fabrics properties: they say where the engine's ring is.
Status TcpTransport::Write32(uint32_t offset, uint32_t value) {
  if (offset == kRegAqa) {
    aqa_ = value;
    return Ok();
  }
  // CC.EN going from 0 to 1: the engine goes onto the ring AQA/ASQ/ACQ named
  // (whatever order they were written in), before the controller can be
  // enabled. Only that edge: the shutdown notification (CC.SHN) is written
  // with EN still 1 and belongs to this association, not to a new one.
  if (offset == spec::kRegCc) {
    const bool enable = (value & 1) != 0;
    if (enable && !cc_enabled_) PlaceAdminRing();
    cc_enabled_ = enable;
  }
  return PropertySet(offset, value, false);
}

Status TcpTransport::Write64(uint32_t offset, uint64_t value) {
  if (offset == kRegAsq || offset == kRegAcq) {
    (offset == kRegAsq ? asq_ : acq_) = value;
    return Ok();
  }
  return PropertySet(offset, value, true);
}

void TcpTransport::PlaceAdminRing() {
  std::lock_guard<std::recursive_mutex> guard(mutex_);
  if (asq_ == 0 || acq_ == 0) return;
  const uint32_t entries = (aqa_ & 0xFFF) + 1;
  if (ring_placed_) {
    // The admin queue set up again: a controller reset. Over fabrics that is
    // a new association (as Linux's host does it): the old connections go,
    // with whatever the old controller still held (AERs), so no late
    // response can meet a new command with the same id.
    for (auto& [qid, q] : io_) q->Close();
    cqs_.clear();
    Status st = admin_->Open(admin_params_);
    if (!st) NVMUX_LOG(kError, "NVMe/TCP %s: reconnecting the admin queue for the reset: %s", ep_.text.c_str(),
                       st.error().message.c_str());
    WatchAdminSocket();
    // (a failure leaves the queue broken: Lost() and the init machine see it)
  }
  ring_placed_ = true;
  // IOVA = virtual address for the driver's DMA memory.
  admin_->AttachRing(reinterpret_cast<spec::Sqe*>(asq_), reinterpret_cast<spec::Cqe*>(acq_), entries);
}

std::optional<spec::Cqe> TcpTransport::Intercept(const spec::Sqe& cmd) {
  const uint16_t qid = static_cast<uint16_t>(cmd.cdw10 & 0xFFFF);
  const uint32_t entries = (cmd.cdw10 >> 16) + 1;
  switch (cmd.opc) {
    case spec::admin::kCreateIoCq:
      if (qid == 0) return StatusOf(1, 0x01);  // invalid queue identifier
      cqs_[qid] = CqInfo{cmd.prp1, entries};
      return StatusOf(0, 0);
    case spec::admin::kCreateIoSq: {
      // (The core connects its queues with ConnectIoQueue; this serves an
      // application's own Create I/O SQ sent as an admin command.)
      const uint16_t cqid = static_cast<uint16_t>(cmd.cdw11 >> 16);
      auto cq = cqs_.find(cqid);
      if (qid == 0 || cq == cqs_.end() || cqid != qid || cq->second.entries != entries) {
        // One connection is one SQ/CQ pair: the CQ must be the SQ's own.
        NVMUX_LOG(kError, "NVMe/TCP %s: Create I/O SQ %u on CQ %u: each queue needs its own CQ of the same size",
                  ep_.text.c_str(), qid, cqid);
        return StatusOf(1, cq == cqs_.end() ? 0x00 : 0x01);  // completion queue invalid / invalid qid
      }
      // Connecting here (a bounded wait, once per queue) keeps Create I/O SQ
      // one admin command, as on every other transport.
      Status st = ConnectIoQueue(qid, entries, reinterpret_cast<spec::Sqe*>(cmd.prp1),
                                 reinterpret_cast<spec::Cqe*>(cq->second.iova));
      if (!st) {
        NVMUX_LOG(kError, "NVMe/TCP: I/O queue %u: %s", qid, st.error().message.c_str());
        return StatusOf(0, 0x06);  // internal error
      }
      return StatusOf(0, 0);
    }
    case spec::admin::kDeleteIoSq:
      if (auto it = io_.find(qid); it != io_.end()) it->second->Disconnect();
      return StatusOf(0, 0);
    case spec::admin::kDeleteIoCq:
      cqs_.erase(qid);
      return StatusOf(0, 0);
    case spec::admin::kDoorbellBufferConfig:
      return StatusOf(0, 0x01);  // invalid opcode: no doorbells to shadow
    default:
      return std::nullopt;
  }
}

void TcpTransport::Snoop(const spec::Sqe& cmd, std::span<const iovec> data) {
  if (cmd.opc != spec::admin::kIdentify || (cmd.cdw10 & 0xFF) != spec::cns::kController) return;
  uint8_t raw[4];
  size_t at = 0, got = 0;
  for (const iovec& v : data) {
    for (size_t i = 0; i < v.iov_len && got < 4; ++i, ++at)
      if (at >= kIoccszOffset) raw[got++] = static_cast<const uint8_t*>(v.iov_base)[i];
    if (got == 4) break;
  }
  if (got < 4) return;
  uint32_t ioccsz;
  std::memcpy(&ioccsz, raw, 4);
  io_in_capsule_ = ioccsz * 16 > 64 ? ioccsz * 16 - 64 : 0;
}

Status TcpTransport::ConnectIoQueue(uint16_t qid, uint32_t entries, spec::Sqe* sq, spec::Cqe* cq) {
  std::lock_guard<std::recursive_mutex> guard(mutex_);
  if (qid == 0) return Fail(EINVAL, "NVMe/TCP: queue 0 is the admin queue");
  TcpQueue& q = IoQueue(qid);
  ConnectParams p;
  p.qid = qid;
  p.entries = static_cast<uint16_t>(std::min<uint32_t>(entries, uint32_t{mqes_} + 1));
  p.cntlid = admin_->cntlid();
  p.subnqn = trid_.subnqn.empty() ? std::string(TransportId::kDiscoveryNqn) : trid_.subnqn;
  p.hostnqn = host_.nqn;
  std::memcpy(p.hostid, host_.id, 16);
  p.header_digest = options_.tcp_header_digest;
  p.data_digest = options_.tcp_data_digest;
  p.timeout = std::chrono::milliseconds(options_.connect_timeout_ms);
  NVMUX_TRY(q.Open(p));
  q.AttachRing(sq, cq, entries);
  q.set_in_capsule_limit(io_in_capsule_);
  return Ok();
}

void TcpTransport::DisconnectIoQueue(uint16_t qid, bool graceful) {
  std::lock_guard<std::recursive_mutex> guard(mutex_);
  auto it = io_.find(qid);
  if (it == io_.end()) return;
  if (graceful) {
    it->second->Disconnect();
  } else {
    it->second->Close();
  }
}

void TcpTransport::WatchAdminSocket() {
  const int s = admin_->socket_fd();
  if (s == watched_socket_ || s < 0 || !epoll_.valid()) return;
  // A closed socket left epoll by itself (its last reference went).
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = s;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, s, &ev) != 0 && errno != EEXIST)
    NVMUX_LOG(kWarning, "NVMe/TCP %s: epoll_ctl for the admin socket: %s (nvmuxd then wakes on its timer only)",
              ep_.text.c_str(), std::strerror(errno));
  watched_socket_ = s;
}

void TcpTransport::ArmAdminEvent() {
  uint64_t count = 0;
  (void)!::read(mailbox_.get(), &count, sizeof(count));
}

std::optional<Transport::Exported> TcpTransport::Export() const {
  // No doorbell area to map: a secondary's "doorbell" is this mailbox.
  Exported e;
  e.doorbell_fd = mailbox_.get();
  e.connection_fd = mailbox_.get();
  return e;
}

void TcpTransport::ShareAdminDoorbells(uint32_t* sq_tail, uint32_t* cq_head) {
  std::lock_guard<std::recursive_mutex> guard(mutex_);
  admin_->UseDoorbellWords(sq_tail, cq_head);
}

std::optional<Transport::FabricsInfo> TcpTransport::Fabrics() const {
  std::lock_guard<std::recursive_mutex> guard(mutex_);
  FabricsInfo f;
  f.cntlid = admin_->cntlid();
  f.hostnqn = host_.nqn;
  std::memcpy(f.hostid, host_.id, 16);
  f.header_digest = options_.tcp_header_digest;
  f.data_digest = options_.tcp_data_digest;
  return f;
}

}  // namespace nvmux::tcp
