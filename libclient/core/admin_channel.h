// AdminChannel: how the controller core submits admin commands and learns
// their completions, independent of where the admin queue lives (private
// memory, or the group's shared admin queue with per-process routing).
//
// Thread safety: one thread at a time per channel. Submit never blocks.
#pragma once

#include <functional>

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
};

}  // namespace nvmux
