#include "tools/perf/perf_worker.h"

#include <poll.h>
#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <span>

#include "nvmux/io_types.h"
#include "nvmux/spin_budget.h"
#include "shm/base/clock.h"
#include "shm/base/format.h"
#include "shm/core_set.h"
#include "tools/perf/io_pattern.h"
#include "tools/perf/latency_histogram.h"

namespace nvmux::perf {

std::string_view ToString(RunPhase phase) {
  switch (phase) {
    case RunPhase::kSetup: return "setup";
    case RunPhase::kWarmup: return "warmup";
    case RunPhase::kMeasure: return "measure";
    case RunPhase::kStop: return "stop";
  }
  return "?";
}

void RunControl::Advance(RunPhase phase) {
  int want = static_cast<int>(phase);
  int current = phase_.load(std::memory_order_acquire);
  while (current < want && !phase_.compare_exchange_weak(current, want, std::memory_order_acq_rel)) {
  }
  phase_.notify_all();
}

void RunControl::WaitWhileSetup() const {
  phase_.wait(static_cast<int>(RunPhase::kSetup), std::memory_order_acquire);
}

bool RunControl::Fail() {
  bool first = !failed_.exchange(true, std::memory_order_acq_rel);
  Advance(RunPhase::kStop);
  return first;
}

namespace {

constexpr int64_t kNsPerSecond = 1'000'000'000;
constexpr int64_t kDrainTimeoutNs = 10 * kNsPerSecond;
// The --verify slot map: 12 bytes per I/O slot, so at most 96 MiB.
constexpr uint64_t kMaxSlotMapSlots = uint64_t{8} << 20;
// Sequence numbers: a per-(namespace, worker) nonce above a 40-bit write counter,
// so blocks written by an earlier run never pass for this run's writes.
constexpr unsigned kSeqCounterBits = 40;
constexpr uint64_t kSeqCounterMask = (uint64_t{1} << kSeqCounterBits) - 1;
constexpr size_t kMinBufferAlignment = 4096;  // a page: one PRP entry per page of payload
constexpr size_t kMetadataAlignment = 64;
constexpr size_t kSeqOffset = 16;  // of the sequence number in a verify block header (io_pattern.h)

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

// "sct=0 sc=0x80 (LBA Out of Range) dnr=1".
std::string StatusText(const spec::Cqe& cpl) {
  const char* name = nullptr;
  if (cpl.sct() == spec::sct::kGeneric) {
    switch (cpl.sc()) {
      case spec::sc::kInvalidOpcode: name = "Invalid Opcode"; break;
      case spec::sc::kInvalidField: name = "Invalid Field"; break;
      case spec::sc::kDataTransferError: name = "Data Transfer Error"; break;
      case spec::sc::kInternalError: name = "Internal Error"; break;
      case spec::sc::kAbortRequested: name = "Aborted: Requested"; break;
      case spec::sc::kAbortedSqDeletion: name = "Aborted: SQ Deletion"; break;
      case spec::sc::kInvalidNamespaceOrFormat: name = "Invalid Namespace or Format"; break;
      case spec::sc::kLbaOutOfRange: name = "LBA Out of Range"; break;
      case spec::sc::kNamespaceNotReady: name = "Namespace Not Ready"; break;
      case spec::sc::kReservationConflict: name = "Reservation Conflict"; break;
      default: break;
    }
  } else if (cpl.sct() == spec::sct::kMediaError) {
    switch (cpl.sc()) {
      case spec::sc::kWriteFault: name = "Write Fault"; break;
      case spec::sc::kUnrecoveredReadError: name = "Unrecovered Read Error"; break;
      case spec::sc::kEndToEndGuardCheckError: name = "End-to-end Guard Check Error"; break;
      case spec::sc::kEndToEndApplicationTagCheckError: name = "End-to-end Application Tag Check Error"; break;
      case spec::sc::kEndToEndReferenceTagCheckError: name = "End-to-end Reference Tag Check Error"; break;
      default: break;
    }
  }
  char buf[128];
  std::snprintf(buf, sizeof(buf), "sct=%u sc=0x%02x%s%s%s dnr=%d", cpl.sct(), cpl.sc(), name ? " (" : "",
                name ? name : "", name ? ")" : "", cpl.dnr() ? 1 : 0);
  return buf;
}

// What the --verify map knows about one I/O slot. Counters are the low bits
// of sequence numbers (write numbers of this run, from 1).
struct SlotState {
  uint32_t floor = 0;             // every block of the slot holds a write numbered >= floor (0: unknown)
  uint32_t batch_min = 0;         // first write of the current batch of overlapping writes
  uint16_t writes_in_flight = 0;  // writes of the batch not completed yet
  bool batch_failed = false;      // a write of the batch failed: its blocks may hold anything older
};
static_assert(sizeof(SlotState) == 12);

struct NsContext;

// One outstanding I/O: its buffer and what it was sent to do.
struct Task {
  NsContext* ctx = nullptr;
  IoQpair* qpair = nullptr;
  uint8_t* data = nullptr;  // the payload; with -O its first unit (units follow at unit_stride)
  uint8_t* md = nullptr;    // separate metadata, or null
  uint64_t lba = 0;
  uint64_t slot = 0;
  uint64_t seq = 0;         // --verify writes: the sequence number written
  uint32_t floor = 0;       // --verify reads with the map: the slot's floor at submission
  int64_t submit_ns = 0;
  uint32_t sge_index = 0;   // -O: the scatter-gather iterator
  uint32_t sge_offset = 0;
  bool is_read = true;
  std::vector<uint8_t> staging;  // -O with --verify: the payload in one piece
};

void OnIoComplete(void* arg, const spec::Cqe& cpl);
void ResetSgl(void* arg, uint32_t offset);
Sge NextSge(void* arg);

}  // namespace

struct PerfWorker::State {
  ~State();

