// ControllerState: everything behind a Controller handle — transport, admin
// queue, identify data, namespaces, the queue-id allocator and the list of
// queue pairs (for reset and failure). Internal to libclient.
//
// Thread safety: admin_mutex guards the admin queue, the allocator, the
// namespace list and the queue-pair list; `failed` is atomic so queue pairs
// read it without the lock.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "libclient/core/admin_queue.h"
#include "libclient/core/controller_init.h"
#include "libclient/core/transport.h"
#include "nvmux/controller.h"
#include "shm/base/unique_fd.h"

namespace nvmux {

class GroupRole;
struct QpairState;
struct SharedController;
class SharedAdminQueue;

struct ControllerState {
  ControllerState(Env& e, TransportId t, ControllerOptions o, std::unique_ptr<Transport> tr)
      : env(e), trid(std::move(t)), options(o), transport(std::move(tr)) {}

  Env& env;
  TransportId trid;
  ControllerOptions options;
  std::unique_ptr<Transport> transport;
  // The transport takes SGLs only (NVMe/TCP: they carry the lengths its
  // engine needs); read on every I/O, so kept here rather than asked of
  // the transport (a virtual call) each time. The transport never changes.
  const bool sgl_only = transport != nullptr && transport->SglOnly();

  // Admin queue memory: SQ, CQ, one identify page, one scratch page for
  // the driver's own admin data (AER/keep-alive need none).
  DmaBuffer admin_memory;
  std::unique_ptr<QueueRing> admin_ring;
  std::unique_ptr<AdminChannel> admin;  // AdminQueue, or the group's SharedAdminQueue
  std::recursive_mutex admin_mutex;  // recursive: admin callbacks may submit admin commands

  ControllerData data;
  uint32_t max_transfer = 0;
  std::vector<std::unique_ptr<Namespace>> namespaces;  // same order as data.active_nsids
  std::vector<bool> qid_used;                           // index = qid; [0] is the admin queue
  std::vector<QpairState*> qpairs;

  std::atomic<bool> failed{false};
  std::atomic<bool> removed{false};
  std::atomic<int64_t> next_health_check_ns{0};
  // Bumped by SetIoTimeout; a queue pair whose copy is older re-reads the
  // io_timeout_* fields under admin_mutex at its next poll.
  std::atomic<uint64_t> io_timeout_generation{0};
  // Set by a queue pair whose I/O timed out with kReset (or whose Abort did
  // not help); the next ProcessAdminCompletions resets the controller.
  std::atomic<bool> reset_requested{false};
  std::atomic<uint32_t> sync_admin_depth{0};  // SyncAdmin calls under way (any thread)

  CompletionFn aer_fn = nullptr;
  void* aer_arg = nullptr;
  uint32_t aers_outstanding = 0;
  int64_t keep_alive_interval_ns = 0;
  int64_t next_keep_alive_ns = 0;
  uint64_t admin_timeout_us = 0;
  TimeoutAction timeout_action = TimeoutAction::kNone;
  Controller::TimeoutFn timeout_fn;
  std::set<uint16_t> timed_out;   // admin command ids already reported
  uint64_t io_timeout_us = 0;     // SetIoTimeout; 0: off
  TimeoutAction io_timeout_action = TimeoutAction::kNone;
  Controller::IoTimeoutFn io_timeout_fn;
  bool namespaces_changed = false;
  spec::Cqe pending_aen{};
  spec::Cqe last_admin{};
  AdminStatistics stats;
  Controller* handle = nullptr;
  // A secondary's duplicate of the admin vector's eventfd, taken at its
  // first admin wait and recorded (fd_holders.h RecordVectorHolder) so a
  // primary taking the group over keeps it registered; withdrawn before it
  // is closed. In a group (primary or secondary), also this process's own
  // admin wakeup eventfd (libclient/shared/admin_wakeup.h), recorded in its
  // mailbox and withdrawn before it is closed, and an epoll fd over both
  // (vector 0 and the wakeup): what admin_event_fd() returns there.
  // (controller_admin.cc)
  struct AdminWait {
    UniqueFd fd;
    UniqueFd wakeup;
    UniqueFd epoll;
    int epoll_vector = -1;  // the vector fd added to `epoll` (-1: none yet)
    uint32_t tried = 0;  // irq_holder_generation of the last failed take: retried when it changes
    SharedController* shared = nullptr;
    uint32_t slot = 0;
    uint32_t generation = 0;
    AdminWait() = default;
    AdminWait(const AdminWait&) = delete;
    AdminWait& operator=(const AdminWait&) = delete;
    ~AdminWait();
  } admin_wait;
  // The admin vector's eventfd this process may block on: the registering
  // process's own, a secondary's duplicate, or -1. Takes admin_mutex.
  int AdminVectorFd();
  // What a waiter blocks on: in a group, the epoll fd over AdminVectorFd()
  // and this process's wakeup eventfd (set up at the first call; the vector
  // added when it becomes available); standalone, AdminVectorFd(). -1
  // when neither exists. Takes admin_mutex.
  int AdminWaitFd();
  // Before closing the wakeup: withdraws its record (the admin queue and
  // its mailbox must still exist). Idempotent. Takes admin_mutex.
  void ForgetAdminWakeup();

