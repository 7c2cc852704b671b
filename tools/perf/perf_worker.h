// PerfWorker: one nvmux-perf worker — the I/O loop of one core over the
// namespaces assigned to it (SPDK perf's worker_thread with its
// ns_worker_ctx list), and RunControl, what the workers and the main thread
// share.
//
// Per (namespace, worker) a worker keeps -P queue pairs, -q tasks with their
// DMA buffers (carved from one allocation, each at least 4 KiB aligned or -A
// if larger), an IoPattern and a LatencyHistogram. A task is resubmitted from
// its own completion callback, so nothing is allocated on the I/O path;
// submissions go to the namespace's queue pairs in turn and are rung once per
// ProcessCompletions (delay_cmd_submit).
//
// --verify: a write fills its buffer with FillVerifyBlocks (per block: LBA,
// sequence number, CRC32C); a read checks it with CheckVerifyBlocks. A read
// accepts a block never written (all zeros) and any intact block of that LBA
// (a previous run's writes included), unless the worker knows better: when
// the workload mixes reads and writes (rw, randrw) and the namespace is used
// by this worker alone, it keeps a per-slot map in private memory (12 bytes
// per I/O slot, at most 8 Mi slots) with the lowest sequence number the slot
// can hold once its writes completed, and a read submitted after that must
// find a block of this run with a sequence number at least that high — a lost
// or stale write is caught, not just a damaged block. Writes to one slot that
// overlap in time count as a batch (any of them may land last), and a failed
// write leaves the slot's bound where it was. Other processes writing the
// same LBAs (for example perf processes of one group without disjoint
// --lba-range) are not accounted for.
//
// Errors: the first I/O error (status, or a verify mismatch) stops the run
// through RunControl::Fail() with one message on stderr naming the LBA and
// the status or the mismatch, unless -Q is given: then errors are counted and
// every Nth is printed (ErrorLogLimiter). A failed queue pair or controller
// stops the run with or without -Q.
//
// Thread safety: Create() and the accessors marked "after Run" on the main
// thread; Run() on the worker's own thread; completed() and finished() from
// any thread. Ownership: the Env and the controllers outlive the worker;
// destroying it frees its queue pairs first, then its buffers.
#pragma once

#include <atomic>
#include <cstdint>
#include <latch>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "nvmux/controller.h"
#include "nvmux/env.h"
#include "shm/base/result.h"
#include "tools/perf/perf_options.h"
#include "tools/perf/perf_report.h"

namespace nvmux::perf {

// The run's phases, in order; a phase is never left for an earlier one.
enum class RunPhase : int {
  kSetup,    // workers are pinned and wait
  kWarmup,   // -a: I/O runs, nothing is measured yet
  kMeasure,  // the measured -t seconds
  kStop,     // time is up, Ctrl-C, or an error: drain and finish
};
std::string_view ToString(RunPhase phase);

// Shared by the main thread and every worker.
class RunControl {
 public:
  RunPhase phase() const { return static_cast<RunPhase>(phase_.load(std::memory_order_acquire)); }
  // Moves to `phase` if that is later than the current one (a failure's
  // kStop is never undone by the main thread's timer) and wakes waiters.
  void Advance(RunPhase phase);
  // Blocks while the phase is kSetup.
  void WaitWhileSetup() const;
  // Marks the run failed and stops it. Returns true for the first caller
  // only: that caller prints the message, later failures stay quiet.
  bool Fail();
  bool failed() const { return failed_.load(std::memory_order_acquire); }

 private:
  std::atomic<int> phase_{static_cast<int>(RunPhase::kSetup)};
  std::atomic<bool> failed_{false};
};

// One namespace as the main thread resolved it for a worker.
struct PerfTarget {
  Controller* controller = nullptr;  // borrowed; outlives the worker
  const Namespace* ns = nullptr;     // borrowed; owned by the controller
  std::string name;                  // "VFIOUSER (/tmp/x) NSID 1"
  LbaRange range;                    // resolved: holds at least one I/O
  uint32_t io_blocks = 1;            // -o in blocks (extended blocks on extended-LBA namespaces)
  uint32_t sharers = 1;              // workers of this process using the namespace
  uint32_t sharer_index = 0;         // this worker's place among them (staggers sequential starts)
};

// One queue pair's counters at the end of the run (--transport-stats).
struct QpairReport {
  std::string ns_name;
  uint32_t core = 0;
  uint16_t qpair_id = 0;
  QpairStatistics stats;
};

class PerfWorker {
 public:
  // Allocates the worker's queue pairs (-P per target, --io-queue-size
  // clamped to 2..CAP.MQES+1, enough requests for -q split I/Os) and its
  // DMA buffers, and builds an IoPattern per target. Errors: those of
  // Controller::AllocIoQpair (ENOSPC: no free queue id) and Env::AllocDma
  // (ENOMEM), each prefixed with the namespace's name; EINVAL when the
  // pattern cannot be built.
  [[nodiscard]] static Result<std::unique_ptr<PerfWorker>> Create(Env& env, const PerfOptions& options,
                                                                 uint32_t core, std::vector<PerfTarget> targets,
                                                                 RunControl& control);
  ~PerfWorker();
  PerfWorker(const PerfWorker&) = delete;
  PerfWorker& operator=(const PerfWorker&) = delete;

  // The thread body: pins the thread to core(), counts down `ready`, waits
  // for the phase to leave kSetup, then submits and polls until the phase
  // is kStop (or every target reached its -d count), and drains the
  // outstanding I/O (giving up after 10 s with a message). A pinning
  // failure fails the run (RunControl::Fail) before any I/O.
  void Run(std::latch& ready);

  uint32_t core() const;
  // I/Os completed since the start, warm-up included (for the live line).
  uint64_t completed() const;
  // True once Run() has returned.
  bool finished() const;

  // After Run: one result per target (elapsed = the measured time; a run
  // stopped during the warm-up measured nothing). keep_histogram for -L/-LL.
  std::vector<PerfResult> TakeResults(bool keep_histogram);
  // After Run: each queue pair's statistics, taken when it was drained.
  std::vector<QpairReport> QpairReports() const;
  // After Run: the worker thread's CPU time (user + system) while
  // measuring, for --cpu-stats.
  double cpu_seconds() const;
  // After Run: I/O errors and verify mismatches counted (with -Q, all of them).
  uint64_t io_errors() const;

  struct State;

 private:
  explicit PerfWorker(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

}  // namespace nvmux::perf
