// IoQpair: one I/O submission/completion queue pair of a controller, owned
// by one thread. Every I/O call builds the command, splits it where the
// controller's maximum transfer size or the namespace's optimal I/O boundary
// require (children complete the parent once, with the first error), builds
// PRPs or an SGL in the request's preallocated tracker, and rings the doorbell
// (or leaves that to the next ProcessCompletions with delay_cmd_submit).
// Nothing is allocated per I/O: requests and trackers are preallocated;
// when trackers run out, requests wait in the queue pair and are submitted
// as completions free trackers.
//
// Errors every submission can return (the request is not queued, the
// callback will not run):
//   EINVAL  malformed: LBA range beyond the namespace (names LBA, count and
//           size), count 0 or over 65536, buffer not in DMA memory (allocate
//           with Env::AllocDma), not dword-aligned, or wrong size; names the value
//   ENOMEM  no free request (io_queue_requests): poll and retry
//   ENXIO   the queue pair or its controller failed (removed, CSTS.CFS,
//           transport lost, reset in progress)
//   ENOTSUP the namespace/controller does not offer the command
//
// Thread safety: none. One thread submits and polls a queue pair (no locks
// on the I/O path); several queue pairs may be used from several threads.
// Ownership: created by Controller::AllocIoQpair; must be freed (destroyed)
// before its controller. Buffers passed to a call must stay valid until its
// callback ran.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "nvmux/io_types.h"
#include "nvmux/namespace.h"
#include "nvmux/spec/command.h"
#include "nvmux/result.h"

namespace nvmux {

class Controller;
struct QpairState;

// How a thread waits for completions (IoQpair::WaitCompletions,
// PollGroup::WaitCompletions). The mode is fixed when the queue pair is
// created: event and hybrid create the completion queue with interrupts
// enabled (IEN, vector = the queue id).
enum class CompletionMode : uint8_t {
  kPoll,    // spin on the completion queue: lowest latency, one core busy while waiting
  kEvent,   // arm the interrupt and block on event_fd() until the device signals
  kHybrid,  // spin for hybrid_spin_us after the last completion (or the start of
            // the wait), then arm and block as kEvent; the spin shrinks while it
            // does not pay (spin_budget.h)
};
// "poll", "event", "hybrid".
const char* CompletionModeName(CompletionMode mode);

struct IoQpairOptions {
  uint32_t io_queue_size = 0;      // entries; 0: the controller's option (<= CAP.MQES + 1)
  uint32_t io_queue_requests = 0;  // requests; 0: the controller's option (>= io_queue_size)
  uint8_t qprio = 0;               // 0 urgent .. 3 low (with weighted round robin arbitration)
  bool delay_cmd_submit = false;   // ring the SQ doorbell once per ProcessCompletions
  bool create_only = false;        // allocate without creating on the device; Connect() later
  // Queue memory the caller supplies (SPDK's sq/cq buffer options), instead
  // of the driver allocating it: DMA memory (Env::AllocDma), 4 KiB-aligned,
  // at least io_queue_size x 64 bytes (SQ) / x 16 bytes (CQ), contiguous
  // in IOVA; owned by the caller and kept until the queue pair is destroyed.
  // Either, both or neither. Errors: EINVAL naming the address or size.
  void* sq_buffer = nullptr;
  size_t sq_buffer_size = 0;
  void* cq_buffer = nullptr;
  size_t cq_buffer_size = 0;
  // Completion waiting (see CompletionMode). Event and hybrid need an
  // interrupt vector for the queue: ENOTSUP at creation, naming the mode and
  // the transport, when the transport or the device has none (no MSI-X
  // vectors, fewer vectors than the queue id, a group whose primary was
  // taken over); nothing is left allocated then.
  CompletionMode mode = CompletionMode::kPoll;
  uint32_t hybrid_spin_us = 50;
};

struct QpairStatistics {
  uint64_t submitted = 0;
  uint64_t completed = 0;
  uint64_t polls = 0;
  uint64_t idle_polls = 0;
  uint64_t sq_doorbell_writes = 0;
  uint64_t cq_doorbell_writes = 0;
  uint64_t shadow_doorbell_updates = 0;  // doorbell values written to the shadow buffer instead
  uint64_t queued = 0;  // requests that waited for a tracker
  uint64_t split = 0;   // parents split into children
  uint64_t blocks = 0;   // WaitCompletions blocked on event_fd() (event/hybrid)
  uint64_t wakeups = 0;  // of which ended by the device's interrupt (not a timeout)
  // NVMe/TCP's queue connection (zero on other transports): PDUs each way,
  // writes with in-capsule data, R2Ts received and the H2CData PDUs that
  // answered them, C2HData PDUs received, the sendmsg calls that carried
  // the PDUs sent, and the digests negotiated.
  uint64_t tcp_pdus_sent = 0;
  uint64_t tcp_pdus_received = 0;
  uint64_t tcp_in_capsule_writes = 0;
  uint64_t tcp_r2ts = 0;
  uint64_t tcp_h2c_data = 0;
  uint64_t tcp_c2h_data = 0;
  uint64_t tcp_send_calls = 0;
  bool tcp_header_digest = false;
  bool tcp_data_digest = false;
};

// An error the caller asks the driver to inject (SPDK's
// spdk_nvme_qpair_add_cmd_error_injection): the next `count` commands with
// `opcode` complete with (sct, sc) without reaching the device, or, with
// `do_not_submit`, are held back until `timeout_us` passes (0: never).
struct ErrorInjection {
  uint8_t opcode = 0;
  uint32_t count = 1;
  uint8_t sct = 0;
  uint8_t sc = 0;
  bool do_not_submit = false;
  uint64_t timeout_us = 0;
};

class IoQpair {
 public:
  ~IoQpair();  // deletes the queues on the device (if connected) and frees the queue id
  IoQpair(const IoQpair&) = delete;
  IoQpair& operator=(const IoQpair&) = delete;

