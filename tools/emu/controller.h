// Controller: the emulated NVMe controller — registers, queues, admin and
// NVM command sets — independent of the transport.
//
// The vfio-user server calls the register, DMA, interrupt and reset entry
// points from its socket thread; the poller thread calls Poll(). Doorbells
// live in a shared page (the memfd the client mmaps) that Poll() reads;
// writes that arrive by message go through WriteDoorbell().
//
// Behaviour follows /work/shared/CONFORMANCE.md; tools/emu/README.md lists
// what is implemented and the choices made where sources differ.
//
// Thread safety: every public method takes the controller mutex (removed()
// and Running() read atomics; faults() is a thread-safe FaultInjector); they
// may be called from any thread. Poll() holds it while it processes a batch, so
// DMA_UNMAP never races with a command using that memory; it releases it
// only to exchange DMA_READ/WRITE messages for fd-less command data, when
// no command holds pointers into client memory (fdless_staging.h).
// Ownership: the doorbell page is borrowed and must outlive the controller.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "nvmux/spec/nvme.h"
#include "shm/base/result.h"
#include "shm/base/unique_fd.h"
#include "tools/emu/dma_space.h"
#include "tools/emu/emu_namespace.h"
#include "tools/emu/faults.h"
#include "tools/emu/fdless_staging.h"
#include "tools/emu/msix_table.h"
#include "tools/emu/options.h"
#include "tools/emu/prp.h"
#include "tools/emu/sgl.h"

namespace nvmux::emu {

class Controller {
 public:
  static constexpr uint32_t kMaxNamespaces = 32;  // Identify NN
  static constexpr uint8_t kAerl = 3;             // up to 4 outstanding AERs
  static constexpr uint32_t kErrorLogEntries = 64;
  static constexpr uint32_t kBar0Size = 0x4000;
  static constexpr uint16_t kCntlid = 1;
  static constexpr uint8_t kKas = 10;  // Identify KAS: Keep Alive granularity in 100 ms units (1 s)
  // NVM capacity that Namespace Management may allocate (TNVMCAP);
  // ram-lazy backings reserve no memory until written.
  static constexpr uint64_t kTotalCapacity = 1ull << 40;

  // doorbells: the 4 KiB doorbell page (BAR0 0x1000), zeroed by the caller.
  [[nodiscard]] static Result<std::unique_ptr<Controller>> Create(const EmulatorOptions& options,
                                                                  uint32_t* doorbells);
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  // BAR0 register access below 0x1000: size 4 or 8, naturally aligned.
  // EINVAL otherwise. Reads of unimplemented registers return 0.
  [[nodiscard]] Result<uint64_t> ReadRegister(uint32_t offset, uint32_t size);
  [[nodiscard]] Status WriteRegister(uint32_t offset, uint32_t size, uint64_t value);
  // A doorbell write that came by message (offset within BAR0, >= 0x1000).
  void WriteDoorbell(uint32_t offset, uint32_t value);

  // fd < 0: an fd-less region (DmaSpace::MapFdless; fd_offset ignored).
  [[nodiscard]] Status MapDma(int fd, uint64_t fd_offset, uint64_t iova, uint64_t size, bool readable,
                              bool writable);
  [[nodiscard]] Status UnmapDma(uint64_t iova, uint64_t size);
  // The client went away (or unmapped all): forget its memory and
  // interrupts, keep the rest. Poll() then does nothing until a DMA_MAP
  // with an fd brings shared memory again.
  void DropClient();

  // What a client holds in the controller, for the control socket's
  // `status` (after a client goes, dma_maps and msix_fds are 0).
  struct ClientState {
    size_t dma_maps = 0;     // every DMA region, fd-less ones included
    size_t fdless_maps = 0;  // of which fd-less
    size_t msix_fds = 0;     // MSI-X vectors with an eventfd
    size_t io_sqs = 0;       // I/O queues (kept across clients until a reset)
    size_t io_cqs = 0;
  };
  ClientState client_state() const;

