// DetachContext: shutdown notifications stepped without blocking (see
// nvmux/detach.h).
#include "nvmux/detach.h"

#include <optional>
#include <thread>

#include "libclient/core/controller_shutdown.h"
#include "libclient/core/controller_state.h"
#include "shm/base/log.h"

namespace nvmux {

struct DetachContext::Entry {
  std::unique_ptr<Controller> ctrlr;
  std::optional<ControllerShutdown> shutdown;  // none: nothing to notify
};

DetachContext::DetachContext() = default;

DetachContext::~DetachContext() {
  while (!Poll()) std::this_thread::sleep_for(std::chrono::microseconds(100));
}

void DetachContext::Add(std::unique_ptr<Controller> ctrlr) {
  if (!ctrlr) return;
  auto e = std::make_unique<Entry>();
  bool notify = ctrlr->BeginDetach();
  ControllerState& s = ctrlr->state();
  if (notify)
    e->shutdown.emplace(s.transport->registers(), SystemClock::Get(), ControllerShutdown::Timeout(s.data.ctrlr.rtd3e),
                        s.trid.ToString());
  e->ctrlr = std::move(ctrlr);
  entries_.push_back(std::move(e));
}

Status DetachContext::Poll() {
  for (size_t i = 0; i < entries_.size();) {
    Entry& e = *entries_[i];
    if (e.shutdown) {
      e.shutdown->Step();
      if (!e.shutdown->done()) {
        ++i;
        continue;
      }
      switch (e.shutdown->state()) {
        case ShutdownState::kComplete: ++completed_; break;
        case ShutdownState::kTimedOut: ++timed_out_; break;
        case ShutdownState::kGone: ++skipped_; break;
        case ShutdownState::kRequest:
        case ShutdownState::kWaitComplete: break;  // not done: unreachable
      }
    } else {
      ++skipped_;
    }
    NVMUX_LOG(kInfo, "detached %s (shutdown %s)", e.ctrlr->trid().ToString().c_str(),
              e.shutdown ? ToString(e.shutdown->state()) : "not notified");
    e.ctrlr->detached_ = true;
    entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));  // destroys the controller
  }
  if (!entries_.empty()) return Fail(EAGAIN, std::to_string(entries_.size()) + " controller(s) still detaching");
  return Ok();
}

std::unique_ptr<DetachContext> DetachAsync(std::unique_ptr<Controller> ctrlr) {
  auto ctx = std::make_unique<DetachContext>();
  ctx->Add(std::move(ctrlr));
  return ctx;
}

void Detach(std::unique_ptr<Controller> ctrlr) {
  DetachContext ctx;
  ctx.Add(std::move(ctrlr));
  while (!ctx.Poll()) std::this_thread::sleep_for(std::chrono::microseconds(100));
}

}  // namespace nvmux
