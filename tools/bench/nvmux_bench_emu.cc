// nvmux-bench-emu: the emulator's own throughput — 4 KiB random reads per
// second that nvmux-emu completes on one core, with the null backing and with
// the RAM backing, driven by a minimal polling client.
//
//   nvmux-bench-emu [--runs N] [--seconds S] [--qd Q] [--engine-cpu C] [--client-cpu C]
//                   [--size BYTES] [--mode null|ram|both] [--json]
//
// The engine (nvmux::emu::Emulator: its socket thread and its poller) runs
// in this process, pinned to --engine-cpu (default 1); the client runs on
// --client-cpu (default 0). The client is the least a host can do: the raw
// vfio-user client for set-up, a memfd for DMA memory, one I/O queue pair
// of 2*Q entries, Q commands always outstanding, SQ/CQ rings handled
// directly and doorbells written to the mmapped doorbell page (no trapped
// writes on the I/O path, no interrupts). The namespace (--size, 4 KiB
// blocks) is written in full before measuring, so RAM reads touch real pages;
// reads are uniformly random over it.
//
// Each mode gets a fresh emulator, a 0.5 s warm-up, then N runs of S seconds;
// reported: median, min and max commands per second, and null/RAM.
// Exit status: 0, or 1 if set-up failed or a command completed with an error.
#include <dirent.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "libclient/vfiouser/client.h"
#include "nvmux/spec/nvme.h"
#include "shm/base/unique_fd.h"
#include "tools/emu/emulator.h"

using namespace nvmux;
using namespace nvmux::spec;

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kIova = 0x1'0000'0000ull;
constexpr uint32_t kBlock = 4096;
constexpr uint16_t kAdminEntries = 32;
constexpr auto kStall = std::chrono::seconds(5);  // no completion this long: the engine is stuck

// The private directory holding the socket; removed by Die() too.
std::string g_dir;

// Reports and exits at once (_exit: the engine's threads may still run, so
// no destructors), removing the socket directory first.
[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "nvmux-bench-emu: %s\n", what.c_str());
  if (!g_dir.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(g_dir, ignored);
  }
  std::fflush(nullptr);
  ::_exit(1);
}

void Pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) Die("cannot pin to CPU " + std::to_string(cpu));
}

// CPU time (ns) of every thread of this process but the calling one (engine:
// the poller and its idle socket thread), or of the calling one (the client).
// From /proc schedstat: how much of the wall time each side got a CPU for.
// Both spin, so a share well below 100% means another process took the CPU.
uint64_t ThreadCpuNanos(bool engine) {
  const pid_t self = static_cast<pid_t>(::syscall(SYS_gettid));
  uint64_t total = 0;
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return 0;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.' || (std::atoi(e->d_name) == self) == engine) continue;
    const std::string path = std::string("/proc/self/task/") + e->d_name + "/schedstat";
    if (FILE* f = std::fopen(path.c_str(), "r")) {
      unsigned long long ns = 0;
      if (std::fscanf(f, "%llu", &ns) == 1) total += ns;
      std::fclose(f);
    }
  }
  ::closedir(dir);
  return total;
}

struct RunResult {
  double per_second = 0;         // completions per wall-clock second
  double engine_cpu_share = 0;   // engine CPU time / wall time
  double client_cpu_share = 0;
};

// A queue in the client's DMA memory.
struct HostRing {
  uint16_t qid = 0;
  uint16_t size = 0;
  uint8_t* mem = nullptr;
  uint64_t iova = 0;
  uint16_t tail = 0;  // SQ
  uint16_t head = 0;  // CQ
  uint8_t phase = 1;  // CQ
};

