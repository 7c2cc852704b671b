// nvmux-perf: SPDK's spdk_nvme_perf over nvmux — the same options, the same
// attach lines, the same final table.
//
//   nvmux-perf -r 'trtype:vfiouser traddr:/tmp/emu' -q 32 -o 4k -w randread -t 10
//   nvmux-perf -r ... -w randrw -M 70 --verify -c 0x3 -P 2 -t 5 --json
//
// The main thread parses the options, starts the Env (standalone, or a
// secondary of group -i), attaches every -r controller, resolves each
// namespace's I/O size and LBA range, pairs namespaces with the cores of -c as
// SPDK does (max(namespaces, cores) pairs, both taken round-robin), builds one
// PerfWorker per core (queue pairs and buffers are allocated before any I/O),
// then runs the clock: warm-up (-a), measurement (-t), stop; meanwhile it
// polls each controller's admin queue every 100 ms and prints the live line
// once a second. Workers drain their I/O; then queue pairs, controllers and
// the Env are freed, in that order.
//
// Output: the attach lines, the table (with -L/-LL the latency summary and
// histogram) and --transport-stats on stdout; with --json only the JSON is on
// stdout and everything else goes to stderr (the table too, so one run gives
// both). Errors: one line on stderr, "nvmux-perf: ...", naming the value.
// Exit status: 0 success (also after Ctrl-C, with the results so far), 1 a
// runtime failure (attach, namespace checks, I/O error, verify mismatch),
// 2 a bad command line.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cinttypes>
#include <cstdio>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "nvmux/controller.h"
#include "nvmux/probe.h"
#include "nvmux/env.h"
#include "shm/base/clock.h"
#include "tools/perf/io_pattern.h"
#include "tools/perf/perf_options.h"
#include "tools/perf/perf_report.h"
#include "tools/perf/perf_worker.h"

namespace nvmux::perf {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int64_t kNsPerSecond = 1'000'000'000;
constexpr int64_t kAdminPollNs = 100'000'000;
constexpr int64_t kLiveIntervalNs = kNsPerSecond;
constexpr int64_t kMaxSleepNs = 10'000'000;  // how soon the end of a -d run is noticed
constexpr uint32_t kMaxBlocksPerCommand = 65536;

std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free);  // set from a signal handler

void OnSignal(int) { g_interrupted.store(true, std::memory_order_relaxed); }

