// IoQueue: one I/O queue pair's data path: a QueueRing plus preallocated
// trackers (a completion callback and a one-page PRP list each), so nothing
// is allocated per I/O. Commands name their data by IOVA segments; PRPs are
// built into the tracker's list page.
//
// Creation and deletion go through the admin queue (CreateIoQueueCommands /
// DeleteIoQueueCommands build the commands; the caller submits them), so the
// same data path serves a standalone process and a group's secondary.
//
// Thread safety: none; one thread owns a queue pair (no locks on the I/O path).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "prp.h"
#include "queue_ring.h"

namespace nvmux {

// The tracker memory a queue pair needs: one PRP list page per tracker.
struct TrackerMemory {
  uint64_t* prp_pages = nullptr;  // `count` pages of 4 KiB, CPU view
  uint64_t prp_iova = 0;          // device address of the first page
  uint32_t count = 0;             // trackers (<= ring entries - 1)
};

class IoQueue {
 public:
  using Done = std::function<void(const spec::Cqe&)>;

  // Borrows the ring and the tracker memory.
  IoQueue(uint16_t qid, QueueRing& ring, TrackerMemory trackers);

  // Submits an NVM read or write of `nlb` blocks at `slba` on `nsid`, data
  // in `segments`. Errors: EINVAL (nlb 0 or > 65536, data PRPs cannot describe,
  // naming the value), EAGAIN (no free tracker or ring slot: try after polling).
  Status Read(uint32_t nsid, uint64_t slba, uint32_t nlb, std::span<const IovaSegment> segments, Done done);
  Status Write(uint32_t nsid, uint64_t slba, uint32_t nlb, std::span<const IovaSegment> segments, Done done);
  // Any command with a data buffer (opcode, cdw10-15 as given).
  Status Submit(spec::Sqe cmd, std::span<const IovaSegment> segments, Done done);

  // Runs callbacks for up to `max` completions (0 = all available); returns
  // how many. Errors: EPROTO (a completion for a command id not outstanding).
  Result<uint32_t> Poll(uint32_t max = 0);

  uint16_t qid() const { return qid_; }
  uint32_t outstanding() const { return outstanding_; }

 private:
  uint16_t qid_;
  QueueRing& ring_;
  TrackerMemory memory_;
  std::vector<Done> callbacks_;      // by command id
  std::vector<uint16_t> free_cids_;  // preallocated; never grows
  uint32_t outstanding_ = 0;
};

// Create I/O Completion Queue then Create I/O Submission Queue for `qid`,
// physically contiguous, polled (no interrupts).
struct IoQueueCommands {
  spec::Sqe create_cq;
  spec::Sqe create_sq;
};
IoQueueCommands CreateIoQueueCommands(uint16_t qid, uint32_t entries, uint64_t sq_iova, uint64_t cq_iova);
// Delete I/O Submission Queue then Delete I/O Completion Queue.
struct IoQueueDeleteCommands {
  spec::Sqe delete_sq;
  spec::Sqe delete_cq;
};
IoQueueDeleteCommands DeleteIoQueueCommands(uint16_t qid);

}  // namespace nvmux
