// ImportedTcpTransport: how a group secondary reaches an NVMe/TCP controller
// whose admin connection the primary (nvmuxd) owns (ARCHITECTURE.md,
// "NVMe/TCP in a group").
//  - Admin queue: the group's shared ring. Its doorbells are words in the
//    SharedController (SharedFabrics::sq_doorbell/cq_doorbell), and each
//    doorbell write is followed by a write to the primary's admin mailbox
//    (the eventfd it passed as the "doorbell" fd; DoorbellKickFd), which
//    wakes nvmuxd: its engine sends the capsule, and the response becomes a
//    CQE in the shared ring that the shared admin queue routes back here.
//  - I/O queues: this process's own connections (ConnectIoQueue: Fabrics
//    Connect with the queue id from the shared allocator and the CNTLID,
//    host NQN/ID and digests the primary published), so no Create I/O
//    SQ/CQ goes through the admin queue and nothing outlives the process:
//    kill -9 closes its sockets, the target drops their queues.
//  - Registers: the primary's published CAP, VS and CSTS (SharedRegisters).
//  - Lost(): the primary marked the controller failed or removed, one of
//    this process's connections broke, or the association it joined ended
//    (a reset or a restarted nvmuxd made a new one: the old one's I/O
//    queues are gone on the target, so this controller's queues fail with
//    ENXIO and the application attaches again).
//
// Thread safety: as Transport; each I/O connection belongs to its queue
// pair's thread, the connection table is under a mutex.
// Ownership: owns its connections and the mailbox fd; borrows the
// SharedController (group segment).
#pragma once

#include <map>
#include <memory>
#include <mutex>

#include "libclient/core/transport.h"
#include "libclient/shared/fd_share.h"
#include "libclient/shared/imported_transport.h"
#include "libclient/shared/shared_controller.h"
#include "libclient/tcp/tcp_queue.h"
#include "nvmux/controller.h"
#include "nvmux/transport_id.h"

namespace nvmux::tcp {

class ImportedTcpTransport final : public Transport {
 public:
  // `fds.doorbells`: the primary's admin mailbox (an eventfd). Errors:
  // EINVAL (a bad traddr/trsvcid in the published trid), ENXIO (the
  // primary has published no association yet).
  [[nodiscard]] static Result<std::unique_ptr<ImportedTcpTransport>> Create(SharedController& c,
                                                                          const TransportId& trid, SharedFds fds,
                                                                          const ControllerOptions& options);
  ~ImportedTcpTransport() override;

  const char* name() const override { return "TCP"; }
  RegisterIo& registers() override { return registers_; }
  [[nodiscard]] Status PrepareDevice() override { return Ok(); }
  Doorbells QueueDoorbells(uint16_t qid, uint32_t dstrd) override;
  bool Lost() const override;
  int DoorbellKickFd() const override { return fds_.doorbells.get(); }
  bool SglOnly() const override { return true; }
  std::optional<Exported> Export() const override;
  bool ConnectsIoQueues() const override { return true; }
  [[nodiscard]] Status ConnectIoQueue(uint16_t qid, uint32_t entries, spec::Sqe* sq, spec::Cqe* cq) override;
  void DisconnectIoQueue(uint16_t qid, bool graceful) override;

 private:
  ImportedTcpTransport(SharedController& c, TransportId trid, SharedFds fds, Endpoint ep, ControllerOptions options);
  TcpQueue& IoQueue(uint16_t qid);

  SharedController& c_;
  TransportId trid_;
  SharedRegisters registers_;
  SharedFds fds_;
  Endpoint ep_;
  ControllerOptions options_;
  uint32_t association_ = 0;  // SharedFabrics::association when imported
  mutable std::mutex mutex_;
  std::map<uint16_t, std::unique_ptr<TcpQueue>> io_;
};

}  // namespace nvmux::tcp
