#include "libclient/core/controller_shutdown.h"

#include <algorithm>

#include "nvmux/spec/registers.h"
#include "shm/base/log.h"

namespace nvmux {

const char* ToString(ShutdownState state) {
  switch (state) {
    case ShutdownState::kRequest: return "request";
    case ShutdownState::kWaitComplete: return "wait-complete";
    case ShutdownState::kComplete: return "complete";
    case ShutdownState::kTimedOut: return "timed-out";
    case ShutdownState::kGone: return "gone";
  }
  return "?";
}

Nanos ControllerShutdown::Timeout(uint32_t rtd3e_us) {
  // RTD3E is the device's own bound; devices that report none, or less than
  // 10 s, get 10 s (SPDK does the same: some report optimistic values).
  int64_t ms = (int64_t{rtd3e_us} + 999) / 1000;
  return std::chrono::milliseconds(std::max<int64_t>(ms, 10'000));
}

ControllerShutdown::ControllerShutdown(RegisterIo& regs, const Clock& clock, Nanos timeout, std::string name)
    : regs_(regs), clock_(clock), timeout_(timeout), name_(std::move(name)) {}

bool ControllerShutdown::done() const {
  return state_ == ShutdownState::kComplete || state_ == ShutdownState::kTimedOut || state_ == ShutdownState::kGone;
}

void ControllerShutdown::Enter(ShutdownState next) {
  NVMUX_LOG(kDebug, "controller %s shutdown: %s -> %s", name_.c_str(), ToString(state_), ToString(next));
  state_ = next;
}

ShutdownState ControllerShutdown::Step() {
  switch (state_) {
    case ShutdownState::kRequest: {
      auto cc = regs_.Read32(spec::kRegCc);
      if (!cc || *cc == 0xFFFFFFFFu) {
        Enter(ShutdownState::kGone);
        break;
      }
      spec::Cc c{*cc};
      c.set_shn(1);  // normal shutdown notification
      if (!regs_.Write32(spec::kRegCc, c.raw)) {
        Enter(ShutdownState::kGone);
        break;
      }
      deadline_ = clock_.Now() + timeout_;
      Enter(ShutdownState::kWaitComplete);
      break;
    }
    case ShutdownState::kWaitComplete: {
      auto csts = regs_.Read32(spec::kRegCsts);
      if (!csts || *csts == 0xFFFFFFFFu) {
        Enter(ShutdownState::kGone);
      } else if (spec::Csts{*csts}.shst() == 2) {
        Enter(ShutdownState::kComplete);
      } else if (clock_.Now() >= deadline_) {
        NVMUX_LOG(kWarning, "controller %s did not report shutdown complete (CSTS.SHST = 10b) within %lld ms",
                  name_.c_str(), static_cast<long long>(timeout_.count() / 1'000'000));
        Enter(ShutdownState::kTimedOut);
      }
      break;
    }
    case ShutdownState::kComplete:
    case ShutdownState::kTimedOut:
    case ShutdownState::kGone:
      break;
  }
  return state_;
}

}  // namespace nvmux
