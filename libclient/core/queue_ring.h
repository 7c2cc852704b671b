// QueueRing: the submission and completion rings of one NVMe queue pair in
// DMA memory, with their doorbells (NVMe base spec 3.3, "Queue Mechanism").
//
// The SQ keeps one slot empty (full when tail + 1 == head); the host learns
// the device's SQ head from each completion's SQHD. A completion is new when
// its phase tag matches the expected phase, which flips each time the CQ
// head wraps. Doorbell writes are separate from Push/Pop so callers can batch
// (delay_cmd_submit) and are ordered after the ring writes they publish.
//
// Shadow doorbells (NVMe 1.3+ Doorbell Buffer Config, as Linux, SPDK's
// nvme_pcie and QEMU's hw/nvme do it): when Doorbells names shadow and
// EventIdx slots, a new tail/head is stored in the shadow slot, a full fence
// follows, then the EventIdx slot is read; the real doorbell is written only
// when the update crosses the EventIdx (DoorbellNeedsEvent). The fence pairs
// with the device's "store EventIdx, full fence, re-read shadow" before it
// sleeps: either the device sees the new value or the host sees the EventIdx
// asking for a doorbell. After each real doorbell write, kick_fd (an eventfd
// the device sleeps on, vfio-user ioeventfd) gets a write, when given.
//
// Thread safety: none; one thread owns a ring (the I/O path takes no locks).
// Ownership: borrows the ring memory and doorbell registers.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <type_traits>

#include "nvmux/spec/command.h"
#include "shm/base/result.h"

namespace nvmux {

// A queue whose device side runs in the host (NVMe/TCP: the queue engine
// turns new ring entries into command capsules and writes received
// completions into the CQ ring). QueueRing calls OnSqTail after each real SQ
// doorbell write (RingSq) and OnCqEmpty when it finds no new completion,
// having published the SQ tail without OnSqTail: OnCqEmpty takes new
// entries itself, after its read (then Pop looks
// again), so the completion path stays the memory transports' one. Called by
// the thread owning the ring.
// What a host-side engine (NVMe/TCP) counted, for IoQpair::statistics().
struct EngineCounters {
  uint64_t pdus_sent = 0;
  uint64_t pdus_received = 0;
  uint64_t in_capsule_writes = 0;  // writes whose data went inside the command capsule
  uint64_t r2ts = 0;               // R2T PDUs received
  uint64_t h2c_data = 0;           // H2CData PDUs sent (answering R2Ts)
  uint64_t c2h_data = 0;           // C2HData PDUs received
  uint64_t send_calls = 0;         // sendmsg calls that sent something
  bool header_digest = false;      // negotiated on this connection
  bool data_digest = false;
};

class QueueHook {
 public:
  virtual void OnSqTail() = 0;
  virtual void OnCqEmpty() = 0;
  virtual EngineCounters counters() const { return {}; }

 protected:
  ~QueueHook() = default;
};

struct Doorbells {
  volatile uint32_t* sq_tail = nullptr;
  volatile uint32_t* cq_head = nullptr;
  // Shadow doorbell and EventIdx slots of this queue (DMA memory the
  // device reads and writes); all null when shadow doorbells are off.
  uint32_t* shadow_sq_tail = nullptr;
  uint32_t* shadow_cq_head = nullptr;
  uint32_t* eventidx_sq = nullptr;
  uint32_t* eventidx_cq = nullptr;
  // Written (an eventfd: 8 bytes, value 1) after every real doorbell write
  // to wake a device that sleeps; -1: none.
  int kick_fd = -1;
  // The engine of a queue emulated in the host (NVMe/TCP), or null.
  QueueHook* hook = nullptr;
  bool shadow() const { return shadow_sq_tail != nullptr; }
};

// The EventIdx rule (virtio's vring_need_event, NVMe base spec 5.8): moving
// a doorbell from `old_idx` to `new_idx` must be signalled with a real
// doorbell write when `event_idx` lies in [old_idx, new_idx), counted
// forwards with wrap-around. 16-bit arithmetic is exact for any queue size
// up to 65536 because every value is below the size.
constexpr bool DoorbellNeedsEvent(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx) {
  return static_cast<uint16_t>(new_idx - event_idx - 1) < static_cast<uint16_t>(new_idx - old_idx);
}

// The ring's positions. A queue pair keeps them in the QueueRing; the
// group's shared admin queue keeps them in shared memory (standard layout,
// no pointers) so that every process of the group drives the same ring.
//
// The CQ head and the expected phase tag are ONE word (`cq`: head in bits
// 0-15, phase in bit 16), advanced by one 32-bit atomic store: a process
// killed while consuming a completion leaves either the old position or the
// new one, never a flipped phase with the old head (the admin queue would
// stall for good) nor a head of 0 with the old phase (stale entries would
// look new). Heads fit 16 bits because a queue has at most 65536 entries.
struct RingIndices {
  static constexpr uint32_t kPhaseBit = 1u << 16;
  static constexpr uint32_t kHeadMask = kPhaseBit - 1;
  uint32_t sq_tail = 0, sq_head = 0, sq_rung = 0;
  uint32_t cq = kPhaseBit;  // head 0, phase 1: the controller posts phase 1 on its first pass
  uint32_t cq_rung = 0;     // the CQ head last published to the device
  uint32_t cq_head() const { return cq & kHeadMask; }
  uint32_t phase() const { return cq >> 16; }
  // Makes the next RingSq/RingCq write both doorbells whatever they last
  // wrote (after a holder of shared positions died between a position
  // update and its doorbell write).
  void ForceDoorbells() {
    sq_rung = sq_tail + 1;
    cq_rung = cq_head() + 1;
  }
};
static_assert(std::is_standard_layout_v<RingIndices> && std::is_trivially_copyable_v<RingIndices>);

class QueueRing {
 public:
  // REQUIRES: sq and cq hold `entries` entries each (2..65536); entries 0's-based in the spec.
  // `shared` (optional) holds the positions instead of this object.
  QueueRing(spec::Sqe* sq, spec::Cqe* cq, uint32_t entries, Doorbells doorbells, RingIndices* shared = nullptr)
      : sq_(sq), cq_(cq), entries_(entries), doorbells_(doorbells), x_(shared != nullptr ? *shared : own_) {}
  QueueRing(const QueueRing&) = delete;
  QueueRing& operator=(const QueueRing&) = delete;