  // Group mode (primary or secondary): the controller's shared state and
  // the shared admin queue (== admin). Null when standalone.
  SharedController* shared = nullptr;
  SharedAdminQueue* shared_admin = nullptr;
  bool owns_device = true;  // standalone/primary: shuts the controller down on detach
  bool adopted = false;     // a primary that took the group over adopted it (no init)
  // ...except over fabrics: the association died with the old primary, so
  // the adopting primary runs the init again on the group's admin ring.
  bool adopted_reinit = false;
  const GroupRole* role = nullptr;  // the process's part in the group (group_role.h)
  // Shadow doorbells: one page of shadow doorbells, one of EventIdx (DMA
  // memory, allocated at the first init); on when the controller accepted
  // Doorbell Buffer Config at the last init or reset. (A secondary reads
  // SharedController's copy instead.)
  DmaBuffer shadow_memory;
  bool shadow_doorbells = false;
  std::shared_ptr<int> alive = std::make_shared<int>(0);  // for hooks that may outlive us
  // Reaping (primary/reap_queues.h): while > 0, events that need admin round trips
  // or DMA memory (a namespace change) wait for the next ordinary poll.
  uint32_t defer_events = 0;
  // What a dead reserver or the entry's earlier use left (shared_registry.h,
  // Reservation): freed once this attach's init disabled the controller.
  std::vector<DmaBuffer> stale_memory;
  std::vector<uint64_t> stale_quarantined;

  // Marks the controller failed (logged once, with why).
  void Fail(const std::string& why);
  // Reads CSTS at most every 10 ms; marks failure on all-ones, CFS or a
  // lost transport. Returns !failed.
  bool CheckHealth(int64_t now_ns);
  // Replaces the namespace list, keeping the object of every namespace that
  // stays (applications hold Namespace references across refreshes).
  void SetNamespaces(std::vector<uint32_t> nsids, std::vector<spec::IdentifyNamespace> datas) {
    std::vector<std::unique_ptr<Namespace>> next;
    for (size_t i = 0; i < nsids.size(); ++i) {
      std::unique_ptr<Namespace> ns;
      for (auto& old : namespaces)
        if (old && old->id() == nsids[i]) ns = std::move(old);
      if (ns)
        *ns = Namespace(nsids[i], datas[i], data.ctrlr);
      else
        ns = std::make_unique<Namespace>(nsids[i], datas[i], data.ctrlr);
      next.push_back(std::move(ns));
    }
    namespaces = std::move(next);
    data.active_nsids = std::move(nsids);
    data.namespaces = std::move(datas);
  }
  // The doorbells of queue `qid` as its ring must use them: the real ones;
  // for I/O queues with shadow doorbells on, the shadow and EventIdx slots
  // (this process's state, or the group's SharedController in a secondary);
  // the transport's kick fd for the admin queue (always: a sleeping device
  // must see admin commands) and for shadow-doorbell I/O queues (a real
  // write there means the device asked to be woken). I/O queues without
  // shadow doorbells never kick (a system call per I/O; such a device polls).
  // (controller.cc)
  Doorbells doorbells(uint16_t qid);
};

}  // namespace nvmux
