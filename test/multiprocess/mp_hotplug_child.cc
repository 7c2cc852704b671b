// nvmux_mp_hotplug_child: a secondary that follows hotplug by probing
// repeatedly, as an application would (nvmux/probe.h).
//
//   nvmux_mp_hotplug_child -i G [-r TRID] [--seconds S] [--probe-ms P]
//     joins group G and probes (TRID, or every vfiouser controller the
//     primary published) every P ms (default 50) through one Prober. For
//     each controller attached it prints "attached TRID", opens a queue
//     pair and writes/reads back block 0 of namespace 1 in a loop, printing
//     "io-ok TRID" after the first verified round trip. The first ENXIO of
//     a controller's I/O prints "enxio TRID" (I/O then stops on it); the
//     remove callback prints "removed TRID" and the controller is detached
//     (queue pair, then controller) once its I/O reported ENXIO. Any other error prints "error ..." and
//     exits 1. Exits 0 after S seconds (default 60) or on SIGTERM.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "nvmux/controller.h"
#include "nvmux/env.h"
#include "nvmux/probe.h"
#include "shm/base/clock.h"

namespace nvmux {
namespace {

std::atomic<bool> g_stop{false};

struct Attached {
  std::string name;
  std::unique_ptr<Controller> ctrlr;
  std::unique_ptr<IoQpair> qpair;
  DmaBuffer buffer;
  bool busy = false;
  bool writing = true;         // the next operation
  bool in_flight_write = false;  // the operation in flight
  bool io_ok_said = false;
  bool enxio = false;
  uint32_t pass = 0;
  int errors = 0;
};

void Say(const char* what, const std::string& name) {
  std::printf("%s %s\n", what, name.c_str());
  std::fflush(stdout);
}

void OnDone(void* arg, const spec::Cqe& cpl) {
  auto* a = static_cast<Attached*>(arg);
  a->busy = false;
  if (IsError(cpl)) {
    // Aborted by the driver when the device went away (0/08): the ENXIO
    // from the poll tells it; anything else is an error.
    if (!(cpl.sct() == 0 && cpl.sc() == 0x08)) {
      std::fprintf(stderr, "hotplug_child: I/O failed: status %u/0x%02x\n", cpl.sct(), cpl.sc());
      a->errors++;
    }
    return;
  }
  if (!a->in_flight_write) {  // a read completed: check it
    const auto* w = static_cast<const uint32_t*>(a->buffer.data());
    for (uint32_t i = 0; i < 512 / 4; ++i)
      if (w[i] != a->pass * 1000 + i) {
        std::fprintf(stderr, "hotplug_child: data mismatch in pass %u\n", a->pass);
        a->errors++;
        return;
      }
    if (!a->io_ok_said) {
      a->io_ok_said = true;
      Say("io-ok", a->name);
    }
  }
}

// One step of a controller's write/read-back loop. Returns false on an
// error other than ENXIO.
bool StepIo(Attached& a) {
  if (a.enxio || !a.qpair) return true;
  Namespace* ns = a.ctrlr->GetNamespace(1);
  if (!a.busy && ns != nullptr) {
    if (a.writing) {
      a.pass++;
      auto* w = static_cast<uint32_t*>(a.buffer.data());
      for (uint32_t i = 0; i < 512 / 4; ++i) w[i] = a.pass * 1000 + i;
    }
    a.busy = true;
    a.in_flight_write = a.writing;
    Status st = a.writing ? a.qpair->Write(*ns, a.buffer.data(), 0, 1, OnDone, &a)
                          : a.qpair->Read(*ns, a.buffer.data(), 0, 1, OnDone, &a);
    a.writing = !a.writing;
    if (!st) {
      a.busy = false;
      if (st.error().code == ENXIO) {
        a.enxio = true;
        Say("enxio", a.name);
        return true;
      }
      std::printf("error submit: %s\n", st.error().message.c_str());
      return false;
    }
  }
  auto n = a.qpair->ProcessCompletions();
  if (!n) {
    if (n.error().code == ENXIO) {
      a.enxio = true;
      Say("enxio", a.name);
      return true;
    }
    std::printf("error poll: %s\n", n.error().message.c_str());
    return false;
  }
  if (a.errors > 0) {
    std::printf("error I/O: %d failed\n", a.errors);
    return false;
  }
  return true;
}

// Runs a removed controller's I/O until it reports ENXIO (5 s at most).
bool DrainRemoved(Attached& a) {
  int64_t until = MonotonicNanos() + 5'000'000'000;
  while (!a.enxio && a.qpair && MonotonicNanos() < until)
    if (!StepIo(a)) return false;
  if (a.enxio || !a.qpair) return true;
  std::printf("error removed: %s's I/O did not report ENXIO within 5 s\n", a.name.c_str());
  return false;
}

int Run(int group, const std::string& trid_text, double seconds, int probe_ms) {
  EnvOptions o;
  o.name = "mp_hotplug";
  o.group_id = group;
  auto env = Env::Init(o);
  if (!env) {
    std::printf("error env: %s\n", env.error().message.c_str());
    return 1;
  }
  TransportId filter;  // every vfiouser controller published
  if (!trid_text.empty()) {
    auto t = TransportId::Parse(trid_text);
    if (!t) {
      std::printf("error trid: %s\n", t.error().message.c_str());
      return 2;
    }
    filter = *t;
  }
  Prober prober(**env);
  std::vector<std::unique_ptr<Attached>> live;
  std::vector<Controller*> removed;
  int rc = 0;
  int64_t end = MonotonicNanos() + static_cast<int64_t>(seconds * 1e9);
  int64_t next_probe = 0;
  while (!g_stop.load() && MonotonicNanos() < end && rc == 0) {
    if (MonotonicNanos() >= next_probe) {
      next_probe = MonotonicNanos() + int64_t{probe_ms} * 1'000'000;
      auto attached = prober.Probe(
          filter, nullptr, [](const TransportId& t, Controller&) { Say("attached", t.ToString()); },
          [&](const TransportId& t, Controller& c) {
            Say("removed", t.ToString());
            removed.push_back(&c);
          });
      if (!attached) {
        std::printf("error probe: %s\n", attached.error().message.c_str());
        rc = 1;
        break;
      }
      for (auto& c : *attached) {
        auto a = std::make_unique<Attached>();
        a->name = c->trid().ToString();
        auto q = c->AllocIoQpair();
        auto b = (*env)->AllocDma(512);
        if (!q || !b) {
          std::printf("error setup: %s\n", (!q ? q.error() : b.error()).message.c_str());
          rc = 1;
          break;
        }
        a->qpair = std::move(*q);
        a->buffer = std::move(*b);
        a->ctrlr = std::move(c);
        live.push_back(std::move(a));
      }
      // Detach what the probe reported gone, queue pair first, once its
      // I/O has seen the removal: the probe may notice it before the
      // queue pair's next poll does, and I/O outstanding on a removed
      // controller must still end (with ENXIO), not vanish.
      for (Controller* gone : removed) {
        for (auto& a : live)
          if (a->ctrlr.get() == gone && !DrainRemoved(*a)) rc = 1;
        std::erase_if(live, [&](auto& a) { return a->ctrlr.get() == gone; });
      }
      removed.clear();
    }
    for (auto& a : live)
      if (!StepIo(*a)) rc = 1;
  }
  // Drain, then detach everything (queue pairs before controllers).
  for (auto& a : live) {
    int64_t until = MonotonicNanos() + 5'000'000'000;
    while (a->busy && !a->enxio && MonotonicNanos() < until)
      if (!a->qpair->ProcessCompletions()) break;
    a->qpair.reset();
  }
  live.clear();
  std::printf("done\n");
  std::fflush(stdout);
  return rc;
}

}  // namespace
}  // namespace nvmux

int main(int argc, char** argv) {
  CLI::App app{"multi-process hotplug test child: a secondary probing repeatedly"};
  int group = 0;
  std::string trid;
  double seconds = 60;
  int probe_ms = 50;
  app.add_option("-i", group)->required();
  app.add_option("-r", trid);
  app.add_option("--seconds", seconds);
  app.add_option("--probe-ms", probe_ms)->check(CLI::Range(1, 10000));
  CLI11_PARSE(app, argc, argv);
  signal(SIGTERM, [](int) { nvmux::g_stop.store(true); });
  return nvmux::Run(group, trid, seconds, probe_ms);
}