  uint16_t id() const;
  Controller& controller() const;
  // Failed queue pairs reject I/O with ENXIO until Reconnect().
  bool failed() const;
  bool connected() const;
  // The SQ lives in the controller's CMB (ControllerOptions::use_cmb_sqs);
  // its controller address then, else 0.
  bool sq_in_cmb() const;
  uint64_t sq_cmb_address() const;

  // Creates the queues on the device (after create_only, or after Disconnect).
  // Errors: EALREADY (connected), ENXIO (controller failed), the admin
  // command's failure (EIO, naming the NVMe status), ETIMEDOUT.
  [[nodiscard]] Status Connect();
  // Deletes the queues on the device; outstanding requests complete aborted.
  void Disconnect();
  // Disconnect (if needed) then Connect: the way back after a failure.
  [[nodiscard]] Status Reconnect();

  // Reads/writes `count` sectors at `lba`. `buffer` holds count *
  // extended_sector_size bytes (metadata interleaved on extended-LBA
  // namespaces); `metadata` (separate-metadata namespaces) count * md_size.
  [[nodiscard]] Status Read(const Namespace& ns, void* buffer, uint64_t lba, uint32_t count, CompletionFn fn,
                            void* cb_arg, uint32_t io_flags = 0);
  [[nodiscard]] Status Write(const Namespace& ns, const void* buffer, uint64_t lba, uint32_t count, CompletionFn fn,
                             void* cb_arg, uint32_t io_flags = 0);
  [[nodiscard]] Status ReadWithMd(const Namespace& ns, void* buffer, void* metadata, uint64_t lba, uint32_t count,
                                  CompletionFn fn, void* cb_arg, uint32_t io_flags = 0, uint16_t apptag_mask = 0,
                                  uint16_t apptag = 0);
  [[nodiscard]] Status WriteWithMd(const Namespace& ns, const void* buffer, void* metadata, uint64_t lba,
                                   uint32_t count, CompletionFn fn, void* cb_arg, uint32_t io_flags = 0,
                                   uint16_t apptag_mask = 0, uint16_t apptag = 0);
  // Scatter-gather payloads through the caller's iterator (see io_types.h).
  [[nodiscard]] Status ReadV(const Namespace& ns, uint64_t lba, uint32_t count, CompletionFn fn, void* cb_arg,
                             uint32_t io_flags, ResetSglFn reset_sgl, NextSgeFn next_sge, void* metadata = nullptr);
  [[nodiscard]] Status WriteV(const Namespace& ns, uint64_t lba, uint32_t count, CompletionFn fn, void* cb_arg,
                              uint32_t io_flags, ResetSglFn reset_sgl, NextSgeFn next_sge, void* metadata = nullptr);
  [[nodiscard]] Status Compare(const Namespace& ns, const void* buffer, uint64_t lba, uint32_t count, CompletionFn fn,
                               void* cb_arg, uint32_t io_flags = 0);
  [[nodiscard]] Status WriteZeroes(const Namespace& ns, uint64_t lba, uint32_t count, CompletionFn fn, void* cb_arg,
                                   uint32_t io_flags = 0);
  [[nodiscard]] Status WriteUncorrectable(const Namespace& ns, uint64_t lba, uint32_t count, CompletionFn fn,
                                          void* cb_arg);
  [[nodiscard]] Status Verify(const Namespace& ns, uint64_t lba, uint32_t count, CompletionFn fn, void* cb_arg,
                              uint32_t io_flags = 0);
  // Dataset Management with the deallocate attribute (or `attributes` as
  // given); `ranges` in DMA memory, 1..256 entries.
  [[nodiscard]] Status DatasetManagement(const Namespace& ns, uint32_t attributes, const spec::DsmRange* ranges,
                                         uint16_t num_ranges, CompletionFn fn, void* cb_arg);
  [[nodiscard]] Status Flush(const Namespace& ns, CompletionFn fn, void* cb_arg);
  // Copy: `ranges` (DMA memory, format 0) into `dest_lba`.
  [[nodiscard]] Status Copy(const Namespace& ns, const spec::CopySourceRange* ranges, uint16_t num_ranges,
                            uint64_t dest_lba, CompletionFn fn, void* cb_arg);
  // Reservations: data structures in DMA memory (spec::Reservation*Data).
  [[nodiscard]] Status ReservationRegister(const Namespace& ns, const spec::ReservationRegisterData* data,
                                           bool ignore_key, uint8_t action, uint8_t cptpl, CompletionFn fn,
                                           void* cb_arg);
  [[nodiscard]] Status ReservationAcquire(const Namespace& ns, const spec::ReservationAcquireData* data,
                                          bool ignore_key, uint8_t action, uint8_t type, CompletionFn fn,
                                          void* cb_arg);
  [[nodiscard]] Status ReservationRelease(const Namespace& ns, const spec::ReservationRegisterData* data,
                                          bool ignore_key, uint8_t action, uint8_t type, CompletionFn fn,
                                          void* cb_arg);
  [[nodiscard]] Status ReservationReport(const Namespace& ns, void* buffer, uint32_t length, bool extended,
                                         CompletionFn fn, void* cb_arg);
  // Fused Compare and Write (atomic on the device): compares `compare`
  // then writes `write`, both count sectors at lba. `fn` runs once, with the
  // compare's status if it failed, else the write's.
  [[nodiscard]] Status CompareAndWrite(const Namespace& ns, const void* compare, const void* write, uint64_t lba,
                                       uint32_t count, CompletionFn fn, void* cb_arg);
  // Any NVM command as given (nsid, cdw10-15, flags); `buffer`/`length` the
  // data (DMA memory, may be null/0), `metadata` the separate metadata.
  // The driver sets the command id and the data pointer.
  [[nodiscard]] Status RawCommand(const spec::Sqe& cmd, void* buffer, uint32_t length, CompletionFn fn, void* cb_arg,
                                  void* metadata = nullptr);
  // Asks the controller to abort the outstanding request identified by
  // `cb_arg` (the first one found). Errors: ENOENT (no such request).
  [[nodiscard]] Status Abort(void* cb_arg);

