// Doorbell Buffer Config and the shadow doorbell / EventIdx protocol
// (NVMe base specification 1.4 section 5.8). Runs with the controller mutex held.
//
// Once configured, the tails and heads of I/O queues are read from the
// host's shadow doorbell page and the device publishes how far it has read
// in the EventIdx page, virtio style: the host rings the real doorbell only
// when its new value passes the EventIdx. The admin queue keeps using the
// real doorbells (as Linux and QEMU do). CC.EN 1 -> 0 disables it.
//
// With doorbell kicks (controller.h, SetClientKicks) the EventIdx is also
// how the device says whether it polls (one behind what it consumed: no
// doorbell wanted) or sleeps (what it consumed: the next update must be
// written to the real doorbell and kicked).
#include <atomic>
#include <climits>

#include "shm/base/clock.h"

#include "tools/emu/controller.h"

namespace nvmux::emu {

using namespace nvmux::spec;

Controller::Outcome Controller::DoorbellBufferConfig(const Sqe& sqe) {
  const uint64_t mask = page_size_ - 1;
  if ((sqe.prp1 & mask) != 0 || (sqe.prp2 & mask) != 0 || sqe.prp1 == sqe.prp2 || sqe.prp1 == 0 ||
      sqe.prp2 == 0) {
    return {Dnr(sct::kGeneric, sc::kInvalidField)};
  }
  if (dma_.Translate(sqe.prp1, page_size_, true) == nullptr ||
      dma_.Translate(sqe.prp2, page_size_, true) == nullptr) {
    return {Retry(sct::kGeneric, sc::kDataTransferError)};
  }
  shadow_doorbells_ = sqe.prp1;
  event_idx_ = sqe.prp2;
  // Seed the shadow page with the values the host last wrote to the real
  // doorbells (the device may not have acted on the newest ones yet).
  auto* shadow = reinterpret_cast<uint32_t*>(dma_.Translate(shadow_doorbells_, page_size_, true));
  for (size_t qid = 1; qid < sqs_.size(); ++qid) {
    for (uint32_t index : {static_cast<uint32_t>(2 * qid), static_cast<uint32_t>(2 * qid + 1)}) {
      const bool is_cq = (index & 1) != 0;
      if (is_cq ? !cqs_[qid] : !sqs_[qid]) continue;
      const uint32_t value = LoadDoorbell(index);
      std::atomic_ref<uint32_t>(shadow[index]).store(value, std::memory_order_release);
      WriteEventIdx(index, PollingEventIdx(value, is_cq ? cqs_[qid]->size : sqs_[qid]->size));
    }
  }
  return {kSuccess};
}

std::optional<uint32_t> Controller::ReadHostDoorbell(uint32_t index) {
  if (shadow_doorbells_ == 0 || index < 2) return LoadDoorbell(index);
  const uint64_t at = shadow_doorbells_ + uint64_t{index} * 4;
  auto* slot = reinterpret_cast<uint32_t*>(dma_.Translate(at, 4, false));
  if (slot == nullptr) {
    Fatal("shadow doorbell buffer no longer DMA-mapped");
    return std::nullopt;
  }
  return std::atomic_ref<uint32_t>(*slot).load(std::memory_order_acquire);
}

void Controller::WriteEventIdx(uint32_t index, uint32_t value) {
  if (event_idx_ == 0 || index < 2) return;
  auto* slot = reinterpret_cast<uint32_t*>(dma_.Translate(event_idx_ + uint64_t{index} * 4, 4, true));
  if (slot == nullptr) {
    Fatal("EventIdx buffer no longer DMA-mapped");
    return;
  }
  std::atomic_ref<uint32_t>(*slot).store(value, std::memory_order_release);
  if (event_idx_written_.size() <= index) event_idx_written_.resize(index + 1, 0);
  event_idx_written_[index] = value;
}

void Controller::UpdatePollingEventIdx(uint32_t index, uint32_t value, uint32_t size) {
  const uint32_t polling = PollingEventIdx(value, size);
  if (client_kicks_.load(std::memory_order_relaxed) && index < event_idx_written_.size() && size >= 8) {
    const uint32_t behind = (polling + size - event_idx_written_[index]) % size;
    if (behind < size / 4) return;
  }
  WriteEventIdx(index, polling);
}

bool Controller::CqBlocked(const CompletionQueue& cq) const {
  if (!CqHasRoom(cq)) return true;
  for (size_t qid = 1; qid < sqs_.size(); ++qid) {
    if (sqs_[qid] && sqs_[qid]->cqid == cq.qid && sqs_[qid]->head != sqs_[qid]->tail) return true;
  }
  return false;
}

void Controller::SetPollingEventIdx() {
  if (detached_) return;  // no client memory: nothing to publish into (see Poll)
  for (size_t qid = 1; qid < sqs_.size(); ++qid) {
    if (sqs_[qid]) WriteEventIdx(2u * static_cast<uint32_t>(qid), PollingEventIdx(sqs_[qid]->tail, sqs_[qid]->size));
    if (cqs_[qid]) WriteEventIdx(2u * static_cast<uint32_t>(qid) + 1, PollingEventIdx(cqs_[qid]->head, cqs_[qid]->size));
  }
}

void Controller::SetClientKicks(bool on) {
  std::lock_guard<std::mutex> lock(mutex_);
  client_kicks_.store(on, std::memory_order_relaxed);
  if (event_idx_ == 0 || removed()) return;
  SetPollingEventIdx();
}

std::optional<int64_t> Controller::PrepareToSleep() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!client_kicks_.load(std::memory_order_relaxed) || shadow_doorbells_ == 0 || event_idx_ == 0) return std::nullopt;
  if (removed() || csts_.rdy() == 0 || csts_.cfs() != 0 || !delayed_.empty() || detached_) return std::nullopt;
  // "Notify me": any new tail crosses what was consumed; a CQ head only
  // matters when completions or fetches wait for room.
  notify_arms_.fetch_add(1, std::memory_order_relaxed);
  for (size_t qid = 1; qid < sqs_.size(); ++qid) {
    if (sqs_[qid]) WriteEventIdx(2u * static_cast<uint32_t>(qid), sqs_[qid]->tail);
    if (cqs_[qid] && CqBlocked(*cqs_[qid])) WriteEventIdx(2u * static_cast<uint32_t>(qid) + 1, cqs_[qid]->head);
  }
  // EventIdx stores before the doorbell re-reads (store -> load), pairing
  // with the host's shadow store, full fence, EventIdx load: either the
  // host sees "notify me" and kicks, or this re-read sees its update.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool pending = false;
  for (size_t qid = 0; qid < sqs_.size() && !pending; ++qid) {
    if (sqs_[qid]) {
      const std::optional<uint32_t> tail = ReadHostDoorbell(2u * static_cast<uint32_t>(qid));
      pending = !tail || *tail != sqs_[qid]->tail;
    }
    if (!pending && cqs_[qid] && CqBlocked(*cqs_[qid])) {
      const std::optional<uint32_t> head = ReadHostDoorbell(2u * static_cast<uint32_t>(qid) + 1);
      pending = !head || *head != cqs_[qid]->head;
    }
  }
  if (pending) {
    SetPollingEventIdx();
    return std::nullopt;
  }
  // Timers that need the poller: a deferred CFS, the keep-alive expiry.
  int64_t until = INT64_MAX;
  if (std::optional<int64_t> cfs_at = faults_.CfsDeadline()) until = std::min(until, *cfs_at);
  if (std::optional<int64_t> ka_at = KeepAliveDeadline()) until = std::min(until, *ka_at);
  until = std::min(until, CoalescingDeadlineLocked());  // an interrupt coalescing holds back
  if (until == INT64_MAX) return INT64_MAX;
  return std::max<int64_t>(until - MonotonicNanos(), 0);
}

void Controller::EndSleep() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (event_idx_ == 0 || removed()) return;
  // Polling again: no doorbells wanted.
  SetPollingEventIdx();
}

}  // namespace nvmux::emu

namespace nvmux::emu {

void Controller::ResetQueueDoorbell(uint32_t index) {
  StoreDoorbell(index, 0);
  if (shadow_doorbells_ == 0 || index < 2) return;
  // A stale value left by an earlier queue with this id must not be taken
  // for a new tail or head.
  if (auto* slot = reinterpret_cast<uint32_t*>(dma_.Translate(shadow_doorbells_ + uint64_t{index} * 4, 4, true))) {
    std::atomic_ref<uint32_t>(*slot).store(0, std::memory_order_release);
  }
  WriteEventIdx(index, 0);
}

}  // namespace nvmux::emu