  uint32_t entries() const { return entries_; }
  bool Full() const { return (x_.sq_tail + 1 == entries_ ? 0 : x_.sq_tail + 1) == x_.sq_head; }
  // Commands pushed but not yet consumed by the device (as last reported).
  uint32_t InFlight() const { return (x_.sq_tail + entries_ - x_.sq_head) % entries_; }

  // Copies `cmd` to the SQ tail. Errors: EAGAIN when full.
  // Inline: it is on every I/O's submit path (an out-of-line call cost 78
  // instructions, BENCHMARKS.md QD1); the error is built out of line.
  Status Push(const spec::Sqe& cmd) {
    if (Full()) [[unlikely]] return FullError();
    sq_[x_.sq_tail] = cmd;
    CommitStaged();
    return Ok();
  }
  // Push in two steps, for callers that record intent between them (the
  // shared admin queue): Stage copies the entry to the tail slot without
  // making it part of the ring; CommitStaged advances the tail (one store).
  // Errors: EAGAIN when full.
  Status Stage(const spec::Sqe& cmd);
  void CommitStaged() { x_.sq_tail = x_.sq_tail + 1 == entries_ ? 0 : x_.sq_tail + 1; }
  // Publishes pushed commands: one doorbell write (or shadow update) if any
  // are pending.
  // Inline test: most completion passes end with nothing new to publish.
  void RingSq() {
    if (x_.sq_tail != x_.sq_rung) PublishSq(true);
  }
  // The next new completion, if any (advances the CQ head; updates SQ head).
  // Inline: it runs twice per completion pass (the entry, then the empty
  // slot after it); a host-side engine's (TCP) work is out of line.
  std::optional<spec::Cqe> Pop() {
    const uint32_t pos = x_.cq;
    std::optional<spec::Cqe> c = ReadIfNew(cq_, pos);
    if (!c) [[unlikely]]
      return doorbells_.hook != nullptr ? PopFromEngine(pos) : std::nullopt;
    ConsumeAt(pos, *c);
    return c;
  }
  // Pop in two steps, for callers that must finish with a completion before
  // it leaves the ring (the shared admin queue routes it first, so a holder
  // killed in between leaves it there for the next one): Peek reads the
  // entry at the head if it is new; Consume(c) advances past it (one atomic
  // store of head and phase) and records the SQ head it reports.
  std::optional<spec::Cqe> Peek() const;
  void Consume(const spec::Cqe& c);
  // The head-and-phase word (see RingIndices): tells whether a Consume
  // happened since it was read.
  uint32_t cq_position() const { return x_.cq; }
  // Publishes consumed completions: one doorbell write (or shadow update) if any.
  // `in_flight`, when the caller knows it: at most how many commands the
  // device may still complete (cids in use). With shadow doorbells, when
  // the completions consumed since the last update plus those cannot fill
  // the CQ, the device cannot be waiting for room (not even with an older
  // head: later SQ updates are ordered after this store), so no wake-up
  // can be lost and the full fence is skipped; EventIdx is still obeyed.
  static constexpr uint32_t kInFlightUnknown = UINT32_MAX;
  void RingCq(uint32_t in_flight = kInFlightUnknown);
  // Points the ring at other doorbells (shadow doorbells switched on or off
  // when the queue is created again after a controller reset).
  void SetDoorbells(const Doorbells& doorbells) { doorbells_ = doorbells; }
  const Doorbells& doorbells() const { return doorbells_; }

