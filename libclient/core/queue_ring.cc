#include "queue_ring.h"

#include <unistd.h>

#include <atomic>

namespace nvmux {

Status QueueRing::FullError() const {
  return Fail(EAGAIN, "submission queue full (" + std::to_string(entries_ - 1) + " commands outstanding)");
}

Status QueueRing::Stage(const spec::Sqe& cmd) {
  if (Full()) return FullError();
  sq_[x_.sq_tail] = cmd;
  return Ok();
}

bool QueueRing::UpdateShadow(uint32_t* shadow, uint32_t* eventidx, uint32_t value, uint32_t old) {
  // Store -> load ordering (x86 would otherwise let the EventIdx load pass
  // the shadow store still in the store buffer): pairs with the device's
  // EventIdx store, full fence, shadow re-read before it stops polling. A
  // sequentially consistent exchange is the store and the full barrier in
  // one instruction (xchg), cheaper than a store followed by mfence.
  (void)std::atomic_ref<uint32_t>(*shadow).exchange(value, std::memory_order_seq_cst);
  uint32_t event_idx = std::atomic_ref<uint32_t>(*eventidx).load(std::memory_order_seq_cst);
  return DoorbellNeedsEvent(static_cast<uint16_t>(event_idx), static_cast<uint16_t>(value),
                            static_cast<uint16_t>(old));
}

bool QueueRing::UpdateShadowUnfenced(uint32_t* shadow, const uint32_t* eventidx, uint32_t value, uint32_t old) {
  // Release: consumed entries are done with before the device may reuse
  // them; later SQ updates (release fence in PublishSq) follow this store.
  std::atomic_ref<uint32_t>(*shadow).store(value, std::memory_order_release);
  uint32_t event_idx = std::atomic_ref<const uint32_t>(*eventidx).load(std::memory_order_acquire);
  return DoorbellNeedsEvent(static_cast<uint16_t>(event_idx), static_cast<uint16_t>(value),
                            static_cast<uint16_t>(old));
}

void QueueRing::Kick() const {
  if (doorbells_.kick_fd < 0) return;
  uint64_t one = 1;
  // Cannot block or fail short of a counter at 2^64-2 (the device reads it).
  ssize_t n = ::write(doorbells_.kick_fd, &one, sizeof(one));
  (void)n;
}

void QueueRing::PublishSq(bool tell_engine) {
  if (x_.sq_tail == x_.sq_rung) return;
  // The entries must be visible before the device sees the new tail.
  std::atomic_thread_fence(std::memory_order_release);
  const uint32_t old = x_.sq_rung;
  x_.sq_rung = x_.sq_tail;
  if (doorbells_.shadow_sq_tail != nullptr) {
    shadow_updates_++;
    if (!UpdateShadow(doorbells_.shadow_sq_tail, doorbells_.eventidx_sq, x_.sq_tail, old)) return;
  }
  *doorbells_.sq_tail = x_.sq_tail;
  sq_doorbell_writes_++;
  Kick();
  if (tell_engine && doorbells_.hook != nullptr) doorbells_.hook->OnSqTail();
}

std::optional<spec::Cqe> QueueRing::Peek() const {
  std::optional<spec::Cqe> c = ReadIfNew(cq_, x_.cq);
  if (c || doorbells_.hook == nullptr) return c;
  doorbells_.hook->OnCqEmpty();  // the host-side engine may have completions to write
  return ReadIfNew(cq_, x_.cq);
}

void QueueRing::Consume(const spec::Cqe& c) { ConsumeAt(x_.cq, c); }

std::optional<spec::Cqe> QueueRing::PopFromEngine(uint32_t pos) {
  // A host-side engine (NVMe/TCP) is asked for more completions. What the
  // completions taken so far submitted (delay_cmd_submit holds the
  // doorbell to the end of the pass) is published first: the engine
  // sends it, in one write, before it reads, so the target works on it
  // while this pass reads on; else a pass that keeps finding completions
  // sends one wave of a whole queue depth at its end.
  PublishSq(/*tell_engine=*/false);
  doorbells_.hook->OnCqEmpty();
  std::optional<spec::Cqe> c = ReadIfNew(cq_, pos);
  if (c) ConsumeAt(pos, *c);
  return c;
}

void QueueRing::RingCq(uint32_t in_flight) {
  const uint32_t head = x_.cq_head();
  if (head == x_.cq_rung) return;
  const uint32_t old = x_.cq_rung;
  x_.cq_rung = head;
  if (doorbells_.shadow_cq_head != nullptr) {
    shadow_updates_++;
    // The device can have posted at most `consumed + in_flight` entries past
    // the head it may still see (`old`); under entries - 1 it never finds
    // the CQ full (header comment of RingCq).
    // (A compare, not a modulo: a division on every completion pass.)
    const uint64_t consumed = head >= old ? head - old : head + entries_ - old;
    const bool device_may_wait = in_flight == kInFlightUnknown || consumed + in_flight >= entries_;
    if (!device_may_wait) unfenced_cq_updates_++;
    if (!(device_may_wait ? UpdateShadow(doorbells_.shadow_cq_head, doorbells_.eventidx_cq, head, old)
                          : UpdateShadowUnfenced(doorbells_.shadow_cq_head, doorbells_.eventidx_cq, head, old)))
      return;
  }
  *doorbells_.cq_head = head;
  cq_doorbell_writes_++;
  Kick();
}

}  // namespace nvmux