class Host {
 public:
  Host(const std::string& socket_dir, uint16_t io_entries, uint32_t qd) : qd_(qd) {
    auto client = vfiouser::Client::Connect(socket_dir);
    if (!client) Die("connect: " + client.error().ToString());
    client_ = std::move(*client);
    if (auto caps = client_->Negotiate(); !caps) Die("VERSION: " + caps.error().ToString());
    auto bar0 = client_->GetRegionInfo(vfiouser::kPciBar0Region);
    if (!bar0 || bar0->sparse_areas.empty()) Die("BAR0 has no doorbell area");
    auto db = client_->MapSparseArea(*bar0, 0);
    if (!db) Die("doorbell mmap: " + db.error().ToString());
    doorbells_ = std::move(*db);
    db_ = reinterpret_cast<uint32_t*>(doorbells_.data());

    // Layout: admin SQ/CQ, I/O SQ/CQ, then one 4 KiB buffer per command slot.
    const uint64_t io_sq_bytes = (uint64_t{io_entries} * sizeof(Sqe) + 4095) & ~4095ull;
    const uint64_t io_cq_bytes = (uint64_t{io_entries} * sizeof(Cqe) + 4095) & ~4095ull;
    buffers_off_ = 2 * 4096 + io_sq_bytes + io_cq_bytes;
    size_ = buffers_off_ + uint64_t{qd} * kBlock;
    fd_.Reset(::memfd_create("nvmux-bench-dma", MFD_CLOEXEC));
    if (!fd_.valid() || ::ftruncate(fd_.get(), static_cast<off_t>(size_)) != 0) Die("memfd");
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_.get(), 0);
    if (p == MAP_FAILED) Die("mmap DMA memory");
    mem_ = static_cast<uint8_t*>(p);
    if (Status s = client_->DmaMap(fd_.get(), 0, kIova, size_); !s) Die("DMA_MAP: " + s.error().ToString());

