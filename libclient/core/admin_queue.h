// AdminQueue: an AdminChannel over a QueueRing (queue id 0), with a
// preallocated tracker per command id for the completion callbacks.
// Private-memory form, for standalone processes and the primary's own use;
// the group's shared admin queue (issue 5) adds routing between processes.
//
// Thread safety: none; callers serialise (the controller's admin lock).
#pragma once

#include <vector>

#include "admin_channel.h"
#include "queue_ring.h"

namespace nvmux {

class AdminQueue final : public AdminChannel {
 public:
  // Borrows `ring` (its entries bound the outstanding commands).
  explicit AdminQueue(QueueRing& ring);

  // Errors: EAGAIN when the ring or the trackers are full.
  Status Submit(const spec::Sqe& cmd, Done done) override;
  // Errors: EPROTO for a completion naming a command id not outstanding
  // (the device is misbehaving; the completion is dropped).
  Status Poll() override;
  uint32_t outstanding() const override { return outstanding_; }
  std::vector<uint16_t> SubmittedBefore(int64_t deadline_ns) const override;
  void AbortAll(uint16_t status) override;
  void ResetRing() override { ring_.Reset(); }

 private:
  QueueRing& ring_;
  std::vector<Done> trackers_;  // indexed by command id
  std::vector<int64_t> submitted_ns_;
  std::vector<uint8_t> opcodes_;
  std::vector<uint16_t> free_cids_;
  uint32_t outstanding_ = 0;
};

}  // namespace nvmux
