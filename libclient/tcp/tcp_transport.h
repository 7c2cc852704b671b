// TcpTransport: a controller behind an NVMe/TCP target (NVMe/TCP transport
// specification 1.0 with the NVMe over Fabrics command set).
//
// Open connects the admin queue (TCP, ICReq/ICResp, Fabrics Connect with
// CNTLID FFFFh) and then serves the driver core as a memory transport does
// (see tcp_queue.h for the queue engine):
//  - registers(): Property Get/Set on the admin connection (CAP, VS, CC,
//    CSTS), so the SAME controller init and shutdown machines run; AQA, ASQ
//    and ACQ do not exist as fabrics properties: writes to them place the
//    admin queue engine on the core's admin ring instead.
//  - Create I/O CQ/SQ on the admin ring are served here: the SQ's creation
//    opens the queue's own connection (Fabrics Connect with the admin
//    queue's CNTLID) onto the rings the commands name; Delete I/O SQ closes
//    it. Doorbell Buffer Config is refused (no shadow doorbells over TCP).
//  - SglOnly(): the core describes data with SGLs, which carry lengths; the
//    engine turns them into in-capsule data or transport SGLs.
//
// Group mode (a primary's transport): see Export() below, and
// ARCHITECTURE.md "NVMe/TCP in a group".
//
// Thread safety: as Transport; the admin connection is serialised by a
// mutex (registers() from any thread, the admin ring under the core's admin
// lock). Each I/O queue's connection belongs to its queue pair's thread.
// Ownership: owns every connection; destruction closes them.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "libclient/core/transport.h"
#include "libclient/tcp/tcp_queue.h"
#include "nvmux/controller.h"
#include "nvmux/transport_id.h"

namespace nvmux::tcp {

// The host NQN and host ID this machine uses when a transport id names none:
// /etc/nvme/hostnqn and /etc/nvme/hostid when present (as nvme-cli writes
// them), else a UUID-based NQN derived from /etc/machine-id (stable across
// runs). Never fails: a fixed fallback UUID when neither file exists.
struct HostIdentity {
  std::string nqn;
  uint8_t id[16] = {};
};
HostIdentity DefaultHostIdentity();

// The socket address of a tcp transport id. Errors: EINVAL naming traddr/trsvcid.
Result<Endpoint> ResolveEndpoint(const TransportId& trid);

class TcpTransport final : public Transport, private RegisterIo {
 public:
  // Errors: those of TcpQueue::Connect (the address and port named).
  [[nodiscard]] static Result<std::unique_ptr<TcpTransport>> Open(const TransportId& trid,
                                                                  const ControllerOptions& options);
  ~TcpTransport() override;

  const char* name() const override { return "TCP"; }
  RegisterIo& registers() override { return *this; }
  [[nodiscard]] Status PrepareDevice() override { return Ok(); }
  Doorbells QueueDoorbells(uint16_t qid, uint32_t dstrd) override;
  bool Lost() const override;
  bool SglOnly() const override { return true; }
  uint16_t cntlid() const { return admin_->cntlid(); }

  // In a group (this process the primary): secondaries ring the shared
  // admin ring's doorbells (ShareAdminDoorbells) and then write the admin
  // mailbox, an eventfd, which Export() hands them as their "doorbell" (and
  // "connection": they hold a duplicate, so another process can take it
  // from them after this one died). AdminEventFd() is an epoll fd over the
  // admin socket and the mailbox, so nvmuxd sleeps until either has work.
  std::optional<Exported> Export() const override;
  int AdminEventFd() const override { return epoll_.get(); }
  void ArmAdminEvent() override;
  void ShareAdminDoorbells(uint32_t* sq_tail, uint32_t* cq_head) override;
  std::optional<FabricsInfo> Fabrics() const override;
  bool ConnectsIoQueues() const override { return true; }
  [[nodiscard]] Status ConnectIoQueue(uint16_t qid, uint32_t entries, spec::Sqe* sq, spec::Cqe* cq) override;
  void DisconnectIoQueue(uint16_t qid, bool graceful) override;

 private:
  // Serialises the admin connection: the core's ring use and register calls.
  class AdminHook final : public QueueHook {
   public:
    explicit AdminHook(TcpTransport& t) : t_(t) {}
    void OnSqTail() override;
    void OnCqEmpty() override;

   private:
    TcpTransport& t_;
  };
  struct CqInfo {
    uint64_t iova = 0;
    uint32_t entries = 0;
  };

  TcpTransport(const TransportId& trid, const ControllerOptions& options, Endpoint ep, HostIdentity host);
  Result<uint32_t> Read32(uint32_t offset) override;
  Result<uint64_t> Read64(uint32_t offset) override;
  Status Write32(uint32_t offset, uint32_t value) override;
  Status Write64(uint32_t offset, uint64_t value) override;
  Result<uint64_t> PropertyGet(uint32_t offset, bool eight);
  Status PropertySet(uint32_t offset, uint64_t value, bool eight);
  void PlaceAdminRing();
  std::optional<spec::Cqe> Intercept(const spec::Sqe& cmd);
  void Snoop(const spec::Sqe& cmd, std::span<const iovec> data);
  TcpQueue& IoQueue(uint16_t qid);
  // (Re)registers the admin socket with epoll_ after each (re)connection.
  void WatchAdminSocket();

  TransportId trid_;
  ControllerOptions options_;
  Endpoint ep_;
  HostIdentity host_;
  mutable std::recursive_mutex mutex_;
  std::unique_ptr<TcpQueue> admin_;
  AdminHook admin_hook_{*this};
  uint32_t aqa_ = 0;
  uint64_t asq_ = 0, acq_ = 0;
  uint16_t mqes_ = 0;
  ConnectParams admin_params_;
  bool ring_placed_ = false;  // the admin ring was placed once: placing it again is a reset
  bool cc_enabled_ = false;   // the last CC written had EN set (a new association starts disabled)
  uint32_t io_in_capsule_ = 0;  // from Identify Controller IOCCSZ
  std::map<uint16_t, CqInfo> cqs_;
  std::map<uint16_t, std::unique_ptr<TcpQueue>> io_;
  UniqueFd mailbox_;  // eventfd: a group secondary committed admin commands
  UniqueFd epoll_;    // over the admin socket and mailbox_
  int watched_socket_ = -1;
};

}  // namespace nvmux::tcp