    asq_ = {0, kAdminEntries, mem_, kIova};
    acq_ = {0, kAdminEntries, mem_ + 4096, kIova + 4096};
    sq_ = {1, io_entries, mem_ + 8192, kIova + 8192};
    cq_ = {1, io_entries, mem_ + 8192 + io_sq_bytes, kIova + 8192 + io_sq_bytes};
  }

  ~Host() {
    doorbells_ = vfiouser::MappedArea();
    client_.reset();
    if (mem_ != nullptr) ::munmap(mem_, size_);
  }

  void Enable() {
    Aqa aqa;
    aqa.set_asqs(kAdminEntries - 1).set_acqs(kAdminEntries - 1);
    Cc cc;
    cc.set_en(1).set_iosqes(6).set_iocqes(4);
    if (!client_->Write32(vfiouser::kPciBar0Region, kRegAqa, aqa.raw) ||
        !client_->Write64(vfiouser::kPciBar0Region, kRegAsq, asq_.iova) ||
        !client_->Write64(vfiouser::kPciBar0Region, kRegAcq, acq_.iova) ||
        !client_->Write32(vfiouser::kPciBar0Region, kRegCc, cc.raw)) {
      Die("register writes failed");
    }
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    for (;;) {
      auto csts = client_->Read32(vfiouser::kPciBar0Region, kRegCsts);
      if (csts && Csts{*csts}.rdy() != 0) break;
      if (Clock::now() > deadline) Die("controller did not become ready");
    }
    Sqe nq;
    nq.opc = admin::kSetFeatures;
    nq.cdw10 = fid::kNumberOfQueues;
    AdminOrDie(nq, "Set Features (Number of Queues)");
    Sqe cq;
    cq.opc = admin::kCreateIoCq;
    cq.prp1 = cq_.iova;
    cq.cdw10 = 1u | (uint32_t{static_cast<uint16_t>(cq_.size - 1)} << 16);
    cq.cdw11 = 1;  // physically contiguous, interrupts off: the client polls
    AdminOrDie(cq, "Create I/O CQ");
    Sqe sq;
    sq.opc = admin::kCreateIoSq;
    sq.prp1 = sq_.iova;
    sq.cdw10 = 1u | (uint32_t{static_cast<uint16_t>(sq_.size - 1)} << 16);
    sq.cdw11 = 1u | (1u << 16);
    AdminOrDie(sq, "Create I/O SQ");
  }

  // Writes every block of the namespace once (so RAM reads hit real pages).
  void Fill(uint64_t blocks) {
    uint64_t next = 0, done = 0;
    for (uint32_t c = 0; c < qd_ && next < blocks; ++c) Push(nvm::kWrite, static_cast<uint16_t>(c), next++);
    RingSq(sq_);
    auto last = Clock::now();
    uint32_t idle = 0;
    while (done < blocks) {
      const Cqe* cqe;
      bool got = false;
      while ((cqe = Peek()) != nullptr) {
        if (cqe->sct() != 0 || cqe->sc() != 0) Die("write failed during fill");
        const uint16_t cid = cqe->cid;
        Pop();
        ++done;
        got = true;
        if (next < blocks) Push(nvm::kWrite, cid, next++);
      }
      if (got) {
        RingCqHead();
        RingSq(sq_);
        idle = 0;
      } else if (++idle % 1024 == 0) {
        if (Clock::now() - last > kStall) Die("no completion for 5 s while filling the namespace");
        continue;
      }
      last = Clock::now();
    }
  }

  // Keeps qd reads outstanding for `seconds`.
  RunResult Run(double seconds, uint64_t blocks, uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (uint32_t c = 0; c < qd_; ++c) Push(nvm::kRead, static_cast<uint16_t>(c), rng() % blocks);
    RingSq(sq_);
    uint64_t completed = 0;
    uint32_t outstanding = qd_;
    const uint64_t cpu_start = ThreadCpuNanos(true);
    const uint64_t client_start = ThreadCpuNanos(false);
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    auto now = start;
    auto last_progress = start;
    uint32_t checks = 0;
    for (;;) {
      const Cqe* cqe;
      uint32_t got = 0;
      while ((cqe = Peek()) != nullptr) {
        if (cqe->sct() != 0 || cqe->sc() != 0) Die("read completed with an error");
        const uint16_t cid = cqe->cid;
        Pop();
        ++got;
        if (now < end) {
          Push(nvm::kRead, cid, rng() % blocks);
        } else {
          --outstanding;  // past the end: drain
        }
      }
      if (got != 0) {
        completed += got;
        RingCqHead();
        if (now < end) RingSq(sq_);
        last_progress = now;
      }
      if (++checks % 64 == 0) {
        now = Clock::now();
        if (now - last_progress > kStall) Die("no completion for 5 s");
      }
      if (now >= end && outstanding == 0) break;
    }
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const double cpu = static_cast<double>(ThreadCpuNanos(true) - cpu_start) / 1e9;
    const double client = static_cast<double>(ThreadCpuNanos(false) - client_start) / 1e9;
    return {static_cast<double>(completed) / elapsed, cpu / elapsed, client / elapsed};
  }

 private:
  void Push(uint8_t opc, uint16_t cid, uint64_t lba) {
    Sqe sqe;
    sqe.opc = opc;
    sqe.cid = cid;
    sqe.nsid = 1;
    sqe.prp1 = kIova + buffers_off_ + uint64_t{cid} * kBlock;
    sqe.cdw10 = static_cast<uint32_t>(lba);
    sqe.cdw11 = static_cast<uint32_t>(lba >> 32);
    sqe.cdw12 = 0;  // one 4 KiB block
    std::memcpy(sq_.mem + uint64_t{sq_.tail} * sizeof(Sqe), &sqe, sizeof(Sqe));
    sq_.tail = static_cast<uint16_t>(sq_.tail + 1 == sq_.size ? 0 : sq_.tail + 1);
  }

  void RingSq(const HostRing& sq) {
    std::atomic_ref<uint32_t>(db_[2u * sq.qid]).store(sq.tail, std::memory_order_release);
  }
  void RingCqHead() {
    std::atomic_ref<uint32_t>(db_[2u * cq_.qid + 1]).store(cq_.head, std::memory_order_release);
  }

  const Cqe* Peek() const {
    const auto* cqe = reinterpret_cast<const Cqe*>(cq_.mem) + cq_.head;
    const uint16_t status = std::atomic_ref<const uint16_t>(cqe->status).load(std::memory_order_acquire);
    return (status & 1) == cq_.phase ? cqe : nullptr;
  }
  void Pop() {
    if (++cq_.head == cq_.size) {
      cq_.head = 0;
      cq_.phase ^= 1;
    }
  }

  void AdminOrDie(Sqe sqe, const char* what) {
    sqe.cid = next_admin_cid_++;
    std::memcpy(asq_.mem + uint64_t{asq_.tail} * sizeof(Sqe), &sqe, sizeof(Sqe));
    asq_.tail = static_cast<uint16_t>((asq_.tail + 1) % asq_.size);
    RingSq(asq_);
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    const auto* slot = reinterpret_cast<const Cqe*>(acq_.mem) + acq_.head;
    while ((std::atomic_ref<const uint16_t>(slot->status).load(std::memory_order_acquire) & 1) != acq_.phase) {
      if (Clock::now() > deadline) Die(std::string(what) + ": no completion");
    }
    if (slot->sct() != 0 || slot->sc() != 0) Die(std::string(what) + " failed");
    if (++acq_.head == acq_.size) {
      acq_.head = 0;
      acq_.phase ^= 1;
    }
    std::atomic_ref<uint32_t>(db_[1]).store(acq_.head, std::memory_order_release);
  }

  uint32_t qd_;
  std::unique_ptr<vfiouser::Client> client_;
  vfiouser::MappedArea doorbells_;
  uint32_t* db_ = nullptr;
  UniqueFd fd_;
  uint8_t* mem_ = nullptr;
  uint64_t size_ = 0;
  uint64_t buffers_off_ = 0;
  HostRing asq_, acq_, sq_, cq_;
  uint16_t next_admin_cid_ = 1;
};

