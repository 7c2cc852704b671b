// Controller: one attached NVMe controller — its identify data, registers,
// namespaces, admin queue and the I/O queue pairs made from it.
//
//   auto ctrlr = nvmux::Controller::Connect(*env, *nvmux::TransportId::Parse("trtype:vfiouser traddr:/tmp/emu"));
//   nvmux::Namespace* ns = (*ctrlr)->GetNamespace(1);
//   auto qpair = (*ctrlr)->AllocIoQpair();
//
// Connect runs the init state machine (libclient/core/controller_init.h) to
// ready: disable, admin queue, enable, Identify Controller, Number of
// Queues, Doorbell Buffer Config (shadow doorbells, when offered), active
// namespaces, Identify Namespace each; then arms AERs and starts keep-alive
// when the controller asks for it (KAS). In a primary that took its group
// over from a dead primary, Connect adopts the published controller instead
// (primary/adopt_transport.h).
//
// Thread safety: ProcessAdminCompletions and every admin call may be made
// from any thread (the admin queue is serialised internally). Namespace
// objects change only when the admin-polling thread refreshes them.
// AllocIoQpair from any thread; each queue pair then belongs to one thread.
// Ownership: the Env outlives its controllers; queue pairs are destroyed
// before their controller; destroying the last handle of a controller shuts
// it down (CC.SHN, waiting for CSTS.SHST) and disconnects: the synchronous
// detach. nvmux/detach.h detaches without blocking (DetachContext), and
// nvmux/probe.h probes without blocking and notices new and removed
// controllers on repeated probes (Prober).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "nvmux/env.h"
#include "nvmux/io_types.h"
#include "nvmux/namespace.h"
#include "nvmux/qpair.h"
#include "nvmux/spec/identify.h"
#include "nvmux/spec/registers.h"
#include "nvmux/transport_id.h"
#include "nvmux/result.h"

