// nvmux-perf command line: the options of SPDK's spdk_nvme_perf, parsed and
// checked for syntax and range before any device is touched.
//
// What is checked here: every value parses, is in range, and the options
// agree with each other (-M only with rw/randrw, -d with -q and -a, -r or -i
// given). What needs the namespace is checked later by the caller, with the
// helpers at the end of this header (I/O size against the block size; the
// --lba-range against the namespace size is io_pattern.h's ResolveLbaRange).
//
// Errors: every failure is EINVAL with a message that names the option, the
// bad value and what is allowed, e.g. "-w foo: allowed read, write, randread,
// randwrite, rw, randrw". Nothing is printed and nothing exits; nothing
// throws to the caller (CLI11's exceptions stay inside the .cc).
//
// Thread safety: values and pure functions.
#pragma once

#include <cstdint>
#include <optional>

#include <string>
#include <string_view>
#include <vector>

#include "shm/base/result.h"
#include "shm/core_set.h"

namespace nvmux::perf {

// -w: the access pattern and the read/write mix it implies.
enum class Workload { kRead, kWrite, kRandRead, kRandWrite, kRw, kRandRw };

// "read", "randrw", ...: the -w spelling.
std::string_view ToString(Workload workload);
// True for randread, randwrite, randrw.
bool IsRandom(Workload workload);
// Parses the -w spelling. Errors: EINVAL "-w foo: allowed read, write, ...".
[[nodiscard]] Result<Workload> ParseWorkload(std::string_view text);

// --lba-range START:COUNT, in logical blocks of the namespace: the I/O stays in
// [start, start + count). Several perf processes of one group can each take a
// disjoint range of the same namespace.
struct LbaRange {
  uint64_t start = 0;
  uint64_t count = 0;
  bool operator==(const LbaRange&) const = default;
};

// -e: end-to-end protection flags for namespaces formatted with PI.
struct PiFlags {
  bool pract = false;         // controller inserts/strips PI
  bool prchk_guard = false;   // check the guard (CRC)
  bool prchk_reftag = false;  // check the reference tag
  bool prchk_apptag = false;  // check the application tag
  bool operator==(const PiFlags&) const = default;
};

// The progress line printed once per second while the test runs.
enum class LiveMode {
  kAuto,  // when stdout is a terminal and --json is not given (SPDK's rule)
  kOn,    // --live: always
  kOff,   // --no-live: never
};

// --mode: how workers wait for completions (nvmux::CompletionMode; kept
// separate so option parsing does not depend on the driver).
enum class WaitMode { kPoll, kEvent, kHybrid };
const char* WaitModeName(WaitMode mode);

struct PerfOptions {
  // Workload.
  uint32_t queue_depth = 0;         // -q, required, >= 1
  uint32_t io_size_bytes = 0;       // -o, required, > 0; checked against the block size later
  Workload workload = Workload::kRead;  // -w, required
  int read_percent = 100;           // -M for rw/randrw (required there); 100 for read, 0 for write
  uint32_t time_seconds = 0;        // -t, required, >= 1
  uint32_t warmup_seconds = 0;      // -a
  uint64_t number_ios = 0;          // -d N: each (namespace, core) stops after N I/Os; 0 = no limit
  uint32_t number_ios_percent = 0;  // -d N%: N percent of the namespace (or range) in I/Os; 0 = unused
  double zipf_theta = 0;            // -F: > 0 selects zipf offsets for the random workloads
  std::optional<LbaRange> lba_range;  // --lba-range; unset = the whole namespace
  bool verify = false;              // --verify: writes carry a header, reads are checked
  bool header_digest = false;       // -H: NVMe/TCP header digests
  bool data_digest = false;         // -I: NVMe/TCP data digests

  // Placement and devices.
  shm::CoreSet cores;                       // -c, default core 0 (SPDK's mask 0x1)
  std::vector<std::string> transport_ids;   // -r, repeatable, kept as given
  std::optional<int> group_id;              // -i: join this shared-memory group
  uint32_t qpairs_per_ns = 1;               // -P, >= 1
  uint32_t io_queue_size = 0;               // --io-queue-size; 0 = the largest the controller allows
  uint32_t io_unit_size = 0;                // -O; 0 = the I/O size; else a multiple of 4
  uint32_t buffer_alignment = 0x200;        // -A, a power of two >= 64
  uint32_t max_completions = 0;             // -C per poll; 0 = unlimited
  uint32_t mem_size_mb = 0;                 // -s; 0 = the default
  PiFlags pi;                               // -e
  bool no_shutdown_notification = false;    // -N (accepted; the detach skips the shutdown notification)
  WaitMode mode = WaitMode::kPoll;          // --mode poll|event|hybrid (IoQpairOptions::mode)
  uint32_t hybrid_spin_us = 50;             // --hybrid-spin-us
  bool cpu_stats = false;                   // --cpu-stats: CPU time of the workers per I/O

  // Errors and output.
  bool continue_on_error = false;   // -Q N given
  uint32_t error_log_every = 1;     // -Q N: log every Nth I/O error (N >= 1)
  int latency_tracking = 0;         // -L: 1 = percentile summary, -LL: 2 = also the histogram
  bool transport_stats = false;     // --transport-stats
  bool use_cmb_sqs = false;         // --use-cmb-sqs: I/O SQs in the controller's CMB (pcie), when usable
  bool shadow_doorbells = true;     // off with --no-shadow-doorbells
  bool json = false;                // --json: results as JSON on stdout instead of the table
  LiveMode live = LiveMode::kAuto;  // --live / --no-live
};

// The outcome of a command line: run with `options`, or print `help_text` to
// stdout and exit 0 (-h/--help).
struct PerfCommandLine {
  bool help_requested = false;
  std::string help_text;  // usage, every option, examples; set when help_requested
  PerfOptions options;    // valid when !help_requested
};

// Parses and validates argv (argv[0] is the program name). -h/--help gives
// help_requested. Errors: EINVAL naming the option and bad value, for unknown
// options and stray arguments too.
[[nodiscard]] Result<PerfCommandLine> ParsePerfCommandLine(int argc, const char* const* argv);

// Same, for callers without a help path (tests, scripts): -h is EINVAL.
[[nodiscard]] Result<PerfOptions> ParsePerfOptions(int argc, const char* const* argv);

// The full --help text ("nvmux-perf" as the program name).
std::string PerfHelpText();

// Text parsers shared with the command line, each naming `option` in errors.
// A byte count with an optional k/K, m/M or g/G suffix (powers of 1024).
[[nodiscard]] Result<uint64_t> ParseByteSize(std::string_view option, std::string_view text);
// "START:COUNT", decimal or 0x hex, COUNT >= 1, no overflow.
[[nodiscard]] Result<LbaRange> ParseLbaRange(std::string_view option, std::string_view text);
// SPDK's "PRACT=0|1,PRCHK=GUARD|REFTAG|APPTAG", or the flag list
// "PRACT,PRCHK_GUARD,PRCHK_REFTAG,PRCHK_APPTAG" (either, mixed, any order).
[[nodiscard]] Result<PiFlags> ParsePiFlags(std::string_view option, std::string_view text);

// Whether to print the once-a-second progress line.
bool ShouldPrintLive(const PerfOptions& options, bool stdout_is_terminal);

// The I/O size in blocks of a namespace. Errors: EINVAL "-o 1000: I/O size
// must be a multiple of the namespace block size (512 bytes)".
[[nodiscard]] Result<uint32_t> IoSizeInBlocks(const PerfOptions& options, uint32_t block_size);

}  // namespace nvmux::perf