  uint32_t doorbell_writes() const { return sq_doorbell_writes_ + cq_doorbell_writes_; }
  uint64_t sq_doorbell_writes() const { return sq_doorbell_writes_; }
  uint64_t cq_doorbell_writes() const { return cq_doorbell_writes_; }
  // Tails and heads published through the shadow page (real writes not included).
  uint64_t shadow_doorbell_updates() const { return shadow_updates_; }
  // Of those, CQ head updates made without the full fence (RingCq's in_flight).
  uint64_t unfenced_cq_updates() const { return unfenced_cq_updates_; }
  uint32_t sq_tail() const { return x_.sq_tail; }
  uint32_t cq_head() const { return x_.cq_head(); }
  // The idle poll's whole question, inline: nothing new at the CQ head (its
  // phase tag is the previous lap's), nothing pushed and not yet rung, no
  // consumed entry whose head was not written, and no host-side engine
  // (TCP) that must be asked for completions first. When true, Pop, RingCq
  // and RingSq would each do nothing. One load of the CQ entry's status,
  // the indices' line, no call.
  bool Idle() const {
    const volatile spec::Cqe* slot = &cq_[x_.cq & RingIndices::kHeadMask];
    return (slot->status & 1u) != x_.cq >> 16 && x_.sq_tail == x_.sq_rung && x_.cq_head() == x_.cq_rung &&
           doorbells_.hook == nullptr;
  }
  // Back to the state of a freshly created queue (the caller zeroes the CQ
  // memory): after the controller was reset or the queue re-created.
  void Reset() { x_ = RingIndices{}; }
  // After a process died mid-update of shared positions: publish what the
  // positions say (a pushed entry whose doorbell was not rung, consumed
  // completions whose head was not written).
  void Resync() {
    x_.ForceDoorbells();
    RingSq();
    RingCq();
  }
  spec::Sqe* sq_memory() const { return sq_; }
  spec::Cqe* cq_memory() const { return cq_; }

 private:
  spec::Sqe* sq_;
  spec::Cqe* cq_;
  uint32_t entries_;
  Doorbells doorbells_;
  RingIndices own_;
  RingIndices& x_;
  // The completion at CQ position `pos` (head and phase, RingIndices::cq)
  // if its phase tag says it is new.
  static std::optional<spec::Cqe> ReadIfNew(const spec::Cqe* cq, uint32_t pos) {
    const volatile spec::Cqe* slot = &cq[pos & RingIndices::kHeadMask];
    if ((slot->status & 1u) != pos >> 16) return std::nullopt;
    // Read the rest of the entry only after seeing its phase tag.
    std::atomic_thread_fence(std::memory_order_acquire);
    spec::Cqe c;
    c.cdw0 = slot->cdw0;
    c.cdw1 = slot->cdw1;
    c.sqhd = slot->sqhd;
    c.sqid = slot->sqid;
    c.cid = slot->cid;
    c.status = slot->status;
    return c;
  }
  // Advances past the entry at `pos`: records the SQ head it reports, then
  // moves head and phase in one store (past the last entry: head 0, the
  // phase flipped).
  void ConsumeAt(uint32_t pos, const spec::Cqe& c) {
    x_.sq_head = c.sqhd < entries_ ? c.sqhd : c.sqhd % entries_;
    const uint32_t next = (pos & RingIndices::kHeadMask) + 1 == entries_
                              ? (pos & RingIndices::kPhaseBit) ^ RingIndices::kPhaseBit
                              : pos + 1;
    std::atomic_ref<uint32_t>(x_.cq).store(next, std::memory_order_relaxed);
  }
  // Pop's path when the CQ head holds nothing and a host-side engine may
  // have completions to write.
  std::optional<spec::Cqe> PopFromEngine(uint32_t pos);
  Status FullError() const;
  // Stores value in the shadow slot; whether the real doorbell must follow.
  static bool UpdateShadow(uint32_t* shadow, uint32_t* eventidx, uint32_t value, uint32_t old);
  // The same without the full fence: only where the device cannot be
  // waiting (RingCq).
  static bool UpdateShadowUnfenced(uint32_t* shadow, const uint32_t* eventidx, uint32_t value, uint32_t old);
  void Kick() const;
  // RingSq's work; `tell_engine`: call the host-side engine's OnSqTail.
  void PublishSq(bool tell_engine);

  uint32_t sq_doorbell_writes_ = 0;
  uint32_t cq_doorbell_writes_ = 0;
  uint64_t shadow_updates_ = 0;
  uint64_t unfenced_cq_updates_ = 0;
};

}  // namespace nvmux
