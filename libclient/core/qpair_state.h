// QpairState: everything behind an IoQpair handle — rings, preallocated
// requests and trackers, the queue of requests waiting for a tracker, error
// injections, statistics. Internal to libclient.
//
// A Request is one command or, for split and fused I/O, a parent whose
// children are the commands; the parent's callback runs once, when its last
// child completed. A tracker is a command id on the device with its PRP list
// page; requests take one only when they go to the device.
//
// Thread safety: none (one thread owns a queue pair). Controller reset and
// failure handling call AbortOutstanding/CreateOnDevice under the admin lock
// while the owner is expected not to use the queue pair (as SPDK requires).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "libclient/core/controller_state.h"
#include "libclient/core/queue_ring.h"
#include "nvmux/controller.h"
#include "nvmux/qpair.h"
#include "nvmux/spin_budget.h"
#include "shm/base/clock.h"
#include "shm/base/unique_fd.h"

namespace nvmux {

struct ControllerState;
class PollGroup;

enum class QpairLifecycle { kCreated, kConnected, kDisconnected, kFailed };

// A command's I/O timeout handling: running; reported (fn called, and the
// action was kNone or kReset); an Abort sent, escalated to a reset when
// the command outlives another timeout.
enum class IoTimeoutStage : uint8_t { kRunning, kReported, kAbortSent };

struct Request {
  spec::Sqe cmd;
  CompletionFn fn = nullptr;
  void* arg = nullptr;
  // Payload: contiguous (data), or the caller's scatter-gather iterator
  // (reset_sgl/next_sge) from byte payload_offset.
  uint8_t* data = nullptr;
  uint32_t data_bytes = 0;
  uint8_t* md = nullptr;
  ResetSglFn reset_sgl = nullptr;
  NextSgeFn next_sge = nullptr;
  uint32_t payload_offset = 0;
  // Split and fused I/O.
  Request* parent = nullptr;
  Request* fused_partner = nullptr;  // the write of a compare-and-write, submitted right after this one
  uint32_t children_left = 0;
  bool has_error = false;
  bool fused_first = false;
  spec::Cqe cpl{};  // parent: the status to report; injected: the status to give
  int64_t hold_until_ns = 0;
  // I/O timeouts (while on): when the command went to the device, or when
  // the Abort for it was sent; how far its timeout handling went.
  int64_t timeout_start_ns = 0;
  IoTimeoutStage timeout_stage = IoTimeoutStage::kRunning;
  Request* next = nullptr;
};

struct RequestList {
  Request* head = nullptr;
  Request* tail = nullptr;
  bool empty() const { return head == nullptr; }
  void Push(Request* r) {
    r->next = nullptr;
    if (tail) tail->next = r; else head = r;
    tail = r;
  }
  Request* Pop() {
    Request* r = head;
    if (r) {
      head = r->next;
      if (!head) tail = nullptr;
    }
    return r;
  }
};

struct QpairState {
  ControllerState* cs = nullptr;
  Controller* ctrlr = nullptr;
  IoQpair* handle = nullptr;
  uint16_t qid = 0;
  IoQpairOptions options;
  uint32_t entries = 0;
  DmaBuffer rings;      // SQ then CQ (CQ only when the SQ is in the CMB)
  uint64_t sq_cmb_address = 0;  // the SQ's controller address in the CMB; 0: host memory
  DmaBuffer prp_pages;  // one 4 KiB PRP list page per tracker
  std::unique_ptr<QueueRing> ring;

  std::unique_ptr<Request[]> requests;
  Request* free_requests = nullptr;
  uint32_t free_request_count = 0;
  std::vector<Request*> trackers;  // by command id
  std::vector<uint16_t> free_cids;
  RequestList queued;    // waiting for a tracker
  RequestList finished;  // completed without the device (injection, abort): delivered at the next poll
  RequestList held;      // injected "do not submit"

  QpairLifecycle state = QpairLifecycle::kCreated;
  bool connected_before_reset = false;
  bool ctrlr_gone = false;
  uint32_t outstanding = 0;  // caller-visible requests
  uint32_t idle_since_check = 0;
  mutable QpairStatistics stats;
  std::vector<ErrorInjection> injections;
  PollGroup* poll_group = nullptr;  // the group this queue pair is in (poll_group.cc)

  // Event and hybrid modes (qpair_events.cc): this process's duplicate of
  // the eventfd of MSI-X vector `qid`; the CQ is created with IEN.
  UniqueFd irq_fd;
  // Hybrid mode, where this process maps the MSI-X table
  // (Transport::VectorControl): the vector is masked while the queue pair
  // spins (from its first completion after a block) and unmasked by
  // ArmEvent, so a device answering within the spin sends no interrupt.
  volatile uint32_t* vector_control = nullptr;
  bool vector_masked = false;
  SpinBudget spin{0};  // hybrid: WaitCompletions' spin (options.hybrid_spin_us at most)
  void SetVectorMasked(bool masked);
  // Tests only: runs inside ArmEvent between draining the eventfd and the
  // re-check (the window a completion may land in).
  std::function<void()> arm_hook;
  // Takes the vector's eventfd (event/hybrid). Errors: ENOTSUP naming the
  // mode, the transport and why.
  [[nodiscard]] Status ObtainInterrupt();
  // Whether a completion waits in the CQ or a request completed locally.
  bool CompletionWaiting() const;

  // I/O timeouts: this queue pair's copy of the controller's setting
  // (Controller::SetIoTimeout), taken when io_timeout_generation moved.
  int64_t timeout_ns = 0;  // 0: off (IssueToDevice then reads no clock)
  TimeoutAction timeout_action = TimeoutAction::kNone;
  Controller::IoTimeoutFn timeout_fn;
  uint64_t timeout_generation = 0;
  int64_t next_timeout_check_ns = 0;
  uint64_t io_timeouts = 0;

  ~QpairState();
  // The state behind a handle (QpairState is IoQpair's friend).
  static QpairState& Of(IoQpair& qpair) { return *qpair.s_; }
  [[nodiscard]] Status CreateOnDevice();
  void DeleteOnDevice();
  // Completes every request (in flight, queued, held) with the abort status.
  void AbortOutstanding();

  Request* AllocRequest();
  void FreeRequest(Request* r);
  // Sends `r` to the device (without ringing), or queues it when no tracker
  // is free; injected errors divert it.
  void Submit(Request* r);
  void Complete(Request* r, const spec::Cqe& cpl);
  void DeliverFinished();
  bool Injected(Request* r);
  // From ProcessCompletions, when the controller's timeout setting changed
  // or timeouts are on: takes the new setting, then (at most every
  // timeout / 8) reports commands on the device longer than the timeout and
  // takes the action. (qpair_timeout.cc)
  void PollTimeouts();
  // A command going to the device starts its timeout (off: one branch, no clock).
  void StartTimeout(Request* r) {
    if (timeout_ns > 0) [[unlikely]] {
      r->timeout_start_ns = MonotonicNanos();
      r->timeout_stage = IoTimeoutStage::kRunning;
    }
  }
  bool TimeoutsDue() const {
    return timeout_ns > 0 || cs->io_timeout_generation.load(std::memory_order_relaxed) != timeout_generation;
  }
  void RingSqUnlessDelayed() {
    if (!options.delay_cmd_submit) ring->RingSq();
  }
  uint8_t* PrpPage(uint16_t cid) const { return static_cast<uint8_t*>(prp_pages.data()) + size_t{cid} * 4096; }
};

}  // namespace nvmux