// SIGINT/SIGTERM end the run early with results; a second one kills.
void InstallSignalHandlers() {
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

void PrintError(const std::string& message) { std::fprintf(stderr, "nvmux-perf: %s\n", message.c_str()); }

// SPDK's controller name: "VFIOUSER (/tmp/emu)".
std::string ControllerName(const TransportId& trid) {
  std::string type = ToString(trid.trtype);
  for (char& c : type) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return type + " (" + trid.traddr + ")";
}

struct AttachedController {
  TransportId trid;
  std::string name;
  std::unique_ptr<Controller> ctrlr;
};

struct NsEntry {
  AttachedController* controller = nullptr;
  const Namespace* ns = nullptr;
  std::string name;
  LbaRange range;
  uint32_t io_blocks = 1;
};

std::string JoinNsids(std::span<const uint32_t> nsids) {
  std::string s;
  for (uint32_t n : nsids) s += (s.empty() ? "" : ", ") + std::to_string(n);
  return s.empty() ? "none" : s;
}

// The namespaces to use on one controller, each checked against -o and
// --lba-range. Errors name the namespace and the value.
Status AddNamespaces(const PerfOptions& o, AttachedController& ac, std::vector<NsEntry>& out) {
  Controller& ctrlr = *ac.ctrlr;
  std::vector<uint32_t> nsids;
  if (ac.trid.nsid) {
    if (ctrlr.GetNamespace(*ac.trid.nsid) == nullptr) {
      return Fail(ENODEV, "-r '" + ac.trid.ToString() + "': namespace " + std::to_string(*ac.trid.nsid) +
                              " is not active on " + ac.name + " (active: " + JoinNsids(ctrlr.active_namespaces()) +
                              ")");
    }
    nsids.push_back(*ac.trid.nsid);
  } else {
    nsids.assign(ctrlr.active_namespaces().begin(), ctrlr.active_namespaces().end());
  }
  for (uint32_t nsid : nsids) {
    NsEntry e;
    e.controller = &ac;
    e.ns = ctrlr.GetNamespace(nsid);
    e.name = ac.name + " NSID " + std::to_string(nsid);
    auto blocks = IoSizeInBlocks(o, e.ns->extended_sector_size());
    if (!blocks) return Fail(EINVAL, e.name + ": " + blocks.error().message);
    if (*blocks > kMaxBlocksPerCommand) {
      return Fail(EINVAL, e.name + ": -o " + std::to_string(o.io_size_bytes) + ": I/O size is " +
                              std::to_string(*blocks) + " blocks, more than one command can carry (" +
                              std::to_string(kMaxBlocksPerCommand) + ")");
    }
    e.io_blocks = *blocks;
    auto range = ResolveLbaRange(o.lba_range, e.ns->num_sectors(), e.io_blocks);
    if (!range) return Fail(EINVAL, e.name + ": " + range.error().message);
    e.range = *range;
    out.push_back(std::move(e));
  }
  return Ok();
}

// --transport-stats, in the shape of SPDK's per-namespace dump.
std::string FormatTransportStats(const std::vector<std::unique_ptr<PerfWorker>>& workers) {
  std::string out;
  char line[160];
  for (const auto& w : workers) {
    std::string last_ns;
    for (const QpairReport& r : w->QpairReports()) {
      if (r.ns_name != last_ns) {
        std::snprintf(line, sizeof(line), "====================\nlcore %u, ns %s statistics:\n", r.core,
                      r.ns_name.c_str());
        out += line;
        last_ns = r.ns_name;
      }
      const QpairStatistics& s = r.stats;
      // The target's name starts with its transport ("TCP (...) NSID 1").
      const std::string transport = r.ns_name.substr(0, r.ns_name.find(' '));
      std::snprintf(line, sizeof(line), "%s transport, I/O queue pair %u:\n", transport.c_str(), r.qpair_id);
      out += line;
      auto field = [&](const char* name, uint64_t value) {
        std::snprintf(line, sizeof(line), "\t%-24s %" PRIu64 "\n", name, value);
        out += line;
      };
      field("polls:", s.polls);
      field("idle_polls:", s.idle_polls);
      field("completions:", s.completed);
      field("submitted_requests:", s.submitted);
      field("sq_doorbell_writes:", s.sq_doorbell_writes);
      field("cq_doorbell_writes:", s.cq_doorbell_writes);
      field("shadow_doorbell_updates:", s.shadow_doorbell_updates);
      field("queued_requests:", s.queued);
      field("split_requests:", s.split);
      if (transport == "TCP") {
        field("pdus_sent:", s.tcp_pdus_sent);
        field("pdus_received:", s.tcp_pdus_received);
        field("in_capsule_writes:", s.tcp_in_capsule_writes);
        field("r2ts:", s.tcp_r2ts);
        field("h2c_data_pdus:", s.tcp_h2c_data);
        field("c2h_data_pdus:", s.tcp_c2h_data);
        field("send_calls:", s.tcp_send_calls);
        field("header_digest:", s.tcp_header_digest ? 1 : 0);
        field("data_digest:", s.tcp_data_digest ? 1 : 0);
      }
    }
  }
  return out;
}

// Everything between the Env and its teardown. Declaration order is the
// teardown order in reverse: workers (queue pairs, then buffers) go before
// the controllers.
int RunWithEnv(Env& env, const PerfOptions& o, const std::vector<TransportId>& trids) {
  FILE* info = o.json ? stderr : stdout;
  std::vector<AttachedController> controllers;
  controllers.reserve(trids.size());
  std::vector<std::unique_ptr<PerfWorker>> workers;

  std::fprintf(info, "Initializing NVMe Controllers\n");
  ControllerOptions copts;
  copts.num_io_queues = static_cast<uint16_t>(
      std::clamp<uint64_t>(uint64_t{o.qpairs_per_ns} * o.cores.Count(), copts.num_io_queues, 65535));
  copts.tcp_header_digest = o.header_digest;
  copts.tcp_data_digest = o.data_digest;
  copts.use_cmb_sqs = o.use_cmb_sqs;
  copts.shadow_doorbells = o.shadow_doorbells;
  for (const TransportId& trid : trids) {
    std::fprintf(info, "Attaching to %s\n", trid.ToString().c_str());
    std::fflush(info);
    auto ctrlr = Controller::Connect(env, trid, copts);
    if (!ctrlr) {
      PrintError("cannot attach " + trid.ToString() + ": " + ctrlr.error().message);
      return kExitFailure;
    }
    std::fprintf(info, "Attached to %s\n", trid.ToString().c_str());
    controllers.push_back({trid, ControllerName(trid), std::move(*ctrlr)});
  }

  std::vector<NsEntry> namespaces;
  for (AttachedController& ac : controllers) {
    if (auto st = AddNamespaces(o, ac, namespaces); !st) {
      PrintError(st.error().message);
      return kExitFailure;
    }
  }
  if (namespaces.empty()) {
    PrintError("no active namespace on the controllers given with -r");
    return kExitFailure;
  }

  // SPDK's pairing: max(namespaces, cores) pairs, each list taken in turn.
  std::vector<uint32_t> cores;
  for (size_t c = 0; c < shm::CoreSet::kMaxCores; ++c)
    if (o.cores.Has(c)) cores.push_back(static_cast<uint32_t>(c));
  std::vector<std::vector<PerfTarget>> targets(cores.size());
  std::vector<uint32_t> sharers(namespaces.size(), 0);
  size_t pairs = std::max(namespaces.size(), cores.size());
  for (size_t i = 0; i < pairs; ++i) {
    const NsEntry& e = namespaces[i % namespaces.size()];
    PerfTarget t;
    t.controller = e.controller->ctrlr.get();
    t.ns = e.ns;
    t.name = e.name;
    t.range = e.range;
    t.io_blocks = e.io_blocks;
    t.sharer_index = sharers[i % namespaces.size()]++;
    targets[i % cores.size()].push_back(std::move(t));
    std::fprintf(info, "Associating %s with lcore %u\n", e.name.c_str(), cores[i % cores.size()]);
  }
  for (auto& list : targets) {
    for (PerfTarget& t : list) {
      for (size_t n = 0; n < namespaces.size(); ++n)
        if (namespaces[n].ns == t.ns) t.sharers = sharers[n];
    }
  }
  for (AttachedController& ac : controllers) {
    uint64_t needed = 0;
    for (const auto& list : targets)
      for (const PerfTarget& t : list)
        if (t.controller == ac.ctrlr.get()) needed += o.qpairs_per_ns;
    if (needed > ac.ctrlr->io_queues_granted()) {
      PrintError(ac.name + ": needs " + std::to_string(needed) + " I/O queue pairs (-P " +
                 std::to_string(o.qpairs_per_ns) + " per namespace and core) but the controller granted " +
                 std::to_string(ac.ctrlr->io_queues_granted()) + ": use fewer cores (-c) or queue pairs (-P)");
      return kExitFailure;
    }
  }

  RunControl control;
  for (size_t w = 0; w < cores.size(); ++w) {
    auto worker = PerfWorker::Create(env, o, cores[w], std::move(targets[w]), control);
    if (!worker) {
      PrintError(worker.error().message);
      return kExitFailure;
    }
    workers.push_back(std::move(*worker));
  }
  std::fprintf(info, "Initialization complete. Launching workers.\n");
  std::fflush(info);

  std::latch ready(static_cast<std::ptrdiff_t>(workers.size()));
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&ready, worker = w.get()] { worker->Run(ready); });
  ready.wait();

  const bool live = ShouldPrintLive(o, ::isatty(STDOUT_FILENO) == 1);
  FILE* live_out = o.json ? stderr : stdout;
  bool live_printed = false;
  const int64_t start = MonotonicNanos();
  const int64_t warmup_end = start + int64_t{o.warmup_seconds} * kNsPerSecond;
  const int64_t end = warmup_end + int64_t{o.time_seconds} * kNsPerSecond;
  control.Advance(o.warmup_seconds > 0 ? RunPhase::kWarmup : RunPhase::kMeasure);
  int64_t next_admin = start + kAdminPollNs;
  int64_t next_live = start + kLiveIntervalNs;
  int64_t live_last_ns = start;
  uint64_t live_last_ios = 0;
  while (true) {
    int64_t now = MonotonicNanos();
    if (g_interrupted.load(std::memory_order_relaxed)) control.Advance(RunPhase::kStop);
    if (now >= warmup_end) control.Advance(RunPhase::kMeasure);
    if (now >= end) control.Advance(RunPhase::kStop);
    if (std::all_of(workers.begin(), workers.end(), [](const auto& w) { return w->finished(); })) break;
    if (now >= next_admin) {
      for (AttachedController& ac : controllers) {
        auto polled = ac.ctrlr->ProcessAdminCompletions();
        if (!polled && control.Fail()) PrintError(ac.name + ": " + polled.error().message);
      }
      next_admin = now + kAdminPollNs;
    }
    if (live && now >= next_live) {
      uint64_t total = 0;
      for (const auto& w : workers) total += w->completed();
      uint64_t ios = total - live_last_ios;
      // An interval counts as warm-up when most of it was.
      bool warmup = live_last_ns + (now - live_last_ns) / 2 < warmup_end;
      std::string text = FormatLiveLine(ios, ios * o.io_size_bytes,
                                        static_cast<double>(now - live_last_ns) / kNsPerSecond, warmup);
      std::fprintf(live_out, "\r%s", text.c_str());
      std::fflush(live_out);
      live_printed = true;
      live_last_ios = total;
      live_last_ns = now;
      next_live += kLiveIntervalNs;
    }
    int64_t wake = std::min(next_admin, live ? next_live : INT64_MAX);
    if (control.phase() < RunPhase::kMeasure) wake = std::min(wake, warmup_end);
    if (control.phase() < RunPhase::kStop) wake = std::min(wake, end);
    int64_t sleep_ns = std::clamp<int64_t>(wake - MonotonicNanos(), 0, kMaxSleepNs);
    if (sleep_ns > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(sleep_ns));
  }
  control.Advance(RunPhase::kStop);
  for (std::thread& t : threads) t.join();
  if (live_printed) std::fprintf(live_out, "\n");

  std::vector<PerfResult> results;
  for (auto& w : workers) {
    std::vector<PerfResult> r = w->TakeResults(o.latency_tracking > 0);
    std::move(r.begin(), r.end(), std::back_inserter(results));
  }
  if (o.json) {
    std::fputs(FormatJson(results, o.latency_tracking).c_str(), stdout);
    std::fputs(FormatTable(results).c_str(), stderr);
  } else {
    std::fputs(FormatReport(results, o.latency_tracking).c_str(), stdout);
  }
  if (o.transport_stats) std::fputs(FormatTransportStats(workers).c_str(), info);
  if (o.cpu_stats) {
    // The workers' threads only (the main thread sleeps): what waiting for
    // completions costs per I/O in each --mode.
    double cpu = 0, elapsed = 0;
    uint64_t ios = 0;
    for (const auto& w : workers) cpu += w->cpu_seconds();
    for (const PerfResult& r : results) {
      ios += r.ios;
      elapsed = std::max(elapsed, r.elapsed_seconds);
    }
    std::fprintf(info, "CPU (--mode %s): workers used %.3f s in %.3f s measured (%.1f%% of one core), %.2f us per I/O\n",
                 WaitModeName(o.mode), cpu, elapsed, elapsed > 0 ? cpu / elapsed * 100.0 : 0.0,
                 ios > 0 ? cpu / static_cast<double>(ios) * 1e6 : 0.0);
  }
  uint64_t errors = 0;
  for (const auto& w : workers) errors += w->io_errors();
  if (o.continue_on_error && errors > 0)
    PrintError(std::to_string(errors) + " I/O errors, continued past them (-Q)");
  std::fflush(stdout);

  workers.clear();      // queue pairs (drained), then their buffers
  controllers.clear();  // shutdown and disconnect
  return control.failed() ? kExitFailure : kExitOk;
}