  // MSI-X vector eventfds (taken over); an invalid fd clears the vector, a
  // valid one unmasks it (msix_table.h). ClearMsix masks every vector.
  uint32_t msix_vectors() const { return msix_vectors_; }
  [[nodiscard]] Status SetMsixEventfds(uint32_t start, std::vector<UniqueFd> fds);
  void ClearMsix();
  // MSI-X Enable in config space (the server tells on each config write): a
  // vector's message is sent only while it is set, as a PCI function's; a
  // completion while it is clear counts as dropped (no INTx either).
  void SetMsixEnabled(bool enabled);
  // The MSI-X table and PBA (BAR4, BAR5); null if its memfd could not be made
  // (then no vector is ever masked and the table is not mmap-able).
  MsixTable* msix_table() const { return msix_table_.get(); }

  // Controller-level reset (DEVICE_RESET, FLR): as CC.EN 1 -> 0, and CC = 0.
  void Reset();

  // Processes queued work; returns whether anything was done. A command
  // whose data lies in fd-less DMA regions is served through the messenger
  // (fdless_staging.h) with the controller mutex released during the
  // exchange, so the socket thread can take it meanwhile.
  bool Poll();
  // The transport that reaches fd-less regions (borrowed; null: commands
  // into them get Data Transfer Error). Set before the poller starts, or
  // to null after it stopped.
  void SetDmaMessenger(DmaMessenger* messenger);

  // Doorbell kicks (the vfio-user ioeventfd of the doorbell page). The
  // server calls SetClientKicks(true) once it handed the current client the
  // eventfd: that client writes it after every admin doorbell write and
  // after every I/O doorbell write its EventIdx check calls for. With kicks
  // and shadow doorbells both on, the device may sleep until a kick:
  //  * while it polls, each I/O queue's EventIdx is one behind the value it
  //    consumed ("don't notify me"), so the host writes no real doorbells;
  //  * PrepareToSleep() sets each SQ's EventIdx to its consumed tail (and a
  //    CQ's to its head when completions wait for room), fences, re-reads
  //    every doorbell, and says whether sleeping is safe; the poller then
  //    waits on the kick eventfd; EndSleep() when it wakes.
  // Without kicks or shadow doorbells the EventIdx follows the consumed
  // values (as QEMU does) and PrepareToSleep() always refuses: the poller
  // keeps its short sleeps.
  void SetClientKicks(bool on);
  // nullopt: do not sleep (work arrived, or kicks/shadow doorbells are off,
  // or delayed completions are held). Else the longest sleep in ns before a
  // timer (a deferred CFS) needs the poller; INT64_MAX when none.
  std::optional<int64_t> PrepareToSleep();
  void EndSleep();
  // How often PrepareToSleep() published "notify me", slept or not (work
  // found in the re-read takes it back): each may draw real doorbells.
  uint64_t notify_arms() const { return notify_arms_.load(std::memory_order_relaxed); }
  // Whether CSTS.RDY=1 and CFS=0, i.e. Poll() may find work in the mmapped
  // doorbells (otherwise only a trapped register write can create work).
  bool Running() const { return running_.load(std::memory_order_relaxed); }

  // Test hooks: backend faults for namespace nsid.
  void SetBackendFaults(uint32_t nsid, bool fail_reads, bool fail_writes);

  // Fault injection (faults.h). The injector is consulted for every fetched
  // command; rules may be added or cleared from any thread. Rules in
  // EmulatorOptions::faults are armed by Create.
  FaultInjector& faults() { return faults_; }
  // Sets CSTS.CFS now (as a failed queue access would); a reset clears it.
  void InjectFatal();
  // An asynchronous event (the control socket's `aen`): delivered on an
  // outstanding AER, or when the host next arms one.
  void InjectEvent(uint8_t type, uint8_t info, uint8_t log_page);
  // Surprise removal: from now on registers read all-ones and ignore writes,
  // the doorbell page is filled with 0xFF, nothing is fetched or completed.
  // Irreversible. The transport closes its side (Server::Remove).
  void SurpriseRemove();
  bool removed() const { return removed_.load(std::memory_order_acquire); }
  // Inverts every data byte of block lba of namespace nsid (so a read or a
  // data-verify sees corruption). ENOENT: no such namespace; EINVAL: lba out
  // of range or a null backing; the backing's error otherwise.
  [[nodiscard]] Status CorruptBlock(uint32_t nsid, uint64_t lba);
  // The queues that exist on the device and the AERs it holds, for the
  // control socket's `status`: "aers=N sqs=1,2 cqs=1,2" (I/O queues only;
  // "-" when none), so tests can compare a host's records with the device.
  std::string QueueSummary() const;
  // Per MSI-X vector, for `status`: "vectors=V:fd:N[+P],..." for every
  // vector that has an eventfd or raised or holds interrupts: fd/nofd, N
  // interrupts raised (eventfd writes, or would-be writes without an fd),
  // P completions held back by interrupt coalescing; "vectors=-" when none.
  // Then "coalescing=THR:TIME" (FID 08h as set: 0's based threshold,
  // 100 us units).
  std::string VectorSummary() const;
  // When the poller must run to raise an interrupt that coalescing holds
  // back (its aggregation time ends); INT64_MAX when none is held.
  int64_t CoalescingDeadline() const;