namespace nvmux {

struct ControllerState;
class Transport;
class ControllerInit;
class ControllerAttach;
class DetachContext;

enum class Arbitration : uint8_t { kRoundRobin = 0, kWeightedRoundRobin = 1, kVendor = 7 };

// What a probe callback may change before a controller is attached (SPDK's
// spdk_nvme_ctrlr_opts, the parts nvmux honours).
struct ControllerOptions {
  uint16_t num_io_queues = 64;         // asked for with Set Features (Number of Queues)
  uint32_t io_queue_size = 256;        // default entries of a queue pair (clamped to CAP.MQES + 1)
  uint32_t io_queue_requests = 512;    // default requests of a queue pair
  uint16_t admin_queue_size = 32;      // 2..4096
  uint32_t admin_timeout_ms = 5000;    // init steps and synchronous admin commands
  uint32_t keep_alive_timeout_ms = 10000;  // used when the controller supports keep-alive (KAS != 0)
  Arbitration arbitration = Arbitration::kRoundRobin;
  // NVMe/TCP: TCP connect, ICReq and Fabrics Connect of each queue, and
  // every Property Get/Set, must answer within this.
  uint32_t connect_timeout_ms = 5000;
  bool tcp_header_digest = false;  // NVMe/TCP: ask for CRC32C header digests
  bool tcp_data_digest = false;    // NVMe/TCP: ask for CRC32C data digests
  // SPDK's use_cmb_sqs: put I/O submission queues in the controller's
  // Controller Memory Buffer (pcie only) when it has one that can hold SQs.
  // Each I/O queue id owns an equal share of the CMB (its size divided by
  // the queues granted, rounded down to 4 KiB), so a group's processes need
  // no allocator and a reaped queue id frees its share. Not strict: with no
  // usable CMB, or a queue larger than its share, the SQ goes to host
  // memory and a log line says why (IoQpair::sq_in_cmb() tells).
  // In a group the primary (nvmuxd --use-cmb-sqs) enables the CMB and
  // publishes it; a secondary's option then places its own SQs there.
  bool use_cmb_sqs = false;
  // Shadow doorbells (Doorbell Buffer Config) when the controller offers
  // them. On: a doorbell is a store to host memory plus a full fence and an
  // EventIdx read, and a doorbell write (a trap for an emulated device) only
  // when the device asks; a device that sleeps when idle (nvmux-emu) is
  // woken at once. Off: every doorbell is written, as SPDK does on
  // vfio-user (it configures them on pcie only). On a vfio-user device
  // whose doorbell page is mapped (nvmux-emu) off can be faster while
  // polling (0.2 us per I/O at QD 1 in one state of our test machine, no
  // gain in another, BENCHMARKS.md), but a device that slept sees a
  // doorbell only at its next wake-up (nvmux-emu: up to 5 ms after a
  // second of idleness). In a group the primary's option decides.
  bool shadow_doorbells = true;
};

// Per-command admin timeout handling (SPDK's timeout callback).
enum class TimeoutAction { kNone, kAbort, kReset };

struct AdminStatistics {
  uint64_t submitted = 0;
  uint64_t completed = 0;
  uint64_t timeouts = 0;
  uint64_t aens = 0;
  uint64_t blocks = 0;   // SyncAdmin waits that blocked on admin_event_fd()
  uint64_t wakeups = 0;  // of which ended by the admin interrupt (not the slice's end)
  // Blocks that ran to the slice's end, after which the completion was found
  // with no wakeup signalled since: a wakeup that did not come. In a group,
  // only a completion another process routed, and whose wakeup it had sent
  // (or could not send) before the slice's end; one that came after the
  // slice's end (a slow device or machine, a router preempted between
  // routing and signalling) is late and not counted.
  uint64_t missed_wakeups = 0;
};

class Controller {
 public:
  // Attaches the controller at `trid` (see transport_id.h).
  // Errors: ENOTSUP (tcp in a group), ENOENT/ECONNREFUSED (nothing at traddr:
  // names it), ENODEV/EBUSY/ENXIO (pcie: see pcie/pcie_transport.h), ETIMEDOUT
  // (an init step exceeded its deadline: names the state), EIO (the device
  // failed a command or set CSTS.CFS: names the status), ENOMEM, EINVAL.
  [[nodiscard]] static Result<std::unique_ptr<Controller>> Connect(Env& env, const TransportId& trid,
                                                                  const ControllerOptions& options = {});
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  const TransportId& trid() const;
  const ControllerOptions& options() const;
  const spec::IdentifyController& data() const;
  spec::Cap cap() const;
  spec::Vs vs() const;
  // Reads a controller register now (offset below the doorbells).
  // Errors: ENXIO (device gone), EPROTO (transport error).
  [[nodiscard]] Result<uint32_t> ReadRegister32(uint32_t offset);
  // Largest transfer of one command in bytes (MDTS; requests are split at it).
  uint32_t max_transfer_size() const;
  // Scatter-gather elements the driver can describe for one command.
  uint16_t max_sges() const;
  bool sgl_supported() const;
  uint16_t io_queues_granted() const;
  bool supports_log_page(uint8_t lid) const;
  bool supports_feature(uint8_t fid) const;
  // True once the controller failed (CSTS.CFS, removal, transport loss);
  // every queue pair then fails with ENXIO.
  bool failed() const;
  bool removed() const;

  std::span<const uint32_t> active_namespaces() const;
  // nullptr when `nsid` is not an active namespace.
  Namespace* GetNamespace(uint32_t nsid);
  // Re-reads the active namespace list and every namespace's data.
  // Errors: as SyncAdmin.
  [[nodiscard]] Status RefreshNamespaces();

  // Queue pairs. Errors: ENOSPC (no free queue id: names how many the
  // controller granted), EINVAL (queue size out of range: names it), ENXIO,
  // ENOMEM, the admin failures of Connect.
  [[nodiscard]] Result<std::unique_ptr<IoQpair>> AllocIoQpair(const IoQpairOptions& options = {});

