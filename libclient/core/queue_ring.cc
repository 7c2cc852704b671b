#include "queue_ring.h"

#include <atomic>

namespace nvmux {

Status QueueRing::Push(const spec::Sqe& cmd) {
  if (Full())
    return Fail(EAGAIN, "submission queue full (" + std::to_string(entries_ - 1) + " commands outstanding)");
  sq_[x_.sq_tail] = cmd;
  if (++x_.sq_tail == entries_) x_.sq_tail = 0;
  return Ok();
}

void QueueRing::RingSq() {
  if (x_.sq_tail == x_.sq_rung) return;
  // The entries must be visible before the device sees the new tail.
  std::atomic_thread_fence(std::memory_order_release);
  *doorbells_.sq_tail = x_.sq_tail;
  x_.sq_rung = x_.sq_tail;
  sq_doorbell_writes_++;
}

std::optional<spec::Cqe> QueueRing::Pop() {
  volatile spec::Cqe* slot = &cq_[x_.cq_head];
  if ((slot->status & 1u) != x_.phase) return std::nullopt;
  // Read the rest of the entry only after seeing its phase tag.
  std::atomic_thread_fence(std::memory_order_acquire);
  spec::Cqe c;
  c.cdw0 = slot->cdw0;
  c.cdw1 = slot->cdw1;
  c.sqhd = slot->sqhd;
  c.sqid = slot->sqid;
  c.cid = slot->cid;
  c.status = slot->status;
  x_.sq_head = c.sqhd < entries_ ? c.sqhd : c.sqhd % entries_;
  if (++x_.cq_head == entries_) {
    x_.cq_head = 0;
    x_.phase ^= 1;
  }
  return c;
}

void QueueRing::RingCq() {
  if (x_.cq_head == x_.cq_rung) return;
  *doorbells_.cq_head = x_.cq_head;
  x_.cq_rung = x_.cq_head;
  cq_doorbell_writes_++;
}

}  // namespace nvmux