  // Runs up to `max` completions (0: all available), submits requests that
  // waited for trackers, rings doorbells. Returns completions processed.
  // Errors: ENXIO when the queue pair failed (outstanding requests have been
  // completed with an abort status first).
  [[nodiscard]] Result<uint32_t> ProcessCompletions(uint32_t max = 0);

  // ---- waiting for completions (IoQpairOptions::mode) ----
  CompletionMode mode() const;
  // Event and hybrid modes: an eventfd (non-blocking, owned by the queue
  // pair; do not read or close it) that becomes readable when the device
  // signalled completions since the last ArmEvent(). Put it in your own
  // epoll/poll set with your other fds. -1 in poll mode.
  int event_fd() const;
  // Before blocking on event_fd(): drains it, then re-checks the completion
  // queue. true: nothing is waiting, block now — a completion posted from
  // here on makes event_fd() readable, so none is lost between the re-check
  // and the block. false: a completion (or a locally completed request) is
  // waiting: call ProcessCompletions instead of blocking. Always false in
  // poll mode (nothing would wake the block).
  //   for (;;) {
  //     (void)qpair->ProcessCompletions();
  //     if (qpair->ArmEvent()) epoll_wait(ep, events, n, -1);  // event_fd() and others
  //   }
  bool ArmEvent();
  // Waits as the mode says for completions and runs them (up to `max`, 0:
  // all): poll spins; event arms and blocks; hybrid spins hybrid_spin_us
  // (less while spinning does not pay: spin_budget.h), then arms and
  // blocks. Returns the completions run; 0 when `timeout_ms` (-1: no limit)
  // passed, or at once when nothing is outstanding. A block lasts at most
  // 1 s (hybrid: 10 ms, SpinBudget::kBlockNanos; or an eighth of the I/O
  // timeout) so that controller failure, I/O timeouts and a device's lost
  // interrupt are still noticed. Errors: as ProcessCompletions.
  [[nodiscard]] Result<uint32_t> WaitCompletions(int timeout_ms, uint32_t max = 0);

  uint32_t outstanding() const;  // requests submitted, not completed (queued included)
  const QpairStatistics& statistics() const;

  // Error injection (see ErrorInjection). Errors: ENOMEM (16 entries max).
  [[nodiscard]] Status AddErrorInjection(const ErrorInjection& injection);
  void RemoveErrorInjection(uint8_t opcode);

 private:
  friend class Controller;
  friend struct QpairState;
  explicit IoQpair(std::unique_ptr<QpairState> state);
  std::unique_ptr<QpairState> s_;
};

}  // namespace nvmux