  PerfOptions options;
  RunControl* control = nullptr;
  uint32_t core = 0;
  std::atomic<uint64_t> completed{0};
  std::atomic<bool> finished{false};
  std::vector<std::unique_ptr<NsContext>> contexts;
  std::vector<QpairReport> qpair_reports;
  // --cpu-stats: this thread's CPU time from the start of measuring to the stop.
  int64_t cpu_start_ns = -1;
  int64_t cpu_ns = 0;
  // --mode hybrid: polls that completed nothing since the last completion
  // (or block), when the spin began (0: not yet looked at the clock), and
  // its account (the budget shrinks while spinning does not pay).
  uint32_t idle_polls = 0;
  int64_t spin_start_ns = 0;
  SpinBudget spin{0};
  std::optional<SpinBudget::Wait> wait;  // engaged while spin_start_ns is set
};

namespace {
int64_t ThreadCpuNanos() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace

namespace {

// One (namespace, worker) pair: SPDK's ns_worker_ctx.
struct NsContext {
  static Result<std::unique_ptr<NsContext>> Create(Env& env, PerfWorker::State& worker, PerfTarget target,
                                                   uint64_t salt);
  ~NsContext() {
    // Destroying a queue pair completes what it still holds (aborted): those
    // callbacks must not submit again.
    stopping = true;
    qpairs.clear();
  }

  void SubmitInitial();
  bool Submit(Task& t);
  Status Issue(IoQpair& qp, Task& t);
  void Complete(Task& t, const spec::Cqe& cpl);
  uint32_t Poll();
  void StartMeasuring(int64_t now);
  void Stop(int64_t now);

  void PrepareWrite(Task& t);
  void FinishWrite(uint64_t slot, bool succeeded);
  bool CheckRead(Task& t);
  void OnIoError(const Task& t, const spec::Cqe& cpl);
  // An error -Q may continue after.
  void Report(const std::string& message);
  // An error that ends the run.
  void Fatal(const std::string& message);
  std::string IoText(const Task& t) const;

  uint32_t UnitLength(uint32_t index) const { return std::min(unit, io_bytes - index * unit); }
  uint8_t* Unit(const Task& t, uint32_t index) const { return t.data + size_t{index} * unit_stride; }

