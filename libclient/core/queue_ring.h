// QueueRing: the submission and completion rings of one NVMe queue pair in
// DMA memory, with their doorbells (NVMe base spec 3.3, "Queue Mechanism").
//
// The SQ keeps one slot empty (full when tail + 1 == head); the host learns
// the device's SQ head from each completion's SQHD. A completion is new when
// its phase tag matches the expected phase, which flips each time the CQ
// head wraps. Doorbell writes are separate from Push/Pop so callers can batch
// (delay_cmd_submit) and are ordered after the ring writes they publish.
//
// Thread safety: none; one thread owns a ring (the I/O path takes no locks).
// Ownership: borrows the ring memory and doorbell registers.
#pragma once

#include <cstdint>
#include <optional>

#include "nvmux/spec/command.h"
#include "shm/base/result.h"

namespace nvmux {

struct Doorbells {
  volatile uint32_t* sq_tail = nullptr;
  volatile uint32_t* cq_head = nullptr;
};

class QueueRing {
 public:
  // REQUIRES: sq and cq hold `entries` entries each (2..65536); entries 0's-based in the spec.
  QueueRing(spec::Sqe* sq, spec::Cqe* cq, uint32_t entries, Doorbells doorbells)
      : sq_(sq), cq_(cq), entries_(entries), doorbells_(doorbells) {}

  uint32_t entries() const { return entries_; }
  bool Full() const { return (sq_tail_ + 1 == entries_ ? 0 : sq_tail_ + 1) == sq_head_; }
  // Commands pushed but not yet consumed by the device (as last reported).
  uint32_t InFlight() const { return (sq_tail_ + entries_ - sq_head_) % entries_; }

  // Copies `cmd` to the SQ tail. Errors: EAGAIN when full.
  Status Push(const spec::Sqe& cmd);
  // Publishes pushed commands: one doorbell write if any are pending.
  void RingSq();
  // The next new completion, if any (advances the CQ head; updates SQ head).
  std::optional<spec::Cqe> Pop();
  // Publishes consumed completions: one doorbell write if any.
  void RingCq();

  uint32_t doorbell_writes() const { return sq_doorbell_writes_ + cq_doorbell_writes_; }
  uint64_t sq_doorbell_writes() const { return sq_doorbell_writes_; }
  uint64_t cq_doorbell_writes() const { return cq_doorbell_writes_; }
  uint32_t sq_tail() const { return sq_tail_; }
  // Back to the state of a freshly created queue (the caller zeroes the CQ
  // memory): after the controller was reset or the queue re-created.
  void Reset() {
    sq_tail_ = sq_head_ = sq_rung_ = cq_head_ = cq_rung_ = 0;
    phase_ = 1;
  }
  spec::Cqe* cq_memory() const { return cq_; }

 private:
  spec::Sqe* sq_;
  spec::Cqe* cq_;
  uint32_t entries_;
  Doorbells doorbells_;
  uint32_t sq_tail_ = 0, sq_head_ = 0, sq_rung_ = 0;
  uint32_t cq_head_ = 0, cq_rung_ = 0;
  uint8_t phase_ = 1;  // the controller posts phase 1 on its first pass
  uint32_t sq_doorbell_writes_ = 0;
  uint32_t cq_doorbell_writes_ = 0;
};

}  // namespace nvmux
