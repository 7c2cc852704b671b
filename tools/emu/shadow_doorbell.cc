// Doorbell Buffer Config and the shadow doorbell / EventIdx protocol
// (NVMe base specification 1.4 section 5.8). Runs with the controller mutex held.
//
// Once configured, the tails and heads of I/O queues are read from the
// host's shadow doorbell page and the device publishes how far it has read
// in the EventIdx page, virtio style: the host rings the real doorbell only
// when its new value passes the EventIdx. The admin queue keeps using the
// real doorbells (as Linux and QEMU do). CC.EN 1 -> 0 disables it.
#include <atomic>

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
      WriteEventIdx(index, value);
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