  PerfWorker::State* worker = nullptr;
  const PerfOptions* options = nullptr;
  PerfTarget target;
  const Namespace* ns = nullptr;
  uint32_t io_blocks = 1;
  uint32_t block_bytes = 512;  // extended sector size: data (and interleaved metadata) of one block
  uint32_t io_bytes = 0;
  uint32_t io_flags = 0;
  uint32_t unit = 0;           // -O: bytes per scatter-gather element; 0 = one contiguous buffer
  uint32_t unit_stride = 0;
  uint32_t unit_count = 1;
  bool verify = false;

  std::optional<IoPattern> pattern;
  uint64_t ios_limit = 0;  // -d; 0 = none
  uint64_t submitted = 0;
  uint32_t outstanding = 0;
  bool stopping = false;
  bool counting = true;
  bool measured = false;
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  LatencyHistogram histogram;
  uint64_t errors = 0;
  ErrorLogLimiter limiter{1};

  uint64_t seq_base = 0;
  uint64_t write_counter = 0;
  std::vector<SlotState> slot_map;  // empty: reads accept any intact block

  DmaBuffer data_memory;
  DmaBuffer md_memory;
  std::vector<Task> tasks;
  std::vector<std::unique_ptr<IoQpair>> qpairs;  // last: destroyed first
  size_t next_qpair = 0;
};

Result<std::unique_ptr<NsContext>> NsContext::Create(Env& env, PerfWorker::State& worker, PerfTarget target,
                                                     uint64_t salt) {
  const PerfOptions& o = worker.options;
  auto c = std::make_unique<NsContext>();
  c->worker = &worker;
  c->options = &o;
  c->ns = target.ns;
  c->io_blocks = target.io_blocks;
  c->block_bytes = target.ns->extended_sector_size();
  c->io_bytes = c->io_blocks * c->block_bytes;
  c->verify = o.verify;
  c->limiter = ErrorLogLimiter(o.error_log_every);
  c->target = std::move(target);
  const std::string& name = c->target.name;
  const Namespace& ns = *c->ns;
  Controller& ctrlr = *c->target.controller;

  if (ns.pi_type() != PiType::kNone) {
    if (o.pi.pract) c->io_flags |= kIoFlagsPract;
    if (o.pi.prchk_guard) c->io_flags |= kIoFlagsPrchkGuard;
    if (o.pi.prchk_reftag) c->io_flags |= kIoFlagsPrchkReftag;
    if (o.pi.prchk_apptag) c->io_flags |= kIoFlagsPrchkApptag;
  }

  // Buffers: one DMA allocation per (namespace, worker), carved per task.
  size_t align = std::max<size_t>(o.buffer_alignment, kMinBufferAlignment);
  if (o.io_unit_size != 0 && o.io_unit_size < c->io_bytes) {
    c->unit = o.io_unit_size;
    c->unit_count = (c->io_bytes + c->unit - 1) / c->unit;
    c->unit_stride = static_cast<uint32_t>(RoundUp(c->unit, align));
  }
  size_t task_stride = c->unit != 0 ? size_t{c->unit_count} * c->unit_stride : RoundUp(c->io_bytes, align);
  size_t depth = o.queue_depth;
  auto data = env.AllocDma(depth * task_stride, align, "perf-io");
  if (!data) {
    return Fail(data.error().code, name + ": cannot allocate " + std::to_string(depth * task_stride) +
                                       " bytes of DMA memory for -q " + std::to_string(depth) +
                                       " I/O buffers: " + data.error().message);
  }
  c->data_memory = std::move(*data);
  size_t md_stride = 0;
  if (ns.md_size() > 0 && !ns.extended_lba()) {
    md_stride = RoundUp(size_t{c->io_blocks} * ns.md_size(), kMetadataAlignment);
    auto md = env.AllocDma(depth * md_stride, kMetadataAlignment, "perf-md");
    if (!md) {
      return Fail(md.error().code, name + ": cannot allocate DMA memory for the metadata buffers: " +
                                       md.error().message);
    }
    c->md_memory = std::move(*md);
  }
  c->tasks.resize(depth);
  for (size_t i = 0; i < depth; ++i) {
    Task& t = c->tasks[i];
    t.ctx = c.get();
    t.data = static_cast<uint8_t*>(c->data_memory.data()) + i * task_stride;
    if (md_stride != 0) t.md = static_cast<uint8_t*>(c->md_memory.data()) + i * md_stride;
    if (c->unit != 0 && c->verify) t.staging.resize(c->io_bytes);
  }

  // Offsets. Workers sharing a namespace start their sequential walks apart.
  IoPatternConfig config = PatternConfigFrom(o, c->target.range, c->io_blocks, MakeSeed(salt));
  uint64_t slots = c->target.range.count / c->io_blocks;
  config.first_slot = c->target.sharers > 1 ? slots / c->target.sharers * c->target.sharer_index : 0;
  auto pattern = IoPattern::Create(config);
  if (!pattern) return Fail(pattern.error().code, name + ": " + pattern.error().message);
  c->pattern.emplace(std::move(*pattern));
  c->ios_limit = NumberIosFor(o, c->pattern->slots());

  if (c->verify) {
    c->seq_base = ((MakeSeed(salt ^ 0x5eed) & 0xFFFFFF) | 1) << kSeqCounterBits;
    bool mixed = o.workload == Workload::kRw || o.workload == Workload::kRandRw;
    if (mixed && c->target.sharers == 1 && slots <= kMaxSlotMapSlots) c->slot_map.resize(slots);
  }

  // Queue pairs: requests for -q I/Os even if every one lands on one queue
  // pair and is split at MDTS and the optimal I/O boundary.
  uint32_t max_entries = ctrlr.cap().mqes() + 1u;
  uint32_t queue_size = o.io_queue_size == 0 ? max_entries : std::clamp<uint32_t>(o.io_queue_size, 2, max_entries);
  uint32_t max_blocks = std::max<uint32_t>(1, ctrlr.max_transfer_size() / c->block_bytes);
  uint32_t noiob = ns.optimal_io_boundary();
  uint32_t child_blocks = noiob != 0 ? std::min(max_blocks, noiob) : max_blocks;
  uint64_t children = (c->io_blocks + child_blocks - 1) / child_blocks + (noiob != 0 ? 1 : 0);
  uint64_t per_io = children == 1 ? 1 : children + 1;
  uint64_t requests = std::max<uint64_t>(queue_size, depth * per_io);
  IoQpairOptions qo;
  qo.io_queue_size = queue_size;
  qo.io_queue_requests = static_cast<uint32_t>(std::min<uint64_t>(requests, std::numeric_limits<uint32_t>::max()));
  qo.delay_cmd_submit = true;
  qo.mode = o.mode == WaitMode::kEvent    ? CompletionMode::kEvent
            : o.mode == WaitMode::kHybrid ? CompletionMode::kHybrid
                                          : CompletionMode::kPoll;
  qo.hybrid_spin_us = o.hybrid_spin_us;
  for (uint32_t i = 0; i < o.qpairs_per_ns; ++i) {
    auto qp = ctrlr.AllocIoQpair(qo);
    if (!qp) {
      return Fail(qp.error().code, name + ": cannot allocate I/O queue pair " + std::to_string(i + 1) + " of -P " +
                                       std::to_string(o.qpairs_per_ns) + " for core " +
                                       std::to_string(worker.core) + ": " + qp.error().message);
    }
    // Where the SQ went (--use-cmb-sqs is not strict): tests read this.
    if (o.use_cmb_sqs)
      std::fprintf(o.json ? stderr : stdout, "%s: queue pair %u: SQ in %s\n", name.c_str(), (*qp)->id(),
                   (*qp)->sq_in_cmb() ? ("the CMB at controller address " + Hex((*qp)->sq_cmb_address())).c_str()
                                      : "host memory");
    c->qpairs.push_back(std::move(*qp));
  }
  return c;
}

void NsContext::SubmitInitial() {
  for (Task& t : tasks) {
    if (stopping || (ios_limit != 0 && submitted >= ios_limit)) break;
    if (!Submit(t)) break;
  }
}

void NsContext::PrepareWrite(Task& t) {
  uint64_t counter = ++write_counter;
  t.seq = seq_base | (counter & kSeqCounterMask);
  std::span<uint8_t> payload = unit != 0 ? std::span<uint8_t>(t.staging) : std::span<uint8_t>(t.data, io_bytes);
  // Cannot fail: the payload is a whole number of blocks of at least 512 bytes.
  (void)FillVerifyBlocks(payload, t.lba, block_bytes, t.seq);
  if (unit != 0) {
    for (uint32_t k = 0; k < unit_count; ++k) std::memcpy(Unit(t, k), t.staging.data() + size_t{k} * unit, UnitLength(k));
  }
  if (slot_map.empty()) return;
  if (counter >= std::numeric_limits<uint32_t>::max()) {
    // The map's 32-bit counters are used up (4 Gi writes): from here on reads
    // accept any intact block. Reads in flight skip the check too.
    slot_map.clear();
    slot_map.shrink_to_fit();
    return;
  }
  SlotState& s = slot_map[t.slot];
  if (s.writes_in_flight++ == 0) {
    s.batch_min = static_cast<uint32_t>(counter);
    s.batch_failed = false;
  }
}

void NsContext::FinishWrite(uint64_t slot, bool succeeded) {
  if (slot_map.empty()) return;
  SlotState& s = slot_map[slot];
  if (!succeeded) s.batch_failed = true;
  // Once the batch is over, one of its writes landed last: the slot holds a
  // write numbered >= the batch's first. A failed write may have left older
  // blocks, which the old floor still covers.
  if (--s.writes_in_flight == 0 && !s.batch_failed) s.floor = s.batch_min;
}

bool NsContext::Submit(Task& t) {
  IoDecision d = pattern->Next();
  t.lba = d.lba;
  t.is_read = d.is_read;
  t.slot = (d.lba - target.range.start) / io_blocks;
  t.floor = 0;
  if (verify) {
    if (!t.is_read) {
      PrepareWrite(t);
    } else if (!slot_map.empty()) {
      t.floor = slot_map[t.slot].floor;
    }
  }
  IoQpair& qp = *qpairs[next_qpair];
  if (++next_qpair == qpairs.size()) next_qpair = 0;
  t.qpair = &qp;
  t.submit_ns = MonotonicNanos();
  Status st = Issue(qp, t);
  if (!st) {
    if (verify && !t.is_read) FinishWrite(t.slot, false);
    ++errors;
    Fatal(IoText(t) + ": cannot submit: " + st.error().message);
    return false;
  }
  ++submitted;
  ++outstanding;
  return true;
}

Status NsContext::Issue(IoQpair& qp, Task& t) {
  if (unit != 0) {
    return t.is_read ? qp.ReadV(*ns, t.lba, io_blocks, OnIoComplete, &t, io_flags, ResetSgl, NextSge, t.md)
                     : qp.WriteV(*ns, t.lba, io_blocks, OnIoComplete, &t, io_flags, ResetSgl, NextSge, t.md);
  }
  if (t.md != nullptr) {
    return t.is_read ? qp.ReadWithMd(*ns, t.data, t.md, t.lba, io_blocks, OnIoComplete, &t, io_flags)
                     : qp.WriteWithMd(*ns, t.data, t.md, t.lba, io_blocks, OnIoComplete, &t, io_flags);
  }
  return t.is_read ? qp.Read(*ns, t.data, t.lba, io_blocks, OnIoComplete, &t, io_flags)
                   : qp.Write(*ns, t.data, t.lba, io_blocks, OnIoComplete, &t, io_flags);
}

void NsContext::Complete(Task& t, const spec::Cqe& cpl) {
  int64_t now = MonotonicNanos();
  --outstanding;
  bool failed = IsError(cpl);
  if (failed) {
    OnIoError(t, cpl);
  } else if (verify && t.is_read) {
    CheckRead(t);
  }
  if (verify && !t.is_read) FinishWrite(t.slot, !failed);
  if (counting) histogram.Record(static_cast<uint64_t>(now - t.submit_ns));
  worker->completed.store(worker->completed.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  if (stopping) return;
  if (ios_limit != 0 && submitted >= ios_limit) {
    if (outstanding == 0 && counting) {  // -d reached: this namespace is done
      end_ns = now;
      counting = false;
    }
    return;
  }
  Submit(t);
}

uint32_t NsContext::Poll() {
  if (outstanding == 0) return 0;
  for (auto& qp : qpairs) {
    auto n = qp->ProcessCompletions(options->max_completions);
    if (!n) {
      ++errors;
      Fatal(target.name + ": " + n.error().message);
    }
  }
  return outstanding;
}

void NsContext::StartMeasuring(int64_t now) {
  histogram.Reset();
  start_ns = now;
  end_ns = now;
  measured = true;
  counting = !stopping;
}

void NsContext::Stop(int64_t now) {
  if (counting) {
    end_ns = now;
    counting = false;
  }
  stopping = true;
}

std::string NsContext::IoText(const Task& t) const {
  return target.name + ": " + (t.is_read ? "read" : "write") + " of LBA " + std::to_string(t.lba) + " (" +
         std::to_string(io_blocks) + (io_blocks == 1 ? " block)" : " blocks)");
}

bool NsContext::CheckRead(Task& t) {
  std::span<const uint8_t> payload(t.data, io_bytes);
  if (unit != 0) {
    for (uint32_t k = 0; k < unit_count; ++k) std::memcpy(t.staging.data() + size_t{k} * unit, Unit(t, k), UnitLength(k));
    payload = t.staging;
  }
  bool use_map = !slot_map.empty() && t.floor != 0;
  VerifyCheckOptions check;
  check.accept_unwritten = !use_map;
  auto r = CheckVerifyBlocks(payload, t.lba, block_bytes, check);
  if (!r) {
    Fatal(IoText(t) + ": verify: " + r.error().message);
    return false;
  }
  if (!r->ok()) {
    ++errors;
    Report(IoText(t) + ": verify failed: " + r->mismatch->ToString());
    return false;
  }
  if (!use_map) return true;
  for (uint32_t i = 0; i < io_blocks; ++i) {
    uint64_t seq = 0;
    std::memcpy(&seq, payload.data() + size_t{i} * block_bytes + kSeqOffset, sizeof(seq));
    if ((seq & ~kSeqCounterMask) == seq_base && (seq & kSeqCounterMask) >= t.floor) continue;
    ++errors;
    char text[160];
    std::snprintf(text, sizeof(text),
                  "LBA %" PRIu64 ": stale data: sequence 0x%016" PRIx64 ", but write #%u of this run to it had "
                  "completed before the read was submitted",
                  t.lba + i, seq, t.floor);
    Report(IoText(t) + ": verify failed: " + text);
    return false;
  }
  return true;
}

void NsContext::OnIoError(const Task& t, const spec::Cqe& cpl) {
  if (cpl.sct() == spec::sct::kGeneric && cpl.sc() == spec::sc::kAbortedSqDeletion) {
    if (stopping) return;  // our own teardown, or a failure already reported
    if (t.qpair->failed()) {
      ++errors;
      Fatal(target.name + ": I/O queue pair " + std::to_string(t.qpair->id()) +
            " failed (its controller failed or was removed); outstanding I/O was aborted");
      return;
    }
  }
  ++errors;
  Report(IoText(t) + " failed with status " + StatusText(cpl));
}

void NsContext::Report(const std::string& message) {
  if (!options->continue_on_error) {
    Fatal(message);
    return;
  }
  if (auto line = limiter.Next(message)) std::fprintf(stderr, "nvmux-perf: %s\n", line->c_str());
}

void NsContext::Fatal(const std::string& message) {
  Stop(MonotonicNanos());
  if (worker->control->Fail()) std::fprintf(stderr, "nvmux-perf: %s\n", message.c_str());
}

void OnIoComplete(void* arg, const spec::Cqe& cpl) {
  auto* t = static_cast<Task*>(arg);
  t->ctx->Complete(*t, cpl);
}

void ResetSgl(void* arg, uint32_t offset) {
  auto* t = static_cast<Task*>(arg);
  t->sge_index = offset / t->ctx->unit;
  t->sge_offset = offset % t->ctx->unit;
}

Sge NextSge(void* arg) {
  auto* t = static_cast<Task*>(arg);
  const NsContext& c = *t->ctx;
  if (t->sge_index >= c.unit_count) return Sge{};
  Sge e{c.Unit(*t, t->sge_index) + t->sge_offset, c.UnitLength(t->sge_index) - t->sge_offset};
  ++t->sge_index;
  t->sge_offset = 0;
  return e;
}

}  // namespace

PerfWorker::State::~State() { contexts.clear(); }

Result<std::unique_ptr<PerfWorker>> PerfWorker::Create(Env& env, const PerfOptions& options, uint32_t core,
                                                       std::vector<PerfTarget> targets, RunControl& control) {
  auto s = std::make_unique<State>();
  s->options = options;
  s->spin = SpinBudget(options.hybrid_spin_us);
  s->control = &control;
  s->core = core;
  for (size_t i = 0; i < targets.size(); ++i) {
    auto ctx = NsContext::Create(env, *s, std::move(targets[i]), uint64_t{core} * 1'000'003 + i);
    if (!ctx) return ctx.error();
    s->contexts.push_back(std::move(*ctx));
  }
  return std::unique_ptr<PerfWorker>(new PerfWorker(std::move(s)));
}

PerfWorker::PerfWorker(std::unique_ptr<State> state) : s_(std::move(state)) {}
PerfWorker::~PerfWorker() = default;

uint32_t PerfWorker::core() const { return s_->core; }
uint64_t PerfWorker::completed() const { return s_->completed.load(std::memory_order_relaxed); }
bool PerfWorker::finished() const { return s_->finished.load(std::memory_order_acquire); }

// --mode event/hybrid: after a poll that completed nothing (hybrid: once
// the spin budget since the last completion is spent), arm every queue
// pair and block on their eventfds; 100 ms at most, so phase changes are
// seen (hybrid: 10 ms, SpinBudget::kBlockNanos). A queue pair with a
// completion waiting cancels the block.
// Hybrid reads the clock every 32nd idle poll only (a clock read costs as
// much as an idle poll: reading it on each would slow the spin that finds
// the next completion); the spin is timed from the first such read.
static void WaitForEvents(PerfWorker::State& s, uint64_t completed_before) {
  if (s.completed.load(std::memory_order_relaxed) != completed_before) {
    if (s.wait) s.wait->Found();  // a completion within the spin
    s.wait.reset();
    s.idle_polls = 0;
    s.spin_start_ns = 0;
    return;
  }
  if (s.options.mode == WaitMode::kHybrid) {
    if ((++s.idle_polls & 31u) != 0) return;
    const int64_t now = MonotonicNanos();
    if (!s.wait) {
      s.wait.emplace(s.spin);
      s.spin_start_ns = now;
    }
    if (s.wait->Spin(now - s.spin_start_ns)) return;
    s.wait->Blocking();
  }
  s.wait.reset();
  s.idle_polls = 0;
  s.spin_start_ns = 0;
  std::vector<pollfd> fds;
  for (auto& c : s.contexts) {
    if (c->outstanding == 0) continue;
    for (auto& qp : c->qpairs) {
      if (qp->outstanding() == 0) continue;
      if (!qp->ArmEvent()) return;
      fds.push_back({qp->event_fd(), POLLIN, 0});
    }
  }
  const int block_ms = s.options.mode == WaitMode::kHybrid ? static_cast<int>(SpinBudget::kBlockNanos / 1'000'000) : 100;
  if (!fds.empty()) (void)::poll(fds.data(), fds.size(), block_ms);
}

void PerfWorker::Run(std::latch& ready) {
  State& s = *s_;
  char thread_name[16];
  std::snprintf(thread_name, sizeof(thread_name), "perf-core%u", s.core);
  pthread_setname_np(pthread_self(), thread_name);
  shm::CoreSet core;
  core.Add(s.core);
  Status pinned = core.ApplyToThisThread();
  if (!pinned && s.control->Fail())
    std::fprintf(stderr, "nvmux-perf: -c: cannot pin the worker of core %u: %s\n", s.core, pinned.error().message.c_str());
  ready.count_down();
  s.control->WaitWhileSetup();

  bool measuring = false;
  bool stopping = s.control->phase() == RunPhase::kStop;
  int64_t drain_deadline = MonotonicNanos() + kDrainTimeoutNs;
  if (!stopping) {
    if (s.control->phase() == RunPhase::kMeasure) {
      int64_t now = MonotonicNanos();
      for (auto& c : s.contexts) c->StartMeasuring(now);
      measuring = true;
      s.cpu_start_ns = ThreadCpuNanos();
    }
    for (auto& c : s.contexts) c->SubmitInitial();
  }
  while (true) {
    if (!stopping) {
      RunPhase phase = s.control->phase();
      if (phase == RunPhase::kMeasure && !measuring) {
        int64_t now = MonotonicNanos();
        for (auto& c : s.contexts) c->StartMeasuring(now);
        measuring = true;
        s.cpu_start_ns = ThreadCpuNanos();
      } else if (phase == RunPhase::kStop) {
        int64_t now = MonotonicNanos();
        for (auto& c : s.contexts) c->Stop(now);
        if (s.cpu_start_ns >= 0) s.cpu_ns = ThreadCpuNanos() - s.cpu_start_ns;
        stopping = true;
        drain_deadline = now + kDrainTimeoutNs;
      }
    }
    uint64_t outstanding = 0;
    const uint64_t completed_before = s.completed.load(std::memory_order_relaxed);
    for (auto& c : s.contexts) outstanding += c->Poll();
    if (outstanding == 0) break;
    if (s.options.mode != WaitMode::kPoll && !stopping) WaitForEvents(s, completed_before);
    if (stopping && MonotonicNanos() > drain_deadline) {
      std::fprintf(stderr,
                   "nvmux-perf: core %u: %" PRIu64 " I/Os still outstanding after 10 s of draining; "
                   "they are aborted when the queue pairs are freed\n",
                   s.core, outstanding);
      s.control->Fail();
      break;
    }
  }
  if (s.cpu_ns == 0 && s.cpu_start_ns >= 0) s.cpu_ns = ThreadCpuNanos() - s.cpu_start_ns;  // -d ended it
  int64_t now = MonotonicNanos();
  for (auto& c : s.contexts) {
    c->Stop(now);
    for (auto& qp : c->qpairs) s.qpair_reports.push_back({c->target.name, s.core, qp->id(), qp->statistics()});
  }
  s.finished.store(true, std::memory_order_release);
}

std::vector<PerfResult> PerfWorker::TakeResults(bool keep_histogram) {
  std::vector<PerfResult> results;
  for (auto& c : s_->contexts) {
    double elapsed = c->measured ? static_cast<double>(c->end_ns - c->start_ns) / kNsPerSecond : 0.0;
    LatencyHistogram histogram = c->measured ? std::move(c->histogram) : LatencyHistogram();
    results.push_back(PerfResult::FromHistogram(c->target.name, s_->core, s_->options.io_size_bytes, elapsed,
                                                std::move(histogram), keep_histogram));
  }
  return results;
}

std::vector<QpairReport> PerfWorker::QpairReports() const { return s_->qpair_reports; }

double PerfWorker::cpu_seconds() const { return static_cast<double>(s_->cpu_ns) / 1e9; }

uint64_t PerfWorker::io_errors() const {
  uint64_t n = 0;
  for (const auto& c : s_->contexts) n += c->errors;
  return n;
}

}  // namespace nvmux::perf
