#include "admin_queue.h"

#include "shm/base/clock.h"

namespace nvmux {

AdminQueue::AdminQueue(QueueRing& ring) : ring_(ring), trackers_(ring.entries()), submitted_ns_(ring.entries(), 0), opcodes_(ring.entries(), 0) {
  for (uint32_t cid = ring.entries(); cid-- > 0;) free_cids_.push_back(static_cast<uint16_t>(cid));
}

Status AdminQueue::Submit(const spec::Sqe& cmd, Done done) {
  if (free_cids_.empty() || ring_.Full())
    return Fail(EAGAIN, "admin queue full (" + std::to_string(outstanding_) + " commands outstanding)");
  uint16_t cid = free_cids_.back();
  spec::Sqe c = cmd;
  c.cid = cid;
  NVMUX_TRY(ring_.Push(c));
  free_cids_.pop_back();
  trackers_[cid] = std::move(done);
  submitted_ns_[cid] = MonotonicNanos();
  opcodes_[cid] = cmd.opc;
  outstanding_++;
  ring_.RingSq();
  return Ok();
}

Status AdminQueue::Poll() {
  Status result = Ok();
  while (auto c = ring_.Pop()) {
    if (c->cid >= trackers_.size() || !trackers_[c->cid]) {
      result = Fail(EPROTO, "admin completion for command id " + std::to_string(c->cid) + ", which is not outstanding");
      continue;
    }
    Done done = std::move(trackers_[c->cid]);
    trackers_[c->cid] = nullptr;
    free_cids_.push_back(c->cid);
    outstanding_--;
    done(*c);
  }
  ring_.RingCq();
  return result;
}

std::vector<uint16_t> AdminQueue::SubmittedBefore(int64_t deadline_ns) const {
  std::vector<uint16_t> out;
  for (size_t cid = 0; cid < trackers_.size(); ++cid)
    // AERs wait for events by design: never timed out.
    if (trackers_[cid] && submitted_ns_[cid] < deadline_ns && opcodes_[cid] != spec::admin::kAsyncEventRequest)
      out.push_back(static_cast<uint16_t>(cid));
  return out;
}

void AdminQueue::AbortAll(uint16_t status) {
  for (size_t cid = 0; cid < trackers_.size(); ++cid) {
    if (!trackers_[cid]) continue;
    Done done = std::move(trackers_[cid]);
    trackers_[cid] = nullptr;
    free_cids_.push_back(static_cast<uint16_t>(cid));
    outstanding_--;
    spec::Cqe c{};
    c.cid = static_cast<uint16_t>(cid);
    c.status = status;
    done(c);
  }
}

}  // namespace nvmux