 private:
  struct CompletionQueue {
    uint16_t qid = 0;
    uint16_t size = 0;  // entries
    uint64_t base = 0;
    uint16_t head = 0;
    uint16_t tail = 0;
    uint8_t phase = 1;
    bool ien = false;
    uint16_t iv = 0;
    uint32_t sq_count = 0;             // SQs bound to this CQ
    std::deque<spec::Cqe> overflow;    // completions waiting for room
    uint32_t last_bad_head = UINT32_MAX;
  };
  struct SubmissionQueue {
    uint16_t qid = 0;
    uint16_t size = 0;
    uint64_t base = 0;
    uint16_t cqid = 0;
    uint16_t head = 0;
    uint16_t tail = 0;
    uint32_t last_bad_tail = UINT32_MAX;
  };
  // Outcome of one command: a status and DW0, or deferred (AER).
  struct Outcome {
    spec::CompletionStatus status;
    uint32_t dw0 = 0;
    bool deferred = false;
  };
  // A completion held back by a delay fault until due_ns.
  struct DelayedCompletion {
    int64_t due_ns;
    uint16_t sqid;
    uint16_t cid;
    Outcome outcome;
  };
  struct PendingEvent {
    uint8_t type;
    uint8_t info;
    uint8_t log_page;
  };
  struct Features {
    uint32_t arbitration = 0;
    uint32_t power_management = 0;
    uint16_t temp_over = 0x157;  // 343 K
    uint16_t temp_under = 0;
    uint32_t error_recovery = 0;
    uint32_t volatile_write_cache = 1;
    uint16_t nsqa = 0;  // allocated I/O SQs (1's based)
    uint16_t ncqa = 0;
    uint32_t interrupt_coalescing = 0;
    uint32_t async_event_config = 0;
    uint64_t timestamp_base_ms = 0;
    int64_t timestamp_set_at_ns = 0;
    bool timestamp_set = false;
    uint32_t keep_alive_timer = 0;  // KATO in ms, rounded up to KAS granularity; 0 = off
    // Interrupt Vector Configuration: Coalescing Disable per I/O vector
    // (index = vector). Vector 0 serves the admin CQ, where coalescing never
    // applies, so it always reports CD = 1.
    std::vector<uint8_t> iv_coalescing_disabled;
    uint8_t host_behavior_acre = 0;  // Host Behavior Support byte 0
  };

  Controller(const EmulatorOptions& options, uint32_t* doorbells);

