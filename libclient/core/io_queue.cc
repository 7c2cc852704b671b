#include "io_queue.h"

#include <algorithm>

namespace nvmux {

IoQueue::IoQueue(uint16_t qid, QueueRing& ring, TrackerMemory trackers)
    : qid_(qid), ring_(ring), memory_(trackers), callbacks_(std::min(trackers.count, ring.entries() - 1)) {
  for (uint32_t cid = static_cast<uint32_t>(callbacks_.size()); cid-- > 0;) free_cids_.push_back(static_cast<uint16_t>(cid));
}

Status IoQueue::Submit(spec::Sqe cmd, std::span<const IovaSegment> segments, Done done) {
  if (free_cids_.empty() || ring_.Full())
    return Fail(EAGAIN, "queue pair " + std::to_string(qid_) + " is full (" + std::to_string(outstanding_) +
                            " commands outstanding): poll for completions and retry");
  uint16_t cid = free_cids_.back();
  if (!segments.empty()) {
    PrpList list{std::span<uint64_t>(memory_.prp_pages + static_cast<size_t>(cid) * 512, 512),
                 memory_.prp_iova + static_cast<uint64_t>(cid) * 4096};
    auto prps = BuildPrps(segments, list);
    if (!prps) return prps.error();
    cmd.prp1 = prps->prp1;
    cmd.prp2 = prps->prp2;
  }
  cmd.cid = cid;
  NVMUX_TRY(ring_.Push(cmd));
  free_cids_.pop_back();
  callbacks_[cid] = std::move(done);
  outstanding_++;
  ring_.RingSq();
  return Ok();
}

namespace {

Result<spec::Sqe> ReadWrite(uint8_t opc, uint32_t nsid, uint64_t slba, uint32_t nlb) {
  if (nlb == 0 || nlb > 65536)
    return Fail(EINVAL, "block count " + std::to_string(nlb) + " is out of range (allowed 1..65536)");
  spec::Sqe cmd;
  cmd.opc = opc;
  cmd.nsid = nsid;
  cmd.cdw10 = static_cast<uint32_t>(slba);
  cmd.cdw11 = static_cast<uint32_t>(slba >> 32);
  cmd.cdw12 = nlb - 1;  // 0's based
  return cmd;
}

}  // namespace

Status IoQueue::Read(uint32_t nsid, uint64_t slba, uint32_t nlb, std::span<const IovaSegment> segments, Done done) {
  auto cmd = ReadWrite(spec::nvm::kRead, nsid, slba, nlb);
  if (!cmd) return cmd.error();
  return Submit(*cmd, segments, std::move(done));
}

Status IoQueue::Write(uint32_t nsid, uint64_t slba, uint32_t nlb, std::span<const IovaSegment> segments, Done done) {
  auto cmd = ReadWrite(spec::nvm::kWrite, nsid, slba, nlb);
  if (!cmd) return cmd.error();
  return Submit(*cmd, segments, std::move(done));
}

Result<uint32_t> IoQueue::Poll(uint32_t max) {
  uint32_t n = 0;
  Status result = Ok();
  while (max == 0 || n < max) {
    auto c = ring_.Pop();
    if (!c) break;
    if (c->cid >= callbacks_.size() || !callbacks_[c->cid]) {
      result = Fail(EPROTO, "queue pair " + std::to_string(qid_) + ": completion for command id " +
                                std::to_string(c->cid) + ", which is not outstanding");
      continue;
    }
    Done done = std::move(callbacks_[c->cid]);
    callbacks_[c->cid] = nullptr;
    free_cids_.push_back(c->cid);
    outstanding_--;
    ++n;
    done(*c);
  }
  ring_.RingCq();
  if (!result) return result.error();
  return n;
}

IoQueueCommands CreateIoQueueCommands(uint16_t qid, uint32_t entries, uint64_t sq_iova, uint64_t cq_iova) {
  IoQueueCommands c;
  c.create_cq.opc = spec::admin::kCreateIoCq;
  c.create_cq.prp1 = cq_iova;
  c.create_cq.cdw10 = ((entries - 1) << 16) | qid;
  c.create_cq.cdw11 = 1;  // PC=1, IEN=0: polled
  c.create_sq.opc = spec::admin::kCreateIoSq;
  c.create_sq.prp1 = sq_iova;
  c.create_sq.cdw10 = ((entries - 1) << 16) | qid;
  c.create_sq.cdw11 = (static_cast<uint32_t>(qid) << 16) | 1;  // CQID, PC=1
  return c;
}

IoQueueDeleteCommands DeleteIoQueueCommands(uint16_t qid) {
  IoQueueDeleteCommands c;
  c.delete_sq.opc = spec::admin::kDeleteIoSq;
  c.delete_sq.cdw10 = qid;
  c.delete_cq.opc = spec::admin::kDeleteIoCq;
  c.delete_cq.cdw10 = qid;
  return c;
}

}  // namespace nvmux
