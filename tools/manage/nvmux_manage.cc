// nvmux-manage: nvme-cli-style management of an nvmux group. Today: `status`
// (the group's processes and reaped processes) and `cleanup` (remove a dead
// group's leftovers). Controller subcommands arrive with libclient.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <ctime>
#include <iostream>

#include "shm/group.h"

using namespace nvmux;

namespace {

const char* StateName(shm::GroupProbe::State s) {
  switch (s) {
    case shm::GroupProbe::State::kAbsent: return "absent";
    case shm::GroupProbe::State::kLive: return "live";
    case shm::GroupProbe::State::kStale: return "stale (its processes are dead)";
  }
  return "?";
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

int ShowStatus(int id, bool json) {
  auto probe = shm::ProbeGroup(id);
  if (!probe) {
    std::cerr << "nvmux-manage: " << probe.error().message << "\n";
    return 2;
  }
  if (probe->state == shm::GroupProbe::State::kLive && !probe->primary) {
    // Orphaned: the primary died; its secondaries keep running.
    int pid = probe->member.value_or(0);
    if (json)
      std::printf("{\"group\": %d, \"state\": \"orphaned\", \"attached_pid\": %d}\n", id, pid);
    else
      std::printf("group %d: primary not running; process %d (and maybe others) still attached and working; "
                  "restart `nvmuxd -i %d` once they have exited\n", id, pid, id);
    return 1;
  }
  if (probe->state != shm::GroupProbe::State::kLive) {
    if (json) {
      std::printf("{\"group\": %d, \"state\": \"%s\", \"files\": %zu}\n", id,
                  probe->state == shm::GroupProbe::State::kAbsent ? "absent" : "stale", probe->files.size());
    } else {
      std::printf("group %d: %s", id, StateName(probe->state));
      if (probe->state == shm::GroupProbe::State::kStale)
        std::printf("; %s left: run `nvmux-manage cleanup -i %d`", shm::SummariseFiles(probe->files).c_str(), id);
      std::printf("\n");
    }
    return probe->state == shm::GroupProbe::State::kAbsent ? 1 : 0;
  }
  shm::GroupOptions o;
  o.group_id = id;
  o.name = "nvmux-manage";
  auto group = shm::Group::Open(o);
  if (!group) {
    std::cerr << "nvmux-manage: " << group.error().ToString() << "\n";
    return 1;
  }
  auto procs = (*group)->processes().Snapshot();
  auto reaped = (*group)->processes().ReapHistory();
  auto dma = (*group)->dma().TotalUsage();
  if (json) {
    std::printf("{\"group\": %d, \"state\": \"live\", \"primary_pid\": %d, \"dma\": {\"allocations\": %u, \"bytes\": %llu},\n",
                id, *probe->primary, dma.allocations, static_cast<unsigned long long>(dma.bytes));
    std::printf(" \"processes\": [");
    for (size_t i = 0; i < procs.size(); ++i)
      std::printf("%s{\"slot\": %u, \"pid\": %d, \"role\": \"%s\", \"name\": \"%s\", \"cores\": \"%s\"}", i ? ", " : "",
                  procs[i].slot, procs[i].id.pid, shm::ToString(procs[i].role), JsonEscape(procs[i].name).c_str(),
                  procs[i].cores.Empty() ? "any" : procs[i].cores.ToListString().c_str());
    std::printf("],\n \"reaped\": [");
    for (size_t i = 0; i < reaped.size(); ++i)
      std::printf("%s{\"pid\": %d, \"name\": \"%s\", \"released\": %llu, \"when_ns\": %llu}", i ? ", " : "", reaped[i].pid,
                  JsonEscape(reaped[i].name).c_str(), static_cast<unsigned long long>(reaped[i].released_items),
                  static_cast<unsigned long long>(reaped[i].reaped_realtime_ns));
    std::printf("]}\n");
    return 0;
  }
  std::printf("group %d: live, primary pid %d, DMA memory: %u allocation(s), %llu bytes\n", id, *probe->primary,
              dma.allocations, static_cast<unsigned long long>(dma.bytes));
  std::printf("%-5s %-8s %-11s %-20s %s\n", "slot", "pid", "role", "name", "cores");
  for (const auto& p : procs)
    std::printf("%-5u %-8d %-11s %-20s %s\n", p.slot, p.id.pid, shm::ToString(p.role), p.name.c_str(),
                p.cores.Empty() ? "any" : p.cores.ToListString().c_str());
  for (const auto& r : reaped) {
    time_t when = static_cast<time_t>(r.reaped_realtime_ns / 1'000'000'000u);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%F %T", std::localtime(&when));
    std::printf("reaped: pid %d (%s) at %s, released %llu item(s)\n", r.pid, r.name, buf,
                static_cast<unsigned long long>(r.released_items));
  }
  return 0;
}

int Cleanup(int id) {
  auto removed = shm::CleanStaleGroup(id);
  if (!removed) {
    std::cerr << "nvmux-manage: cannot clean group " << id << ": " << removed.error().message << "\n";
    return 1;
  }
  if (removed->empty()) std::printf("group %d: nothing to clean\n", id);
  else std::printf("group %d: removed %s\n", id, shm::SummariseFiles(*removed).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nvmux-manage: manage an nvmux group", "nvmux-manage"};
  app.require_subcommand(1);
  app.footer("Examples:\n  nvmux-manage status -i 0 --json\n  nvmux-manage cleanup -i 0");
  int id = 0;
  bool json = false;
  auto* status = app.add_subcommand("status", "the group's processes, DMA memory and reaped processes");
  status->add_option("-i,--group", id, "group id")->required()->check(CLI::Range(0, shm::kMaxGroupId));
  status->add_flag("--json", json, "machine-readable output");
  auto* cleanup = app.add_subcommand("cleanup", "remove a dead group's leftovers (refused while any of its processes lives)");
  cleanup->add_option("-i,--group", id, "group id")->required()->check(CLI::Range(0, shm::kMaxGroupId));
  CLI11_PARSE(app, argc, argv);
  if (status->parsed()) return ShowStatus(id, json);
  return Cleanup(id);
}