  // Registers and lifecycle (controller.cc).
  uint32_t Read32Locked(uint32_t offset) const;
  void Write32Locked(uint32_t offset, uint32_t value);
  void WriteCc(uint32_t value);
  void Enable();
  void ResetLocked();
  void Fatal(const char* why);
  // Keep Alive: (re)starts the timer (Set Features KATO, Keep Alive command).
  void RestartKeepAlive();
  // Whether a non-zero KATO passed without a Keep Alive (then enforced:
  // error log entry and CSTS.CFS). Called by Poll.
  void CheckKeepAlive(int64_t now_ns);
  // When the keep-alive timer expires, if enforced and running.
  std::optional<int64_t> KeepAliveDeadline() const;
  uint32_t LoadDoorbell(uint32_t index) const;
  void StoreDoorbell(uint32_t index, uint32_t value);
  // SQ tail / CQ head as the host last wrote it: the shadow doorbell buffer
  // for I/O queues once Doorbell Buffer Config ran, else the doorbell page.
  // nullopt (and CFS set) if the shadow buffer is no longer DMA-mapped.
  std::optional<uint32_t> ReadHostDoorbell(uint32_t index);
  // Publishes the device's position in the EventIdx buffer (shadow doorbells).
  void WriteEventIdx(uint32_t index, uint32_t value);
  // What EventIdx says after the device consumed `value` of a queue of
  // `size` entries while it polls: `value` (no kicks: QEMU's behaviour), or
  // one behind it (kicks: no notification wanted while polling).
  uint32_t PollingEventIdx(uint32_t value, uint32_t size) const {
    return client_kicks_.load(std::memory_order_relaxed) ? (value + size - 1) % size : value;
  }
  // Whether CQ `cq` needs its head doorbell to make progress (completions
  // wait for room, or an SQ bound to it has unfetched entries).
  bool CqBlocked(const CompletionQueue& cq) const;
  // Every I/O queue's EventIdx as while polling (PollingEventIdx).
  void SetPollingEventIdx();
  // The polling EventIdx of doorbell `index` after its value moved to
  // `value`: written at once without kicks (the host rings on every
  // update, as QEMU's device asks), lazily with kicks (see
  // event_idx_written_): the host then rings only if its queue runs over
  // three quarters full past a stale value, which costs a spurious kick.
  void UpdatePollingEventIdx(uint32_t index, uint32_t value, uint32_t size);
  // A queue was created or deleted: its real doorbell, and its shadow
  // doorbell and EventIdx if configured, restart at 0.
  void ResetQueueDoorbell(uint32_t index);
  void ScanStrayDoorbells();
  uint64_t page_size() const { return page_size_; }

  // Queue processing (queue_engine.cc).
  bool ProcessSq(SubmissionQueue& sq);
  // Serves the fd-less staging of the command ProcessSq parked or held:
  // rounds of DMA_READ / DMA_WRITE with `lock` released, then re-running
  // the parked command or posting the held completion.
  void ServeFdless(std::unique_lock<std::mutex>& lock);
  // Records an outcome for completion (error log, delay faults, CQ).
  void Finish(uint16_t sqid, const spec::Sqe& sqe, const Outcome& outcome, uint64_t delay_us);
  void UpdateCqHead(CompletionQueue& cq);
  bool CqHasRoom(const CompletionQueue& cq) const;
  void PostCompletion(CompletionQueue& cq, spec::Cqe cqe);
  bool WriteCqe(CompletionQueue& cq, const spec::Cqe& cqe);
  void Complete(uint16_t sqid, uint16_t cid, const Outcome& outcome);
  void RecordError(uint16_t sqid, uint16_t cid, spec::CompletionStatus status, uint32_t nsid);
  void RaiseEvent(uint8_t type, uint8_t info, uint8_t log_page);
  void DeliverEvents();
  // Posts delayed completions that are due; whether any was posted.
  bool PostDelayed(int64_t now_ns);
  // A CQ got entries: raises its vector's interrupt if IEN, unless
  // Interrupt Coalescing (FID 08h) holds it back (I/O vectors whose
  // Interrupt Vector Configuration does not set CD; never vector 0 / the
  // admin CQ): then it is raised once THR + 1 completions are held on the
  // vector or TIME x 100 us passed since the first (FlushCoalesced).
  void Interrupt(const CompletionQueue& cq);
  // Sends vector iv's message (writes its eventfd) unless the host masked
  // it: then its pending bit is set, and DeliverUnmasked sends it once the
  // vector is unmasked. Within a Poll pass the messages are held and sent
  // when the pass ends (SendHeldSignals), each vector's as one eventfd write
  // of their count: as QEMU's device asserts its interrupt once it has
  // posted a batch of entries. Waking the host at the first completion of
  // a batch would let it (on a shared core, the scheduler preempts the
  // device for the woken) take one entry per wake-up.
  void RaiseVector(uint16_t iv);
  void SendHeldSignals();
  void DeliverUnmasked();
  void ResetMsixTableLocked();  // every vector masked, nothing pending
  void FlushCoalesced(int64_t now_ns);
  int64_t CoalescingDeadlineLocked() const;

