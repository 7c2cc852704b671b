#include "queue_ring.h"

#include <atomic>

namespace nvmux {

Status QueueRing::Push(const spec::Sqe& cmd) {
  if (Full())
    return Fail(EAGAIN, "submission queue full (" + std::to_string(entries_ - 1) + " commands outstanding)");
  sq_[sq_tail_] = cmd;
  if (++sq_tail_ == entries_) sq_tail_ = 0;
  return Ok();
}

void QueueRing::RingSq() {
  if (sq_tail_ == sq_rung_) return;
  // The entries must be visible before the device sees the new tail.
  std::atomic_thread_fence(std::memory_order_release);
  *doorbells_.sq_tail = sq_tail_;
  sq_rung_ = sq_tail_;
  sq_doorbell_writes_++;
}

std::optional<spec::Cqe> QueueRing::Pop() {
  volatile spec::Cqe* slot = &cq_[cq_head_];
  if ((slot->status & 1u) != phase_) return std::nullopt;
  // Read the rest of the entry only after seeing its phase tag.
  std::atomic_thread_fence(std::memory_order_acquire);
  spec::Cqe c;
  c.cdw0 = slot->cdw0;
  c.cdw1 = slot->cdw1;
  c.sqhd = slot->sqhd;
  c.sqid = slot->sqid;
  c.cid = slot->cid;
  c.status = slot->status;
  sq_head_ = c.sqhd < entries_ ? c.sqhd : c.sqhd % entries_;
  if (++cq_head_ == entries_) {
    cq_head_ = 0;
    phase_ ^= 1;
  }
  return c;
}

void QueueRing::RingCq() {
  if (cq_head_ == cq_rung_) return;
  *doorbells_.cq_head = cq_head_;
  cq_rung_ = cq_head_;
  cq_doorbell_writes_++;
}

}  // namespace nvmux
