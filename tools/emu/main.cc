// nvmux-emu: the emulated NVMe controller, served over vfio-user.
//
//   nvmux-emu --socket DIR [--ns size=1G,lbads=512,ms=0 ...] [--backing ram|null|file:PATH]
//             [--mdts N] [--mqes N] [--io-queues N] [--keep-alive on|off] [--fault KIND:KEY=V,... ...]
//
// Runs until SIGTERM or SIGINT, then stops cleanly and removes DIR/cntrl,
// DIR/bar0 and DIR/control. SIGUSR1 injects a surprise removal (the process
// keeps running until SIGTERM/SIGINT).
// Exit status: 0 after a signal, 1 on bad options or a failed start.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "shm/base/log.h"
#include "tools/emu/emulator.h"

int main(int argc, char** argv) {
  using namespace nvmux::emu;
  CLI::App app{"nvmux-emu: emulated NVMe controller over vfio-user"};
  EmulatorOptions options;
  std::vector<std::string> ns_specs;
  std::vector<std::string> fault_specs;
  std::string backing = "ram";
  unsigned mdts = options.mdts;
  unsigned mqes = options.mqes;
  unsigned io_queues = options.io_queues;
  app.add_option("--socket", options.socket_dir, "directory for the vfio-user socket (DIR/cntrl)")->required();
  app.add_option("--ns", ns_specs,
                 "namespace: size=BYTES[K|M|G|T],lbads=512|4096,ms=0|8|16|64,ext=0|1 (repeatable; "
                 "default one 1G namespace of 512-byte blocks)");
  app.add_option("--backing", backing,
                 "block storage: ram, ram-lazy, null, or file:PATH.\n"
                 "  ram: memory allocated and populated at start, so the first I/O runs at full speed: "
                 "2 MiB hugepages when the pool has them to spare (512 are always left for DPDK), else 4 KiB "
                 "pages (a warning says so). Costs the namespace size in memory from the start, and start-up "
                 "time: measured on a 2-vCPU VM, 0.4-0.6 s per GiB with hugepages (1-2 s when the machine is "
                 "busy), about 1.8 s per GiB with 4 KiB pages (NVMUX_LOG_LEVEL=notice logs the figures of "
                 "each run)\n"
                 "  ram-lazy: memory committed only where touched; starts at once, but the first touch of each "
                 "4 KiB page costs a page fault (the first pass over a namespace runs several times slower)\n"
                 "  file:PATH: namespace 1 in PATH, namespace N in PATH.N; created or extended to the namespace "
                 "size, kept on exit")
      ->capture_default_str();
  app.add_option("--fault", fault_specs,
                 "inject a fault (repeatable). Kinds:\n"
                 "  fail:opc=N,count=N,sct=N,sc=N[,dnr=0|1][,queue=io|admin|any]  complete the next count "
                 "commands of opcode opc with that status, without executing them\n"
                 "  delay:us=N[,opc=N][,count=N][,queue=..]  hold completions N microseconds "
                 "(every matching command unless count is given)\n"
                 "  drop:opc=N[,count=N][,queue=..]  fetch but never complete (timeout tests)\n"
                 "  cfs[:after_ms=N]  set CSTS.CFS after N ms\n"
                 "Defaults: queue=io, count=1 (fail, drop), sct=0 sc=0x06. Numbers are decimal or 0x hex.\n"
                 "Examples: --fault fail:opc=0x02,count=3,sct=2,sc=0x81  --fault delay:us=500  "
                 "--fault drop:opc=0x01,count=1  --fault cfs:after_ms=2000\n"
                 "At run time the same faults, plus cfs, remove, clear, status and corrupt lba=N ns=N, are "
                 "accepted one per line on the socket DIR/control (SIGUSR1 = surprise removal)");
  app.add_option("--mdts", mdts, "Identify MDTS: max transfer 2^N x 4 KiB, 0 = unlimited")->capture_default_str();
  app.add_option("--mqes", mqes, "CAP.MQES: largest queue size minus one")->capture_default_str();
  app.add_option("--io-queues", io_queues, "I/O submission and completion queues offered")->capture_default_str();
  unsigned msix_vectors = 0;
  app.add_option("--msix-vectors", msix_vectors,
                 "MSI-X vectors offered (interrupts of CQs created with IEN), 1..io-queues + 1; 0: io-queues + 1")
      ->capture_default_str();
  app.add_option("--serial", options.serial, "Identify serial number")->capture_default_str();
  std::string keep_alive = "on";
  app.add_option("--keep-alive", keep_alive,
                 "on: enforce the Keep Alive Timer the host sets (no Keep Alive command within KATO = "
                 "controller fatal status, as the NVMe spec says); off: accept Keep Alive, never expire")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  for (const std::string& spec : ns_specs) {
    auto ns = ParseNamespaceOptions(spec);
    if (!ns) {
      std::fprintf(stderr, "nvmux-emu: %s\n", ns.error().message.c_str());
      return 1;
    }
    options.namespaces.push_back(*ns);
  }
  auto kind = ParseBacking(backing);
  if (!kind) {
    std::fprintf(stderr, "nvmux-emu: %s\n", kind.error().message.c_str());
    return 1;
  }
  options.backing = *kind;
  for (const std::string& spec : fault_specs) {
    auto rule = ParseFaultRule(spec);
    if (!rule) {
      std::fprintf(stderr, "nvmux-emu: %s\n", rule.error().message.c_str());
      return 1;
    }
    options.faults.push_back(*rule);
  }
  if (mdts > 15) {
    std::fprintf(stderr, "nvmux-emu: --mdts %u: must be 0..15\n", mdts);
    return 1;
  }
  if (mqes < 1 || mqes > 0xFFFF) {
    std::fprintf(stderr, "nvmux-emu: --mqes %u: must be 1..65535 (CAP.MQES, 0's based)\n", mqes);
    return 1;
  }
  if (io_queues < 1 || io_queues > 511) {
    std::fprintf(stderr, "nvmux-emu: --io-queues %u: must be 1..511\n", io_queues);
    return 1;
  }
  if (keep_alive != "on" && keep_alive != "off") {
    std::fprintf(stderr, "nvmux-emu: --keep-alive '%s': must be on or off\n", keep_alive.c_str());
    return 1;
  }
  options.enforce_keep_alive = keep_alive == "on";
  options.mdts = static_cast<uint8_t>(mdts);
  options.mqes = static_cast<uint16_t>(mqes);
  options.io_queues = static_cast<uint16_t>(io_queues);
  if (msix_vectors > io_queues + 1) {
    std::fprintf(stderr, "nvmux-emu: --msix-vectors %u: must be 1..%u (--io-queues + 1), or 0 for that many\n",
                 msix_vectors, io_queues + 1);
    return 1;
  }
  options.msix_vectors = static_cast<uint16_t>(msix_vectors);

  // Block the stop signals before any thread starts so only sigwait sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGUSR1);  // surprise removal, not a stop
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto emu = Emulator::Create(options);
  if (!emu) {
    std::fprintf(stderr, "nvmux-emu: %s\n", emu.error().ToString().c_str());
    return 1;
  }
  if (auto started = (*emu)->Start(); !started) {
    std::fprintf(stderr, "nvmux-emu: %s\n", started.error().ToString().c_str());
    return 1;
  }
  NVMUX_LOG(kNotice, "nvmux-emu: serving %s", (*emu)->socket_path().c_str());
  int sig = 0;
  while (sigwait(&stop_signals, &sig) == 0 && sig == SIGUSR1) {
    NVMUX_LOG(kNotice, "nvmux-emu: SIGUSR1, surprise removal");
    (*emu)->Remove();
  }
  NVMUX_LOG(kNotice, "nvmux-emu: signal %d, stopping", sig);
  (*emu)->Stop();
  emu->reset();
  return 0;
}
