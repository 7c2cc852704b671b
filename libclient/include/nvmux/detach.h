// Detaching controllers without blocking (SPDK's spdk_nvme_detach_async and
// spdk_nvme_detach_poll_async), for one controller or many at once.
//
//   nvmux::DetachContext detach;
//   detach.Add(std::move(ctrlr_a));
//   detach.Add(std::move(ctrlr_b));
//   for (Status st = detach.Poll(); !st; st = detach.Poll()) { /* EAGAIN: other work */ }
//
// Add() cuts the controller off at once: its queue pairs fail with ENXIO
// (free them before, as before destroying a controller), outstanding admin
// commands complete aborted, a primary withdraws it from its group (the
// group entry is retired: secondaries see it gone). Poll() then steps each
// controller's shutdown notification (CC.SHN = 01b, then CSTS.SHST = 10b)
// one register access per call, within a deadline of RTD3E rounded up to
// milliseconds, at least 10 s (see libclient/core/controller_shutdown.h);
// a controller whose shutdown completed, timed out, or whose device is gone
// is destroyed (its transport disconnected) in that Poll. Failed
// controllers and a secondary's controllers (the primary owns the device)
// get no notification and go at the next Poll.
//
// Destroying a Controller without a DetachContext is the synchronous form:
// the same machine polled to the end (it sleeps 100 us between register
// reads). Detach() is that for one controller, for symmetry with Probe.
//
// Thread safety: one thread uses a DetachContext. Ownership: it owns the
// controllers added until each is destroyed; destroying the context
// finishes the remaining ones synchronously. The Env outlives it.
#pragma once

#include <memory>
#include <vector>

#include "nvmux/controller.h"
#include "nvmux/result.h"

namespace nvmux {

class ControllerShutdown;

class DetachContext {
 public:
  DetachContext();
  ~DetachContext();
  DetachContext(const DetachContext&) = delete;
  DetachContext& operator=(const DetachContext&) = delete;

  // Starts detaching `ctrlr` (see above; never blocks on the device).
  // A null pointer is ignored.
  void Add(std::unique_ptr<Controller> ctrlr);
  // One step of each controller's shutdown. Returns Ok once every added
  // controller is detached, EAGAIN while any is in progress. Never fails
  // otherwise: a shutdown that times out is logged and the controller
  // detached anyway.
  [[nodiscard]] Status Poll();
  // Controllers still being detached.
  size_t pending() const { return entries_.size(); }
  // How the finished shutdowns went, over the context's lifetime.
  uint32_t completed() const { return completed_; }   // CSTS.SHST reached 10b
  uint32_t timed_out() const { return timed_out_; }   // deadline passed
  uint32_t skipped() const { return skipped_; }       // no notification (failed, gone, secondary)

 private:
  struct Entry;
  std::vector<std::unique_ptr<Entry>> entries_;
  uint32_t completed_ = 0;
  uint32_t timed_out_ = 0;
  uint32_t skipped_ = 0;
};

// Starts detaching one controller: a context with it added.
[[nodiscard]] std::unique_ptr<DetachContext> DetachAsync(std::unique_ptr<Controller> ctrlr);
// Detaches one controller synchronously (DetachAsync, polled to the end).
void Detach(std::unique_ptr<Controller> ctrlr);

}  // namespace nvmux
