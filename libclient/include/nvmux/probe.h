// Probing without blocking, and probing again to notice new and removed
// controllers (SPDK's spdk_nvme_probe_async, spdk_nvme_probe_poll_async and
// the remove callback of spdk_nvme_probe; its hotplug-by-polling).
//
//   nvmux::Prober prober(*env);                      // remembers what it attached
//   auto ctx = prober.ProbeAsync(trid, probe_cb, attach_cb, remove_cb);
//   for (Status st = (*ctx)->Poll(); !st; st = (*ctx)->Poll()) {
//     if (st.error().code != EAGAIN) { /* the first attach error */ break; }
//   }
//   for (auto& c : (*ctx)->TakeAttached()) controllers.push_back(std::move(c));
//   ...
//   // later, e.g. once a second: the same call reports only what changed
//   auto again = prober.Probe(trid, probe_cb, attach_cb, remove_cb);
//
// Where SPDK keeps this in global state, nvmux has an explicit object: a
// Prober is the registry of the controllers it attached (or was given with
// Adopt), keyed by their transport id. A probe through it:
//   1. checks each known controller that `trid` matches: one whose device
//      is gone gets `remove(trid, ctrlr)` once, and is forgotten. Gone means:
//      the controller failed or was removed (Controller::failed()/removed();
//      the probe runs the health check now: CSTS, the transport link), or
//      the vfio-user socket DIR/cntrl no longer exists; in a secondary, the
//      primary retired its group entry (detached it, or saw the device go)
//      or marked it removed/failed. The controller is marked failed, so its
//      queue pairs fail with ENXIO; the application then destroys it (free
//      its queue pairs first). A known controller the application already
//      destroyed is forgotten silently.
//   2. finds the controllers `trid` names: standalone or primary, the one
//      controller at trid (vfiouser: traddr required); in a secondary, every
//      controller the primary published that matches trid (all of trid's
//      trtype when traddr is empty, else that controller) and that is not
//      marked removed or failed.
//   3. for each one it does not know (nor is attaching in another context),
//      `probe(trid, options)` decides whether to attach and may edit the
//      options; the attach then proceeds in Poll(), and `attach(trid,
//      ctrlr)` runs when the controller is ready.
// So a repeated probe reports nothing when nothing changed, and a device
// that came back (the emulator restarted at the same directory, or the
// primary published it again) is attached as new.
//
// Poll() advances each controller's attach by one non-blocking step (open
// the transport; prepare; each step of the init state machine; publish and
// arm AERs/keep-alive; see libclient/core/controller_attach.h for the two
// short synchronous Set Features of the last step). Callbacks run inside
// Poll(), on its thread. The attached controllers belong to the context
// until TakeAttached() (at any time; those not taken are destroyed with the
// context, which the registry notices at the next probe).
//
// Thread safety: a Prober and its contexts are used from one thread, and
// the controllers it knows are destroyed on that thread too (or between
// probes). Ownership: contexts share the registry with their Prober, so
// either may be destroyed first; controllers borrow the Env.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "nvmux/controller.h"
#include "nvmux/result.h"

namespace nvmux {

// `remove(trid, ctrlr)`: the controller's device is gone (see above).
using RemoveFn = std::function<void(const TransportId& trid, Controller& ctrlr)>;

class ProbeContext {
 public:
  ~ProbeContext();
  ProbeContext(const ProbeContext&) = delete;
  ProbeContext& operator=(const ProbeContext&) = delete;

  // The first call scans (removals, then what to attach); each call after
  // that advances every pending attach by one step. Returns EAGAIN while
  // any attach is in progress, then Ok once every one finished, or the
  // first attach error (the others still attached): ENOENT/ECONNREFUSED
  // (nothing at traddr), ENOTSUP (tcp in a group), ETIMEDOUT, EIO, and
  // the errors of Controller::Connect; EINVAL (standalone/primary probe
  // without traddr). Once finished it returns the same result again.
  [[nodiscard]] Status Poll();
  bool done() const;
  // The controllers attached so far; ownership passes to the caller.
  std::vector<std::unique_ptr<Controller>> TakeAttached();

 private:
  friend class Prober;
  friend std::unique_ptr<ProbeContext> ProbeAsync(Env& env, const TransportId& trid, ProbeFn probe, AttachFn attach);
  struct Impl;
  explicit ProbeContext(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class Prober {
 public:
  // The Env outlives the Prober and every controller it attaches.
  explicit Prober(Env& env);
  ~Prober();
  Prober(const Prober&) = delete;
  Prober& operator=(const Prober&) = delete;

  // Starts a probe (never blocks, calls nothing: the work is in Poll()).
  [[nodiscard]] std::unique_ptr<ProbeContext> ProbeAsync(const TransportId& trid, ProbeFn probe, AttachFn attach,
                                                         RemoveFn remove = {});
  // ProbeAsync polled to the end (yielding the CPU between steps). Returns
  // the controllers this probe attached (ownership to the caller; empty
  // when nothing changed). When some attach failed: the error if nothing
  // attached, else the ones that did (the failures are logged).
  [[nodiscard]] Result<std::vector<std::unique_ptr<Controller>>> Probe(const TransportId& trid, const ProbeFn& probe,
                                                                       const AttachFn& attach,
                                                                       const RemoveFn& remove = {});
  // The same with no transport id: in a group's secondary, every controller
  // the primary published (as SPDK's probe with no trid finds every local
  // controller); elsewhere Poll() fails with EINVAL naming what to give.
  [[nodiscard]] std::unique_ptr<ProbeContext> ProbeAsync(ProbeFn probe, AttachFn attach, RemoveFn remove = {});
  [[nodiscard]] Result<std::vector<std::unique_ptr<Controller>>> Probe(const ProbeFn& probe, const AttachFn& attach,
                                                                       const RemoveFn& remove = {});
  // Remembers a controller attached otherwise (Controller::Connect), so that
  // probes skip it and report its removal. The caller keeps ownership.
  void Adopt(Controller& ctrlr);
  // Controllers the registry holds (attached or attaching), after dropping
  // the ones the application destroyed.
  size_t known();

  struct Registry;  // internal (libclient/probe.cc)

 private:
  static Result<std::vector<std::unique_ptr<Controller>>> PollToEnd(std::unique_ptr<ProbeContext> ctx);
  std::shared_ptr<Registry> registry_;
};

// In a group's secondary: the transport ids of the controllers the group's
// primary published and has not withdrawn (removed, failed), in the order
// it published them; connect to each with Controller::Connect. Errors:
// EINVAL (not a secondary: name the controller with its transport id),
// ENOENT (the group has none: "group N has no controllers: start nvmuxd -i N
// with -r TRID").
[[nodiscard]] Result<std::vector<TransportId>> GroupControllers(Env& env);

// A one-shot probe (no registry: every controller found is attached, no
// removal is reported), started without blocking.
[[nodiscard]] std::unique_ptr<ProbeContext> ProbeAsync(Env& env, const TransportId& trid, ProbeFn probe,
                                                       AttachFn attach);

}  // namespace nvmux
