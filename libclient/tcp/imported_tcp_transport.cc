#include "libclient/tcp/imported_tcp_transport.h"

#include <atomic>
#include <cstring>

#include "libclient/tcp/tcp_transport.h"
#include "shm/base/log.h"

namespace nvmux::tcp {
namespace {

constexpr size_t kIoccszOffset = 1792;  // Identify Controller: IOCCSZ, in 16-byte units, SQE included

uint32_t Load(const uint32_t& v) {
  return std::atomic_ref<uint32_t>(const_cast<uint32_t&>(v)).load(std::memory_order_acquire);
}

}  // namespace

ImportedTcpTransport::ImportedTcpTransport(SharedController& c, TransportId trid, SharedFds fds, Endpoint ep,
                                           ControllerOptions options)
    : c_(c), trid_(std::move(trid)), registers_(c), fds_(std::move(fds)), ep_(std::move(ep)), options_(options) {}

ImportedTcpTransport::~ImportedTcpTransport() {
  std::lock_guard<std::mutex> guard(mutex_);
  io_.clear();
}

Result<std::unique_ptr<ImportedTcpTransport>> ImportedTcpTransport::Create(SharedController& c,
                                                                         const TransportId& trid, SharedFds fds,
                                                                         const ControllerOptions& options) {
  auto ep = ResolveEndpoint(trid);
  if (!ep) return ep.error();
  const uint32_t association = Load(c.fabrics.association);
  if (association == 0)
    return Fail(ENXIO, "controller " + trid.ToString() + ": the group's primary has published no NVMe/TCP "
                       "association (CNTLID) yet");
  std::unique_ptr<ImportedTcpTransport> t(
      new ImportedTcpTransport(c, trid, std::move(fds), std::move(*ep), options));
  t->association_ = association;
  return t;
}

TcpQueue& ImportedTcpTransport::IoQueue(uint16_t qid) {
  auto& q = io_[qid];
  if (!q) q = std::make_unique<TcpQueue>(ep_, ConnectParams{});
  return *q;
}

Doorbells ImportedTcpTransport::QueueDoorbells(uint16_t qid, uint32_t /*dstrd*/) {
  if (qid == 0) {
    // The shared words; ControllerState adds the kick (the mailbox).
    Doorbells d;
    d.sq_tail = &c_.fabrics.sq_doorbell;
    d.cq_head = &c_.fabrics.cq_doorbell;
    return d;
  }
  std::lock_guard<std::mutex> guard(mutex_);
  return IoQueue(qid).doorbells();
}

bool ImportedTcpTransport::Lost() const {
  if (Load(c_.removed) != 0 || Load(c_.failed) != 0) return true;
  if (Load(c_.fabrics.association) != association_) return true;
  std::lock_guard<std::mutex> guard(mutex_);
  for (const auto& [qid, q] : io_)
    if (q->open() && q->broken()) return true;
  return false;
}

std::optional<Transport::Exported> ImportedTcpTransport::Export() const {
  // What this process holds for others to take (fd_holders.h): the mailbox.
  Exported e;
  e.doorbell_fd = fds_.doorbells.get();
  e.connection_fd = fds_.connection.valid() ? fds_.connection.get() : fds_.doorbells.get();
  return e;
}

Status ImportedTcpTransport::ConnectIoQueue(uint16_t qid, uint32_t entries, spec::Sqe* sq, spec::Cqe* cq) {
  if (qid == 0) return Fail(EINVAL, "NVMe/TCP: queue 0 is the admin queue");
  if (Load(c_.fabrics.association) != association_)
    return Fail(ENXIO, "controller " + trid_.ToString() + ": the association this process joined has ended (the "
                       "group's primary reconnected); attach the controller again");
  ConnectParams p;
  p.qid = qid;
  const uint32_t mqes = static_cast<uint32_t>(c_.cap & 0xFFFF);
  p.entries = static_cast<uint16_t>(std::min<uint32_t>(entries, mqes + 1));
  p.cntlid = c_.fabrics.cntlid;
  p.subnqn = trid_.subnqn.empty() ? std::string(TransportId::kDiscoveryNqn) : trid_.subnqn;
  p.hostnqn = std::string(c_.fabrics.hostnqn, strnlen(c_.fabrics.hostnqn, sizeof(c_.fabrics.hostnqn)));
  std::memcpy(p.hostid, c_.fabrics.hostid, 16);
  p.header_digest = c_.fabrics.header_digest != 0;
  p.data_digest = c_.fabrics.data_digest != 0;
  p.timeout = std::chrono::milliseconds(options_.connect_timeout_ms);
  uint32_t ioccsz = 0;
  std::memcpy(&ioccsz, reinterpret_cast<const uint8_t*>(&c_.ctrlr) + kIoccszOffset, 4);
  std::lock_guard<std::mutex> guard(mutex_);
  TcpQueue& q = IoQueue(qid);
  NVMUX_TRY(q.Open(p));
  q.AttachRing(sq, cq, entries);
  q.set_in_capsule_limit(ioccsz * 16 > 64 ? ioccsz * 16 - 64 : 0);
  return Ok();
}

void ImportedTcpTransport::DisconnectIoQueue(uint16_t qid, bool graceful) {
  std::lock_guard<std::mutex> guard(mutex_);
  auto it = io_.find(qid);
  if (it == io_.end()) return;
  if (graceful) {
    it->second->Disconnect();
  } else {
    it->second->Close();
  }
}

}  // namespace nvmux::tcp
