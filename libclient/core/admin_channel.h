// AdminChannel: how the controller core submits admin commands and learns
// their completions, independent of where the admin queue lives (private
// memory, or the group's shared admin queue with per-process routing).
//
// Thread safety: one thread at a time per channel. Submit never blocks.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "nvmux/spec/command.h"
#include "shm/base/result.h"

namespace nvmux {

class AdminChannel {
 public:
  using Done = std::function<void(const spec::Cqe&)>;
  virtual ~AdminChannel() = default;
  // Queues `cmd` (its cid is assigned by the channel); `done` runs from Poll().
  // Errors: EAGAIN (admin queue full), ENXIO (controller failed).
  virtual Status Submit(const spec::Sqe& cmd, Done done) = 0;
  // Processes available completions, running their callbacks.
  // Errors: ENXIO (controller failed).
  virtual Status Poll() = 0;
  // Optional operations (the init state machine needs none of them; fakes
  // may leave them out).
  // Commands outstanding (from this process).
  virtual uint32_t outstanding() const { return 0; }
  // This process's command ids outstanding since before `deadline_ns`
  // (MonotonicNanos), for timeout handling; AERs are never included.
  virtual std::vector<uint16_t> SubmittedBefore(int64_t /*deadline_ns*/) const { return {}; }
  // Completes every command of this process with `status` (a CQE status
  // field) without the device: after a failure or before a reset.
  virtual void AbortAll(uint16_t /*status*/) {}
  // Starts over on fresh (zeroed) rings, after a controller reset.
  virtual void ResetRing() {}
};

}  // namespace nvmux