  // Admin commands (admin_queues.cc, admin_identify.cc, admin_features.cc).
  Outcome ExecuteAdmin(const spec::Sqe& sqe);
  Outcome CreateIoCq(const spec::Sqe& sqe);
  Outcome CreateIoSq(const spec::Sqe& sqe);
  Outcome DeleteIoCq(const spec::Sqe& sqe);
  Outcome DeleteIoSq(const spec::Sqe& sqe);
  Outcome Abort(const spec::Sqe& sqe);
  Outcome AsyncEventRequest(const spec::Sqe& sqe);
  Outcome Identify(const spec::Sqe& sqe);
  Outcome GetLogPage(const spec::Sqe& sqe);
  Outcome GetFeatures(const spec::Sqe& sqe);
  Outcome SetFeatures(const spec::Sqe& sqe);
  Outcome FormatNvm(const spec::Sqe& sqe);             // admin_format.cc
  Outcome NamespaceManagement(const spec::Sqe& sqe);   // admin_ns_mgmt.cc
  Outcome NamespaceAttachment(const spec::Sqe& sqe);
  // Identify CNS 10h-13h into bounce_.
  spec::CompletionStatus IdentifyAllocated(uint8_t cns, uint32_t nsid, uint16_t cntid);
  void NamespaceChanged(uint32_t nsid);
  uint64_t AllocatedBytes() const;
  Outcome DoorbellBufferConfig(const spec::Sqe& sqe);  // shadow_doorbell.cc
  // Maps the command's data pointer (PRPs, or an SGL for I/O commands with
  // PSDT 01b) for len bytes into host_.
  spec::CompletionStatus MapData(const spec::Sqe& sqe, uint64_t len, bool device_writes);
  // Copies bytes to / from the command's data pointer.
  spec::CompletionStatus TransferToHost(const spec::Sqe& sqe, std::span<const uint8_t> data);
  spec::CompletionStatus TransferFromHost(const spec::Sqe& sqe, std::span<uint8_t> data);
  void FillIdentifyController(spec::IdentifyController& id) const;
  void BuildEffectsLog(spec::CommandsSupportedAndEffectsLog& log) const;
  bool AdminOpcodeSupported(uint8_t opc) const;
  bool IoOpcodeSupported(uint8_t opc) const;
  uint64_t MaxTransferBytes() const;

  // NVM commands (io_commands.cc).
  Outcome ExecuteIo(const spec::Sqe& sqe);
  Outcome ReadWrite(Namespace& ns, const spec::Sqe& sqe);
  Outcome WriteZeroes(Namespace& ns, const spec::Sqe& sqe);
  Outcome WriteUncorrectable(Namespace& ns, const spec::Sqe& sqe);
  Outcome Verify(Namespace& ns, const spec::Sqe& sqe);
  Outcome DatasetManagement(Namespace& ns, const spec::Sqe& sqe);
  Outcome Copy(Namespace& ns, const spec::Sqe& sqe);
  // reservations.cc
  Outcome ReservationRegister(Namespace& ns, const spec::Sqe& sqe);
  Outcome ReservationAcquire(Namespace& ns, const spec::Sqe& sqe);
  Outcome ReservationRelease(Namespace& ns, const spec::Sqe& sqe);
  Outcome ReservationReport(Namespace& ns, const spec::Sqe& sqe);
  Outcome Flush(const spec::Sqe& sqe);
  // Fused Compare + Write: both outcomes, in submission order.
  std::pair<Outcome, Outcome> ExecuteFused(const spec::Sqe& first, const spec::Sqe& second);
  // Active (allocated and attached) namespace, or null.
  Namespace* FindNamespace(uint32_t nsid);
  // Allocated namespace, attached or not, or null.
  Namespace* FindAllocated(uint32_t nsid);

  mutable std::mutex mutex_;
  const EmulatorOptions options_;
  uint32_t* const doorbells_;
  const uint32_t msix_vectors_;
  std::vector<std::unique_ptr<Namespace>> namespaces_;  // index nsid - 1; null if inactive

