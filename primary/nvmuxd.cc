// nvmuxd: the primary service of an nvmux group. Creates the shared-memory
// group, attaches the controllers given with -r and publishes them to
// secondaries, runs the housekeeping (the group's AERs and admin
// completions, keep-alive, the reaper of dead processes, which deletes their
// I/O queues) and stays up until SIGTERM/SIGINT; then, when it is the last
// process, shuts the controllers down (CC.SHN) and removes the group's
// files, or else hands the group over to the processes still attached.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>

#include "libclient/core/controller_state.h"
#include "libclient/shared/shared_controller.h"
#include "primary/reap_queues.h"
#include "nvmux/controller.h"
#include "nvmux/env.h"
#include "nvmux/probe.h"
#include "primary/hotplug.h"
#include "primary/reaper.h"
#include "shm/base/log.h"
#include "shm/base/unique_fd.h"
#include "shm/dpdk_lock_doctor.h"
#include "shm/group.h"
#include "shm/group_access.h"

using namespace nvmux;

namespace {
constexpr size_t kHeapSlackMb = 32;

// The transport ids of a controllers file: one per line, blank lines and
// '#' comments skipped. Errors: ENOENT etc. naming the path.
Result<std::vector<std::string>> ReadControllersFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Fail(errno != 0 ? errno : ENOENT, "cannot read " + path + ": " + std::strerror(errno));
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    size_t b = line.find_first_not_of(" \t\r"), e = line.find_last_not_of(" \t\r");
    if (b != std::string::npos) out.push_back(line.substr(b, e - b + 1));
  }
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nvmuxd: the primary service of an nvmux shared-memory group", "nvmuxd"};
  app.footer(
      "Examples:\n"
      "  nvmuxd -i 0 -r 'trtype:vfiouser traddr:/tmp/nvmux-emu'   serve one controller to group 0\n"
      "  nvmuxd -i 3 -m 0x1 --log-level info -r ... -r ...\n"
      "  nvmuxd -i 0 -c /etc/nvmux/nvmuxd-0.conf                one transport id per line\n"
      "Secondaries join with the same group id: nvmux-perf -i 0 ...");
  int group_id = 0;
  std::string cores, level_text;
  std::vector<std::string> trids;
  size_t hugemem = 0;
  int admin_poll_ms = 10;
  app.add_option("-i,--group", group_id, "shared-memory group id (0-" + std::to_string(shm::kMaxGroupId) + ")")
      ->required()
      ->check(CLI::Range(0, shm::kMaxGroupId));
  app.add_option("-r,--trid", trids,
                 "transport id of a controller to attach (repeatable); 'trtype:pcie' alone: every NVMe controller "
                 "bound to vfio-pci or uio_pci_generic (PCI_ALLOWED limits it), now and as they are bound");
  std::string controllers_file;
  app.add_option("-c,--controllers-file", controllers_file,
                 "more controllers to attach, one transport id per line ('#' starts a comment); what the systemd "
                 "unit nvmuxd@N reads from /etc/nvmux/nvmuxd-N.conf")
      ->type_name("FILE");
  app.add_option("-m,--cores", cores, "core mask (0x3) or list ([0-1]) for nvmuxd's thread");
  app.add_option("--hugemem", hugemem,
                 "MiB of hugepage memory to preallocate (default: the DMA pool, --dma-pool-mb, plus " +
                     std::to_string(kHeapSlackMb) +
                     " MiB for DPDK's own allocations, so processes can still join when the primary is gone)");
  app.add_option("--admin-poll-ms", admin_poll_ms,
                 "admin queue polling period when idle, for a controller without an admin interrupt (1-1000 ms)")
      ->check(CLI::Range(1, 1000));
  int idle_wake_ms = 250;
  app.add_option("--idle-wake-ms", idle_wake_ms,
                 "when every controller has an admin interrupt: nvmuxd sleeps until an admin completion or "
                 "event, a death, a stop signal, or this timer (keep-alive, hotplug probes, the DPDK lock "
                 "doctor, the lock sweep); 10-5000 ms, capped at a quarter of --keep-alive-ms")
      ->capture_default_str()
      ->check(CLI::Range(10, 5000));
  app.add_option("--log-level", level_text, "error, warning (default), notice, info or debug");
  ControllerOptions ctrlr_options;
  app.add_option("--keep-alive-ms", ctrlr_options.keep_alive_timeout_ms,
                 "Keep Alive Timeout (KATO) set on controllers that support keep-alive, 0 = none. Whichever "
                 "group process polls the admin queue sends Keep Alive at half of it")
      ->capture_default_str()
      ->check(CLI::Range(0u, 3'600'000u));
  std::string run_dir, access_group, huge_dir;
  app.add_option("--huge-dir", huge_dir,
                 "hugetlbfs mount for the group's hugepage files (default $NVMUX_HUGE_DIR, else DPDK's choice when "
                 "writable, else the first writable hugetlbfs mount)")
      ->type_name("DIR");
  uint32_t max_processes = shm::kMaxProcesses, max_controllers = kMaxSharedControllers;
  size_t dma_pool_mb = shm::kDefaultDmaPoolMb;
  app.add_option("--run-dir", run_dir,
                 "where groups live: <DIR>/dpdk/nvmux<N> (default $NVMUX_RUN_DIR, else " +
                     std::string(shm::kDefaultRunDir) + "; the same for every user)")
      ->type_name("DIR");
  app.add_option("--access-group", access_group,
                 "Unix group whose members may join the group (its files, sockets and hugepage files become "
                 "usable by that group); default: only this user and root")
      ->type_name("NAME");
  bool status_readable = false;
  app.add_flag("--status-readable", status_readable,
               "any user may read whether the group lives (nvmux-manage status shows its primary); joining still "
               "needs this user, root or --access-group");
  app.add_option("--max-processes", max_processes, "process slots of the group (joining beyond is ENOSPC)")
      ->capture_default_str()
      ->check(CLI::Range(1u, shm::kMaxProcesses));
  app.add_option("--max-controllers", max_controllers, "controllers the group holds (attaching beyond is ENOSPC)")
      ->capture_default_str()
      ->check(CLI::Range(1u, kMaxSharedControllers));
  app.add_option("--dma-pool-mb", dma_pool_mb, "MiB of the group's DMA pool, shared by every process (ENOMEM when used up)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{2}, size_t{65536}));
  app.add_option("--io-queues", ctrlr_options.num_io_queues,
                 "I/O queues asked of each controller (Set Features Number of Queues): the queue ids its processes "
                 "share (a queue pair beyond is ENOSPC)")
      ->capture_default_str()
      ->check(CLI::Range(1, static_cast<int>(kMaxSharedQids) - 1));
  app.add_flag("--use-cmb-sqs", ctrlr_options.use_cmb_sqs,
               "pcie: enable each controller's Controller Memory Buffer for I/O submission queues, when it has one "
               "that can hold them, and offer it to the group (a secondary's --use-cmb-sqs then puts its SQs there)");
  bool no_shadow_doorbells = false;
  app.add_flag("--no-shadow-doorbells", no_shadow_doorbells,
               "write every doorbell, never configuring shadow doorbells (polling can be faster on a vfio-user device "
               "with a mapped doorbell page; a device that sleeps when idle then sees doorbells late)");
  CLI11_PARSE(app, argc, argv);
  ctrlr_options.shadow_doorbells = !no_shadow_doorbells;
  shm::SetStatusReadable(status_readable);
  if (!huge_dir.empty()) setenv("NVMUX_HUGE_DIR", huge_dir.c_str(), 1);  // read by the EAL bootstrap (shm/eal.h)
  if (!run_dir.empty()) {
    if (Status st = shm::SetRunDir(run_dir); !st) {
      std::cerr << "nvmuxd: --run-dir: " << st.error().message << "\n";
      return 2;
    }
  }

  if (!level_text.empty()) {
    auto level = ParseLogLevel(level_text);
    if (!level) {
      std::cerr << "nvmuxd: bad --log-level '" << level_text << "': allowed error, warning, notice, info, debug\n";
      return 2;
    }
    SetLogLevel(*level);
  }
  if (!controllers_file.empty()) {
    auto lines = ReadControllersFile(controllers_file);
    if (!lines) {
      std::cerr << "nvmuxd: --controllers-file: " << lines.error().message << "\n";
      return 2;
    }
    trids.insert(trids.end(), lines->begin(), lines->end());
  }
  std::vector<TransportId> parsed;
  for (const std::string& t : trids) {
    auto trid = TransportId::Parse(t);
    if (!trid) {
      std::cerr << "nvmuxd: -r '" << t << "': " << trid.error().message << "\n";
      return 2;
    }
    parsed.push_back(*trid);
  }
  EnvOptions options;
  options.group_id = group_id;
  options.primary = true;
  options.name = "nvmuxd";
  // Preallocated memory is never returned to the system, so DPDK's heap keeps
  // room for what each joining process allocates (a DPDK secondary cannot
  // grow the heap without DPDK's primary: after a takeover, it cannot).
  options.mem_mb = hugemem != 0 ? hugemem : dma_pool_mb + kHeapSlackMb;
  options.access_group = access_group;
  options.max_processes = max_processes;
  options.max_controllers = max_controllers;
  options.dma_pool_mb = dma_pool_mb;
  options.core_mask = cores;

  // Block the stop signals before EAL starts its threads, then poll for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto env = Env::Init(options);
  if (!env) {
    std::cerr << "nvmuxd: " << env.error().ToString() << "\n";
    return 1;
  }
  bool took_over = (*env)->group().took_over();
  if (took_over)
    std::printf("nvmuxd: took group %d over from its dead primary (pid %d); its controllers are adopted\n",
                group_id, static_cast<int>((*env)->group().dead_primary()));
  std::vector<std::unique_ptr<Controller>> controllers;
  for (const TransportId& trid : parsed) {
    if (trid.trtype == TransportType::kPcie && trid.traddr.empty()) {
      // 'trtype:pcie' alone: every NVMe controller bound to vfio-pci or
      // uio_pci_generic (PCI_ALLOWED limits it); none yet is fine, hotplug
      // attaches each one bound later.
      Prober prober(**env);
      auto found = prober.Probe(
          trid,
          [&](const TransportId&, ControllerOptions& o) {
            o = ctrlr_options;
            return true;
          },
          nullptr);
      if (!found) {
        std::printf("nvmuxd: %s: none attached yet (%s); attaching them as they are bound\n", trid.ToString().c_str(),
                    found.error().message.c_str());
        continue;
      }
      for (auto& c : *found) {
        std::printf("nvmuxd: %s %s (%zu namespace(s))\n", c->state().adopted ? "adopted" : "attached",
                    c->trid().ToString().c_str(), c->active_namespaces().size());
        controllers.push_back(std::move(c));
      }
      continue;
    }
    auto ctrlr = Controller::Connect(**env, trid, ctrlr_options);
    if (!ctrlr && took_over) {
      // The group it took over has members using the adopted controllers:
      // exiting now would shut those down under them. Serve the group
      // without this one; hotplug attaches it when it appears.
      std::cerr << "nvmuxd: -r '" << trid.ToString() << "': " << ctrlr.error().message
                << " (serving the group it took over without it; attached when it appears)\n";
      continue;
    }
    if (!ctrlr) {
      std::cerr << "nvmuxd: -r '" << trid.ToString() << "': " << ctrlr.error().message << "\n";
      controllers.clear();
      return 1;
    }
    std::printf("nvmuxd: %s %s (%zu namespace(s))\n", (*ctrlr)->state().adopted ? "adopted" : "attached",
                trid.ToString().c_str(), (*ctrlr)->active_namespaces().size());
    controllers.push_back(std::move(*ctrlr));
  }
  std::printf("nvmuxd: group %d ready (pid %d, %s)\n", group_id, static_cast<int>(getpid()),
              shm::GroupPaths::For(group_id)->runtime_dir.c_str());
  std::fflush(stdout);

  // One thread does everything: the reaper waits for deaths (woken at once
  // by pidfd events), for each controller's admin interrupt (an eventfd:
  // admin completions and asynchronous events) and for a stop signal (a
  // signalfd), up to a timer; then the admin queues are polled and the
  // timed housekeeping runs. With admin interrupts an idle nvmuxd wakes
  // only for events and the timer; without, it polls every --admin-poll-ms.
  primary::Reaper reaper((*env)->group());
  // Hotplug (issue 5): detaches controllers whose device went away and
  // attaches the -r ones that (re)appear; probes once a second.
  primary::Hotplug hotplug(**env, parsed, controllers);
  hotplug.SetControllerOptions(ctrlr_options);
  // DPDK's own shared locks are not robust: release any a killed process
  // left held (see shm/dpdk_lock_doctor.h).
  auto doctor = shm::DpdkLockDoctor::Create();
  if (!doctor) NVMUX_LOG(kWarning, "nvmuxd: DPDK lock doctor unavailable: %s", doctor.error().message.c_str());
  else NVMUX_LOG(kInfo, "nvmuxd: watching %zu of DPDK's shared locks", doctor->watched());
  timespec zero{0, 0};
  UniqueFd stop_fd(::signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!stop_fd.valid()) NVMUX_LOG(kWarning, "nvmuxd: signalfd: %s (stop signals seen at the next timer)", std::strerror(errno));
  int64_t idle_ns = int64_t{idle_wake_ms} * 1'000'000;
  if (ctrlr_options.keep_alive_timeout_ms != 0)
    idle_ns = std::min<int64_t>(idle_ns, int64_t{ctrlr_options.keep_alive_timeout_ms} * 1'000'000 / 4);
  reaper.SetIdleSweep(std::chrono::nanoseconds(idle_ns));
  bool interrupts_logged = false;
  // Queues of dead processes whose deletion the device did not confirm stay
  // quarantined (primary/reap_queues.h); they are retried, with the
  // period doubling up to a minute (each try may wait two admin timeouts)
  // and starting again at 1 s after each reap.
  constexpr int64_t kRetryFirstNs = 1'000'000'000, kRetryMaxNs = 60'000'000'000;
  int64_t retry_period_ns = kRetryFirstNs;
  int64_t next_retry_ns = MonotonicNanos() + retry_period_ns;
  uint64_t reaped_seen = 0;
  int64_t next_share_ns = 0;
  Status run = reaper.Run(
      [&] {
        // The wait ends on a timer or an event: set up the next one. Every
        // admin interrupt is drained before its queue is polled (race-free).
        std::vector<int> wake;
        if (stop_fd.valid()) wake.push_back(stop_fd.get());
        bool all_interrupts = true;
        for (auto& c : controllers) {
          if (c->failed()) continue;
          const int fd = c->admin_event_fd();
          if (fd >= 0) wake.push_back(fd);
          else all_interrupts = false;
          c->ArmAdminEvent();
        }
        reaper.SetWakeFds(wake);
        reaper.SetPeriod(all_interrupts ? std::chrono::nanoseconds(idle_ns) : std::chrono::nanoseconds(
                                                                                   int64_t{admin_poll_ms} * 1'000'000));
        if (!interrupts_logged) {
          interrupts_logged = true;
          NVMUX_LOG(kInfo, "nvmuxd: %s", all_interrupts ? "admin interrupts: sleeping between events"
                                                        : "a controller has no admin interrupt: polling");
        }
        for (auto& c : controllers) {
          if (c->failed()) continue;
          auto n = c->ProcessAdminCompletions();
          if (!n) NVMUX_LOG(kError, "nvmuxd: %s: %s", c->trid().ToString().c_str(), n.error().message.c_str());
        }
        if (int64_t now = MonotonicNanos(); reaper.reaped() != reaped_seen || now >= next_retry_ns) {
          if (reaper.reaped() != reaped_seen) {
            reaped_seen = reaper.reaped();
            retry_period_ns = kRetryFirstNs;
          } else {
            for (auto& c : controllers)
              if (!c->failed()) (void)RetryQuarantinedQueues(*c);
            retry_period_ns = std::min(retry_period_ns * 2, kRetryMaxNs);
          }
          next_retry_ns = MonotonicNanos() + retry_period_ns;
        }
        if (doctor) doctor->Check(MonotonicNanos());
        // Files DPDK created since (a joining process's mp socket, hugepage
        // files when the heap grew) go to the access group too; once a second.
        if (int64_t now = MonotonicNanos(); now >= next_share_ns) {
          if (Status st = (*env)->group().ShareFiles(); !st) NVMUX_LOG(kWarning, "nvmuxd: %s", st.error().message.c_str());
          next_share_ns = now + 1'000'000'000;
        }
        hotplug.Poll(MonotonicNanos());
        return sigtimedwait(&stop_signals, nullptr, &zero) > 0;
      },
      std::chrono::milliseconds(admin_poll_ms));
  if (!run) {
    std::cerr << "nvmuxd: " << run.error().ToString() << "\n";
    return 1;
  }
  std::printf("nvmuxd: group %d stopping (reaped %llu dead process(es))\n", group_id,
              static_cast<unsigned long long>(reaper.reaped()));
  hotplug.Stop();  // an attach still in progress is abandoned while the Env lives
  // Processes still attached keep their controllers: a stop (a restart, an
  // upgrade) must not fail their I/O, any more than a kill -9 does. Such a
  // group is handed over exactly as a dead primary leaves it (the path the
  // crash tests cover): controllers published and running, this process's
  // slot for the next nvmuxd to reap. Only controllers whose connection ends
  // with this process (tcp: the admin queue's association) are detached.
  if (auto member = (*env)->group().lock_file().OtherLiveMember()) {
    std::erase_if(controllers, [](const auto& c) { return c->trid().trtype == TransportType::kTcp; });
    std::printf("nvmuxd: group %d handed over: process %d (maybe others) still attached keeps its controllers; "
                "the next `nvmuxd -i %d` takes the group over\n",
                group_id, static_cast<int>(*member), group_id);
    std::fflush(stdout);
    std::fflush(stderr);
    ::_exit(0);
  }
  controllers.clear();  // the last process: shutdown notification to each controller
  env->reset();
  return 0;
}