int Run(const PerfOptions& o) {
  // Transport ids first: a typo is a usage error, found before anything starts.
  std::vector<TransportId> trids;
  for (const std::string& text : o.transport_ids) {
    auto trid = TransportId::Parse(text);
    if (!trid) {
      PrintError("-r '" + text + "': " + trid.error().message);
      return kExitUsage;
    }
    trids.push_back(*trid);
  }
  EnvOptions eo;
  eo.name = "nvmux-perf";
  eo.group_id = o.group_id;
  eo.core_mask = o.cores.ToMaskString();
  eo.mem_mb = o.mem_size_mb;
  auto env = Env::Init(eo);
  if (!env) {
    PrintError(env.error().message);
    return kExitFailure;
  }
  if (trids.empty()) {
    // -i alone: every controller the group's primary published.
    auto published = GroupControllers(**env);
    if (!published) {
      PrintError("-i " + std::to_string(o.group_id.value_or(0)) + ": " + published.error().message);
      return kExitFailure;
    }
    trids = std::move(*published);
  }
  InstallSignalHandlers();
  int rc = RunWithEnv(**env, o, trids);
  env->reset();  // last: after every queue pair, buffer and controller
  return rc;
}

}  // namespace
}  // namespace nvmux::perf

int main(int argc, char** argv) {
  auto command_line = nvmux::perf::ParsePerfCommandLine(argc, argv);
  if (!command_line) {
    nvmux::perf::PrintError(command_line.error().message);
    return nvmux::perf::kExitUsage;
  }
  if (command_line->help_requested) {
    std::fputs(command_line->help_text.c_str(), stdout);
    return nvmux::perf::kExitOk;
  }
  return nvmux::perf::Run(command_line->options);
}