  // Admin commands. `buffer` (DMA memory) is the data of the command, of
  // `length` bytes; the driver sets the command id and data pointer.
  // Errors: EAGAIN (admin queue full), ENXIO, EINVAL (buffer not DMA memory).
  [[nodiscard]] Status SubmitAdmin(const spec::Sqe& cmd, void* buffer, uint32_t length, CompletionFn fn,
                                   void* cb_arg);
  // Polls the admin queue: runs this process's admin callbacks, AEN
  // handling, keep-alive and timeout checks. Safe from any thread.
  // Call it periodically, at least every keep_alive_timeout_ms / 2 (5 s by
  // default): Keep Alive is sent from here, and a device that enforces the
  // Keep Alive Timer (nvmux-emu does, as NVMe/TCP targets do) fails a
  // controller nobody keeps alive (as with SPDK's
  // spdk_nvme_ctrlr_process_admin_completions).
  // Returns completions processed. Errors: ENXIO (controller failed).
  [[nodiscard]] Result<uint32_t> ProcessAdminCompletions();
  // The admin queue's interrupt (MSI-X vector 0) as an eventfd, so a
  // process can sleep until admin completions or asynchronous events
  // arrive instead of polling: readable once the device posted an admin
  // completion after the last ArmAdminEvent(). Over NVMe/TCP (the process
  // owning the admin connection), an epoll fd readable when the connection
  // has data or a group secondary committed an admin command for this
  // process to send. In a group (primary or secondary), an epoll fd over
  // the group's vector 0 (a secondary takes a duplicate from the primary at
  // its first use, fd_holders.h) and this process's own wakeup eventfd:
  // whoever drains vector 0 first routes the others' completions and
  // events to their mailboxes and signals their own wakeups
  // (libclient/shared/admin_wakeup.h), so every waiter wakes when
  // something is in its mailbox, whichever process took the interrupt.
  // -1 when the transport or device offers no MSI-X (or, in a secondary,
  // no live primary recorded the vectors yet; a TCP secondary): poll then.
  // Owned by the controller; do not read or close it. Race-free use:
  //   ctrlr->ArmAdminEvent(); (void)ctrlr->ProcessAdminCompletions();
  //   poll({admin_event_fd(), ...}, timeout <= keep_alive_timeout_ms / 2);
  int admin_event_fd() const;
  // Drains admin_event_fd() (the vector and the wakeup behind it; nothing
  // when it is -1). Call it before
  // ProcessAdminCompletions: a completion posted after the drain leaves the
  // fd readable, one posted before it is found by that poll.
  void ArmAdminEvent();
  // Submits and waits until done or admin_timeout_ms; returns the completion.
  // Polls for the first 200 us, then sleeps on admin_event_fd() in slices
  // of at most 100 ms (polls throughout when it is -1); a slice that runs
  // out counts in AdminStatistics as a block without a wakeup.
  // Errors: ETIMEDOUT, ENXIO, EIO when the device returned an error status
  // (the message names opcode and status; the completion is in the error's
  // detail via LastAdminCompletion()).
  [[nodiscard]] Result<spec::Cqe> SyncAdmin(const spec::Sqe& cmd, void* buffer = nullptr, uint32_t length = 0);
  spec::Cqe LastAdminCompletion() const;

  // Conveniences over SyncAdmin; buffers are DMA memory.
  [[nodiscard]] Result<uint32_t> GetFeature(uint8_t fid, uint32_t cdw11 = 0, void* buffer = nullptr,
                                            uint32_t length = 0, uint32_t nsid = 0);
  [[nodiscard]] Result<uint32_t> SetFeature(uint8_t fid, uint32_t cdw11, uint32_t cdw12 = 0, void* buffer = nullptr,
                                            uint32_t length = 0, uint32_t nsid = 0);
  [[nodiscard]] Status GetLogPage(uint8_t lid, uint32_t nsid, void* buffer, uint32_t length, uint64_t offset = 0);
  [[nodiscard]] Status Identify(uint8_t cns, uint32_t nsid, void* buffer, uint16_t cntid = 0);
  // Namespace management: returns the new namespace id.
  [[nodiscard]] Result<uint32_t> CreateNamespace(const spec::IdentifyNamespace& data);
  [[nodiscard]] Status DeleteNamespace(uint32_t nsid);
  [[nodiscard]] Status AttachNamespace(uint32_t nsid, std::span<const uint16_t> controllers);
  [[nodiscard]] Status DetachNamespace(uint32_t nsid, std::span<const uint16_t> controllers);
  // Format NVM: LBA format index, metadata settings, PI, secure erase (SES).
  [[nodiscard]] Status Format(uint32_t nsid, uint8_t lbaf, bool md_extended = false, uint8_t pi = 0,
                              uint8_t ses = 0);
  [[nodiscard]] Status AbortCommand(uint16_t sqid, uint16_t cid);

  // Controller-level reset from any state: outstanding I/O completes
  // aborted, the controller is disabled and brought up again, and every
  // queue pair's queues are created again. Errors: as Connect.
  [[nodiscard]] Status Reset();

