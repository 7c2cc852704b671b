// nvmux_shm_child: a process that joins a group in a given role and obeys
// line commands on stdin, for the multi-process tests (group_test.cc) and the
// attach benchmark. Not installed.
//
//   nvmux_shm_child --role primary|secondary|standalone [-i N] [--abi V] [--name X]
//
// Prints "ready slot=<K> pid=<P> open_us=<T>" or "error code=<errno> <message>".
// Commands: "alloc <bytes>" -> "allocated iova=<x>";  "usage" -> "usage all=<n> bytes=<b> mine=<n>";
// "reap" (reaps every dead process now) -> "reaped n=<k> pids=<p,...> freed=<n>";
// "watch <ms>" (waits for a death, reaps it) -> "reaped pid=<p> noticed_ns=<t> freed=<n>" or "watch timeout";
// "lock-and-die" (takes the group lock, half-updates, SIGKILLs itself);
// "dpdk-lock-and-die <name prefix>" (leaves that DPDK lock word held, SIGKILLs itself);
// "lock" -> "locked repaired=<0|1>";  "free-all" (drops this process's buffers) -> "freed";
// "leaked" -> "leaked bytes=<n>";  "quit" (or EOF) -> clean exit.
// With NVMUX_DIE_AT=<test point> in the environment the child dies there (shm/base/test_point.h).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>

#include "shm/dpdk_lock_doctor.h"
#include "shm/group.h"

using namespace nvmux;
using namespace nvmux::shm;

namespace {

void Say(const std::string& line) {
  std::cout << line << std::endl;  // flushes: the parent reads line by line
}

}  // namespace

int main(int argc, char** argv) {
  GroupOptions o;
  std::string role = "secondary";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--role") role = v;
    else if (k == "-i") o.group_id = std::atoi(v.c_str());
    else if (k == "--abi") o.abi_version = static_cast<uint32_t>(std::atoi(v.c_str()));
    else if (k == "--name") o.name = v;
    else { std::cerr << "unknown option " << k << "\n"; return 2; }
  }
  o.create = role == "primary";
  if (role == "standalone") o.group_id.reset();
  if (o.name == "nvmux") o.name = "child-" + role;
  signal(SIGPIPE, SIG_IGN);

  int64_t t0 = MonotonicNanos();
  auto group = Group::Open(o);
  int64_t t1 = MonotonicNanos();
  if (!group) {
    Say("error code=" + std::to_string(group.error().code) + " " + group.error().message);
    return 2;
  }
  Group& g = **group;
  Say("ready slot=" + std::to_string(g.self_slot()) + " pid=" + std::to_string(getpid()) +
      " open_us=" + std::to_string((t1 - t0) / 1000));

  std::vector<DmaBuffer> buffers;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd;
    in >> cmd;
    if (cmd == "quit") break;
    if (cmd == "alloc") {
      size_t bytes = 0;
      in >> bytes;
      auto buf = g.dma().Allocate(bytes, 4096, "child");
      if (!buf) { Say("error code=" + std::to_string(buf.error().code) + " " + buf.error().message); continue; }
      std::ostringstream os;
      os << "allocated iova=0x" << std::hex << buf->iova();
      buffers.push_back(std::move(*buf));
      Say(os.str());
    } else if (cmd == "usage") {
      auto all = g.dma().TotalUsage();
      auto mine = g.dma().UsageOf(g.self_slot());
      Say("usage all=" + std::to_string(all.allocations) + " bytes=" + std::to_string(all.bytes) +
          " mine=" + std::to_string(mine.allocations) + " procs=" + std::to_string(g.processes().Snapshot().size()));
    } else if (cmd == "watch") {
      int ms = 0;
      in >> ms;
      auto watcher = DeathWatcher::Create(g.processes());
      if (!watcher) { Say("error " + watcher.error().message); continue; }
      Say("watching");
      auto dead = watcher->Wait(std::chrono::milliseconds(ms));
      int64_t noticed = MonotonicNanos();
      if (!dead || dead->empty()) { Say("watch timeout"); continue; }
      for (const auto& d : *dead) {
        auto rec = g.processes().Reap(d.slot, d.generation);
        Say("reaped pid=" + std::to_string(d.id.pid) + " noticed_ns=" + std::to_string(noticed) +
            " freed=" + std::to_string(rec ? rec->released_items : 0));
      }
    } else if (cmd == "reap") {
      std::string pids;
      uint64_t freed = 0;
      std::vector<ReapRecord> reaped = g.ReapDead();
      for (const ReapRecord& r : reaped) {
        pids += (pids.empty() ? "" : ",") + std::to_string(r.pid);
        freed += r.released_items;
      }
      Say("reaped n=" + std::to_string(reaped.size()) + " pids=" + pids + " freed=" + std::to_string(freed));
    } else if (cmd == "lock-and-die") {
      auto guard = g.lock().Lock();
      if (!guard) { Say("error " + guard.error().message); continue; }
      // Die holding the lock (intent-recording deaths: NVMUX_DIE_AT test points).
      Say("dying");
      ::kill(getpid(), SIGKILL);
    } else if (cmd == "dpdk-lock-and-die") {
      // What a process killed inside DPDK's heap code leaves: the heap's
      // spinlock word held. Found as the lock doctor finds it.
      std::string prefix;
      in >> prefix;
      auto doctor = DpdkLockDoctor::Create();
      if (!doctor) { Say("error " + doctor.error().message); continue; }
      int32_t* word = nullptr;
      for (auto& [name, w] : doctor->Words())
        if (name.rfind(prefix, 0) == 0) word = w;
      if (word == nullptr) { Say("error no DPDK lock named " + prefix + "*"); continue; }
      *word = 1;
      Say("dying");
      ::kill(getpid(), SIGKILL);
    } else if (cmd == "free-all") {
      buffers.clear();
      Say("freed");
    } else if (cmd == "leaked") {
      Say("leaked bytes=" + std::to_string(g.dma().LeakedBytes()));
    } else if (cmd == "lock") {
      auto guard = g.lock().Lock(std::chrono::seconds(2));
      if (!guard) { Say("error code=" + std::to_string(guard.error().code) + " " + guard.error().message); continue; }
      Say(std::string("locked repaired=") + (guard->repaired() ? "1" : "0"));
    } else if (!cmd.empty()) {
      Say("error unknown command " + cmd);
    }
  }
  buffers.clear();
  return 0;
}
