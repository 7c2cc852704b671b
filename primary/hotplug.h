// Hotplug: the primary's watch over the controllers it serves (nvmuxd -r),
// by polling (DESIGN.md section 2, "hotplug polling"). A controller whose
// device went away (surprise removal, the emulator exiting, CSTS.CFS) is
// detached: its group entry is retired with `removed`/`failed` set, so
// secondaries' I/O fails with ENXIO and their repeated probes report it
// through their remove callback. A device that (re)appears at one of the
// transport ids (for example nvmux-emu restarted with the same socket
// directory) is attached and published again; secondaries' next probe
// reports it as new.
//
// Built on nvmux::Prober (nvmux/probe.h): once a period (1 s by default), or
// at once when a served controller has failed (nvmuxd's admin polling
// notices that within 10 ms), a probe per transport id checks the known
// controller (a stat of the socket path and one CSTS read) or tries to
// attach one; the attach then advances one step per Poll, so nvmuxd's loop
// never waits on a device. Attaches and removals are printed on stdout
// ("nvmuxd: hotplug: attached TRID", "nvmuxd: hotplug: removed TRID").
//
// Thread safety: one thread (nvmuxd's loop) calls Poll, and uses the
// controller list between calls. Ownership: borrows the Env and nvmuxd's
// controller list for its lifetime; Poll adds to and removes from the list.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nvmux/controller.h"
#include "nvmux/probe.h"
#include "shm/base/clock.h"

namespace nvmux::primary {

class Hotplug {
 public:
  // `trids`: the transport ids to serve; the controllers already attached
  // for them (in `controllers`) are adopted.
  Hotplug(Env& env, std::vector<TransportId> trids, std::vector<std::unique_ptr<Controller>>& controllers,
          Nanos period = std::chrono::seconds(1));
  ~Hotplug();
  Hotplug(const Hotplug&) = delete;
  Hotplug& operator=(const Hotplug&) = delete;

  // The options of the controllers it attaches (nvmuxd's --io-queues, ...).
  void SetControllerOptions(const ControllerOptions& options) { options_ = options; }

  // Call periodically (each loop turn is fine: between probes it costs a
  // clock comparison and a failed() flag per controller). `now_ns`: the
  // monotonic clock.
  void Poll(int64_t now_ns);
  // Abandons the probes in progress (their half-attached controllers are
  // detached); Poll does nothing afterwards. Call before the Env goes.
  void Stop();

  uint64_t attached() const { return attached_; }  // controllers attached by hotplug
  uint64_t removed() const { return removed_; }    // controllers detached as gone

 private:
  void StartProbes(int64_t now_ns);
  void Finish(const TransportId& trid, Status result, ProbeContext& ctx);

  Env& env_;
  std::vector<TransportId> trids_;
  std::vector<std::unique_ptr<Controller>>& controllers_;
  Nanos period_;
  ControllerOptions options_;
  Prober prober_;
  struct Probing {
    TransportId trid;
    std::unique_ptr<ProbeContext> ctx;
  };
  std::vector<Probing> probing_;
  std::vector<Controller*> gone_;        // reported by remove callbacks, detached after the Poll
  std::map<std::string, bool> absent_;   // per trid: last probe found nothing (logged once)
  int64_t next_probe_ns_ = 0;
  bool stopped_ = false;
  uint64_t attached_ = 0;
  uint64_t removed_ = 0;
};

}  // namespace nvmux::primary