struct Summary {
  double median = 0, min = 0, max = 0;
  double cpu_share = 0;  // median engine CPU share
  double client_share = 0;
  std::vector<double> runs;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

Summary Measure(emu::BackingKind backing, const std::string& dir, uint64_t size, uint32_t qd, int runs,
                double seconds, int engine_cpu, int client_cpu) {
  emu::EmulatorOptions options;
  options.socket_dir = dir;
  options.namespaces.push_back({size, kBlock, 0, false});
  options.backing = backing;
  options.mqes = static_cast<uint16_t>(std::max<uint32_t>(2 * qd, kAdminEntries) - 1);
  options.io_queues = 1;
  auto created = emu::Emulator::Create(options);
  if (!created) Die(created.error().ToString());
  std::unique_ptr<emu::Emulator> emu = std::move(*created);
  // Threads inherit the creator's affinity: the engine's threads start on
  // the engine CPU, then this (client) thread moves to its own.
  Pin(engine_cpu);
  if (Status s = emu->Start(); !s) Die(s.error().ToString());
  Pin(client_cpu);

  Summary sum;
  {
    Host host(dir, static_cast<uint16_t>(2 * qd), qd);
    host.Enable();
    const uint64_t blocks = size / kBlock;
    host.Fill(blocks);
    (void)host.Run(0.5, blocks, 1);  // warm-up
    std::vector<double> shares, client_shares;
    for (int r = 0; r < runs; ++r) {
      const RunResult result = host.Run(seconds, blocks, 100 + static_cast<uint64_t>(r));
      sum.runs.push_back(result.per_second);
      shares.push_back(result.engine_cpu_share);
      client_shares.push_back(result.client_cpu_share);
    }
    sum.cpu_share = Median(shares);
    sum.client_share = Median(client_shares);
  }
  emu.reset();
  sum.min = *std::min_element(sum.runs.begin(), sum.runs.end());
  sum.max = *std::max_element(sum.runs.begin(), sum.runs.end());
  sum.median = Median(sum.runs);
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nvmux-emu throughput: 4 KiB random reads per second, null and RAM backing"};
  int runs = 5;
  double seconds = 3.0;
  uint32_t qd = 128;
  int engine_cpu = 1;
  int client_cpu = 0;
  std::string size_text = "1G";
  std::string mode = "both";
  bool json = false;
  app.add_option("-n,--runs", runs, "runs per backing (median, min, max reported)")->check(CLI::Range(1, 100));
  app.add_option("-t,--seconds", seconds, "seconds per run")->check(CLI::Range(0.1, 600.0));
  app.add_option("-q,--qd", qd, "commands outstanding")->check(CLI::Range(1, 2048));
  app.add_option("--engine-cpu", engine_cpu, "CPU of the emulator's threads");
  app.add_option("--client-cpu", client_cpu, "CPU of the polling client");
  app.add_option("--size", size_text, "namespace size (K/M/G suffixes), written in full before measuring");
  app.add_option("--mode", mode, "null, ram or both")->check(CLI::IsMember({"null", "ram", "both"}));
  app.add_flag("--json", json, "one JSON object instead of text");
  CLI11_PARSE(app, argc, argv);
  auto size = emu::ParseSize(size_text);
  if (!size || *size < kBlock || *size % kBlock != 0) Die("--size must be a multiple of 4 KiB");

  char tmpl[] = "/tmp/nvmux-bench-emu-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) Die("mkdtemp");
  g_dir = tmpl;
  const std::string dir = g_dir + "/sock";

  std::optional<Summary> null_sum, ram_sum;
  if (mode != "ram") null_sum = Measure(emu::BackingKind::kNull, dir, *size, qd, runs, seconds, engine_cpu, client_cpu);
  if (mode != "null") ram_sum = Measure(emu::BackingKind::kRam, dir, *size, qd, runs, seconds, engine_cpu, client_cpu);
  ::rmdir(tmpl);
  g_dir.clear();

  auto list = [](const Summary& s) {
    std::string out;
    for (double v : s.runs) out += (out.empty() ? "" : ", ") + std::to_string(static_cast<uint64_t>(v));
    return out;
  };
  if (json) {
    std::printf("{\"qd\": %u, \"block\": %u, \"runs\": %d, \"seconds\": %.2f, \"engine_cpu\": %d, \"client_cpu\": %d",
                qd, kBlock, runs, seconds, engine_cpu, client_cpu);
    for (auto [name, s] : {std::pair{"null", &null_sum}, std::pair{"ram", &ram_sum}}) {
      if (!*s) continue;
      std::printf(", \"%s\": {\"median\": %.0f, \"min\": %.0f, \"max\": %.0f, \"engine_cpu_share\": %.3f, "
                  "\"client_cpu_share\": %.3f, \"runs\": [%s]}",
                  name, (*s)->median, (*s)->min, (*s)->max, (*s)->cpu_share, (*s)->client_share, list(**s).c_str());
    }
    if (null_sum && ram_sum) std::printf(", \"null_over_ram\": %.3f", null_sum->median / ram_sum->median);
    std::printf("}\n");
    return 0;
  }
  std::printf("nvmux-bench-emu: 4 KiB random reads, QD %u, one I/O queue pair, %d runs x %.1f s per backing\n", qd,
              runs, seconds);
  std::printf("  engine (socket thread + poller) on CPU %d, polling client on CPU %d, namespace %s\n", engine_cpu,
              client_cpu, size_text.c_str());
  for (auto [name, s] : {std::pair{"null", &null_sum}, std::pair{"ram ", &ram_sum}}) {
    if (!*s) continue;
    std::printf("  %s: median %.3f M cmds/s (min %.3f, max %.3f)\n", name, (*s)->median / 1e6, (*s)->min / 1e6,
                (*s)->max / 1e6);
    std::printf("        runs: %s; CPU share engine %.0f%%, client %.0f%%\n", list(**s).c_str(),
                100 * (*s)->cpu_share, 100 * (*s)->client_share);
  }
  if (null_sum && ram_sum) std::printf("  null/ram: %.2fx\n", null_sum->median / ram_sum->median);
  return 0;
}