  // Registers.
  spec::Cap cap_;
  spec::Cc cc_;
  spec::Csts csts_;
  spec::Aqa aqa_;
  uint64_t asq_ = 0;
  uint64_t acq_ = 0;
  uint32_t intms_ = 0;
  uint64_t page_size_ = 4096;

  DmaSpace dma_;
  std::vector<std::optional<SubmissionQueue>> sqs_;  // index qid
  std::vector<std::optional<CompletionQueue>> cqs_;
  std::vector<UniqueFd> msix_;
  // Per MSI-X vector (index = vector): interrupts raised, interrupts the
  // mask held back, and completions held back by coalescing since the
  // first held one (pending_since_ns).
  struct VectorState {
    uint64_t raised = 0;
    uint64_t masked = 0;
    uint64_t disabled = 0;  // not sent: MSI-X Enable was clear
    uint32_t pending = 0;
    int64_t pending_since_ns = 0;
    uint64_t held = 0;    // messages raised in this Poll pass, not yet sent
    uint64_t writes = 0;  // eventfd writes that sent the raised messages
  };
  std::vector<VectorState> vectors_;
  std::unique_ptr<MsixTable> msix_table_;
  std::vector<uint16_t> masked_pending_;  // the vectors whose pending bit is set
  bool hold_signals_ = false;    // in a Poll pass: RaiseVector holds its message
  std::vector<uint16_t> held_vectors_;  // the vectors whose held is not 0
  std::atomic<bool> msix_enabled_{false};  // written by the server thread, read by the poller
  Features features_;
  int64_t keep_alive_at_ns_ = 0;  // last Keep Alive (or KATO set)

  // Asynchronous events.
  std::deque<uint16_t> aer_cids_;
  std::deque<PendingEvent> pending_events_;
  uint8_t masked_event_types_ = 0;  // bit per type: reported, log not yet read

  // Shadow doorbells (Doorbell Buffer Config); 0 when disabled.
  uint64_t shadow_doorbells_ = 0;
  uint64_t event_idx_ = 0;
  // The last value written to each EventIdx slot (index = doorbell index):
  // while polling with kicks, a slot is rewritten only when it fell a
  // quarter of the queue behind, so the host reads a line that stays in its
  // cache instead of one the device dirties on every command.
  std::vector<uint32_t> event_idx_written_;

  // Logs.
  std::deque<spec::ErrorInformationEntry> error_log_;  // newest first
  uint64_t error_count_ = 0;
  std::vector<uint32_t> changed_namespaces_;
  uint64_t host_read_commands_ = 0;
  uint64_t host_write_commands_ = 0;
  uint64_t data_units_read_ = 0;  // 512-byte units (reported in thousands)
  uint64_t data_units_written_ = 0;
  uint64_t media_errors_ = 0;

  // Scratch buffers reused across commands.
  HostBuffer host_;
  HostBuffer meta_;
  std::vector<uint8_t> bounce_;
  uint32_t poll_count_ = 0;
  std::atomic<bool> running_{false};
  std::atomic<uint64_t> notify_arms_{0};  // "notify me" published (PrepareToSleep)
  std::atomic<bool> client_kicks_{false};  // the client took the doorbell ioeventfd

  // Fd-less command data (fdless_staging.h). A command waiting for bytes
  // is parked: its SQ entry is fetched again (with the same fault
  // decision); one whose device->host bytes are staged has its completion
  // held until they were written back.
  FdlessStaging staging_;
  DmaMessenger* messenger_ = nullptr;
  struct Parked {
    bool active = false;
    uint16_t sqid = 0;
    uint16_t head = 0;
    FaultDecision fault;
  } parked_;
  struct Held {
    bool active = false;
    uint16_t sqid = 0;
    spec::Sqe sqe;
    Outcome outcome;
    uint64_t delay_us = 0;
  } held_;
  // Bumped by a reset and by DropClient: a round that finds it changed
  // drops what it staged (the queues or the client are gone).
  uint64_t generation_ = 0;

  // Fault injection.
  FaultInjector faults_;
  std::vector<DelayedCompletion> delayed_;  // dropped by a controller reset
  std::atomic<bool> removed_{false};
  bool detached_ = false;  // DropClient() ran and no shared memory was mapped since
};

}  // namespace nvmux::emu
