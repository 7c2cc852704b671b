// IoQpair: I/O command timeouts (Controller::SetIoTimeout) — taking the
// controller's setting, the periodic check of the commands on the device,
// and the action. The submit-side half is QpairState::StartTimeout.
#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <mutex>

#include "libclient/core/controller_state.h"
#include "libclient/core/qpair_state.h"
#include "shm/base/clock.h"
#include "shm/base/format.h"
#include "shm/base/log.h"

namespace nvmux {
namespace {

// Between two scans of the trackers: an eighth of the timeout, so a command
// is reported at most 12.5 % late, and a scan (every tracker) costs nothing
// noticeable; never more often than every 100 us.
constexpr int64_t kMinCheckIntervalNs = 100'000;
int64_t CheckInterval(int64_t timeout_ns) { return std::max(timeout_ns / 8, kMinCheckIntervalNs); }

}  // namespace

void QpairState::PollTimeouts() {
  int64_t now = MonotonicNanos();
  if (cs->io_timeout_generation.load(std::memory_order_relaxed) != timeout_generation) {
    // The setting changed (or this queue pair never took it). Copied under
    // the lock SetIoTimeout writes it with; the fn is this thread's copy.
    std::lock_guard<std::recursive_mutex> guard(cs->admin_mutex);
    timeout_generation = cs->io_timeout_generation.load(std::memory_order_relaxed);
    bool was_on = timeout_ns > 0;
    timeout_ns = static_cast<int64_t>(std::min<uint64_t>(cs->io_timeout_us, INT64_MAX / 1000) * 1000);
    timeout_action = cs->io_timeout_action;
    timeout_fn = cs->io_timeout_fn;
    next_timeout_check_ns = now;
    if (!was_on && timeout_ns > 0) {
      // Commands sent while timeouts were off carry no time: they start now.
      for (Request* r : trackers) {
        if (r == nullptr) continue;
        r->timeout_start_ns = now;
        r->timeout_stage = IoTimeoutStage::kRunning;
      }
    }
  }
  if (timeout_ns == 0 || now < next_timeout_check_ns) return;
  next_timeout_check_ns = now + CheckInterval(timeout_ns);
  int64_t started_before = now - timeout_ns;
  for (size_t cid = 0; cid < trackers.size(); ++cid) {
    Request* r = trackers[cid];
    if (r == nullptr || r->timeout_start_ns > started_before) continue;
    auto c = static_cast<uint16_t>(cid);
    switch (r->timeout_stage) {
      case IoTimeoutStage::kReported:
        continue;
      case IoTimeoutStage::kAbortSent:
        // The Abort came back (or not) and the command is still here: the
        // device will not give it back. Only a reset does (Linux's escalation).
        r->timeout_stage = IoTimeoutStage::kReported;
        NVMUX_LOG(kError, "queue pair %u of %s: command %u still outstanding %" PRId64
                  " ms after its Abort; the controller will be reset", qid, cs->trid.ToString().c_str(), c,
                  timeout_ns / 1'000'000);
        cs->reset_requested = true;
        continue;
      case IoTimeoutStage::kRunning:
        break;
    }
    r->timeout_stage = IoTimeoutStage::kReported;
    io_timeouts++;
    NVMUX_LOG(kWarning, "queue pair %u of %s: I/O command %u (opcode %s) timed out (%" PRId64 " us)", qid,
              cs->trid.ToString().c_str(), c, Hex(r->cmd.opc, 2).c_str(), timeout_ns / 1000);
    if (timeout_fn) {
      timeout_fn(qid, c);
      // The callback may have completed it (Disconnect) or aborted it.
      if (trackers[cid] != r || r->timeout_stage != IoTimeoutStage::kReported) continue;
    }
    switch (timeout_action) {
      case TimeoutAction::kNone:
        break;
      case TimeoutAction::kAbort:
        if (Status st = ctrlr->AbortCommand(qid, c); st) {
          r->timeout_stage = IoTimeoutStage::kAbortSent;
          r->timeout_start_ns = now;
        } else {
          NVMUX_LOG(kError, "queue pair %u: cannot abort timed-out command %u (%s); the controller will be reset",
                    qid, c, st.error().message.c_str());
          cs->reset_requested = true;
        }
        break;
      case TimeoutAction::kReset:
        // Not here: a reset aborts and re-creates every queue pair, this one
        // included, in the middle of its poll. The admin poller does it.
        cs->reset_requested = true;
        break;
    }
  }
}

}  // namespace nvmux