  // Asynchronous events: `fn(cb_arg, cpl)` for each AEN (cpl.cdw0 holds
  // type/info/log page). Namespace-changed notices refresh namespaces first.
  void SetAerCallback(CompletionFn fn, void* cb_arg);
  // Admin commands outstanding longer than `timeout_us` call `fn` and then
  // take `action`. 0 disables.
  using TimeoutFn = std::function<void(uint16_t cid)>;
  void SetAdminTimeout(uint64_t timeout_us, TimeoutAction action, TimeoutFn fn = {});
  // I/O commands on the device longer than `timeout_us` (SPDK's
  // spdk_nvme_ctrlr_register_timeout_callback, for I/O; admin commands keep
  // SetAdminTimeout): the queue pair that owns the command calls
  // `fn(qid, cid)` once for it, from its ProcessCompletions on its owner's
  // thread, then takes `action`:
  //   kNone   nothing more (the command stays outstanding).
  //   kAbort  an Abort admin command for (qid, cid). A device that aborts
  //           completes the command with 0/07. If the command is still
  //           outstanding `timeout_us` after the Abort was sent, the driver
  //           escalates to kReset (what Linux does).
  //   kReset  asks for a controller reset, which the next
  //           ProcessAdminCompletions performs (never inside a queue pair's
  //           poll, nor while a synchronous admin call is under way):
  //           Reset() with its contract — every queue pair's outstanding
  //           requests complete with 0/08 and its queues are created again,
  //           so no queue pair may be polled concurrently. A secondary
  //           (group mode) never resets the primary's controller: it logs
  //           and leaves the command outstanding (Disconnect gives it up).
  // kAbort's completion and kReset both need the admin queue polled. The
  // time counts from when the command went to the device (requests waiting
  // for a tracker are not timed); checks run every timeout_us / 8 (at least
  // 100 us) during polls, so `fn` runs between timeout_us and about
  // 1.125 * timeout_us after submission, if the queue pair is polled.
  // Commands sent before a queue pair saw the setting (at its first poll
  // after this call) count from that poll.
  // Cost while off (0): one predictable branch per submission and per poll;
  // while on, one clock read per command and per poll. `fn` is copied into
  // each queue pair, so it may run on several queue pairs' threads at once;
  // it must not destroy the queue pair. Safe from any thread; each queue
  // pair sees the change at its next poll.
  using IoTimeoutFn = std::function<void(uint16_t qid, uint16_t cid)>;
  void SetIoTimeout(uint64_t timeout_us, TimeoutAction action, IoTimeoutFn fn = {});

  const AdminStatistics& admin_statistics() const;
  Env& env() const;

  // For queue pairs and transports (not for applications).
  ControllerState& state() { return *s_; }

 private:
  explicit Controller(std::unique_ptr<ControllerState> state);
  // After init: AERs armed, keep-alive scheduled.
  [[nodiscard]] Status ArmAdminBackground();
  // Schedules Keep Alive at half the KATO the device reports (none if 0).
  void ArmKeepAlive();
  void SubmitAer();
  void OnEvent(const spec::Cqe& cpl);
  [[nodiscard]] Status RunInit();
  // RunInit in pieces, for ControllerAttach (libclient/core/controller_attach.h),
  // which steps the machine without blocking: the init state machine over
  // this controller's admin queue, and taking its result.
  friend class ControllerAttach;
  std::unique_ptr<ControllerInit> StartInit();
  [[nodiscard]] Status FinishInit(const ControllerInit& init);
  // Detaching (DetachContext, the destructor). BeginDetach, idempotent:
  // queue pairs cut off, admin commands aborted, the group entry retired;
  // returns true when a shutdown notification (CC.SHN) is due (the
  // controller is ours and healthy). `detached_`: the shutdown is done.
  friend class DetachContext;
  bool BeginDetach();
  bool detach_begun_ = false;
  bool detached_ = false;
  void AbortAllAdmin();
  std::unique_ptr<ControllerState> s_;
};

// Probing (SPDK's spdk_nvme_probe): for every controller `trid` names (one
// for vfiouser; in a secondary, the published controllers it matches; a
// filter for pcie when that transport exists), `probe` decides whether to
// attach it (and may edit its options), `attach` gets the attached
// controller. Returns the controllers attached. One-shot: each call attaches
// what it finds; nvmux/probe.h has the asynchronous form and the Prober,
// whose repeated probes report only new controllers and removed ones.
// Errors: the first attach error when nothing attached (see ProbeContext::Poll).
using ProbeFn = std::function<bool(const TransportId& trid, ControllerOptions& options)>;
using AttachFn = std::function<void(const TransportId& trid, Controller& ctrlr)>;
[[nodiscard]] Result<std::vector<std::unique_ptr<Controller>>> Probe(Env& env, const TransportId& trid,
                                                                     const ProbeFn& probe, const AttachFn& attach);

}  // namespace nvmux
