// nvmux-perf's results: SPDK perf's final table, its -L percentile summary
// and -LL histogram, the once-a-second progress line, and the same numbers as
// JSON.
//
// Every number printed comes from Summarize(), so the table and the JSON
// agree (the table rounds to 2 decimals, the JSON keeps 3).
// Rows: IOPS = ios / elapsed, MiB/s = bytes / elapsed / 2^20, latencies in
// microseconds. Total: IOPS and MiB/s summed, average weighted by I/O count,
// min of the mins, max of the maxes. Results that completed no I/O are left
// out of the rows and the total, as SPDK does (their names still set the
// column width).
//
// Thread safety: pure functions over values; call them after the workers
// have stopped.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tools/perf/latency_histogram.h"

namespace nvmux::perf {

// What one (namespace, core) worker measured.
struct PerfResult {
  std::string name;              // "VFIOUSER (/tmp/x) NSID 1"
  uint32_t core = 0;
  uint64_t ios = 0;              // completed I/Os
  uint64_t bytes = 0;            // bytes of those I/Os
  double elapsed_seconds = 0;    // measured time (after any warm-up)
  uint64_t latency_min_ns = 0;
  uint64_t latency_max_ns = 0;
  double latency_avg_ns = 0;
  // Needed for -L / -LL and the JSON percentiles; results without one print
  // an empty summary, as SPDK does for a worker that tracked nothing.
  std::optional<LatencyHistogram> histogram;

  // The usual way to build one: min/avg/max and ios from the histogram
  // (which tracks them exactly), bytes = ios * io_size_bytes. keep_histogram
  // moves it into the result (for -L/-LL).
  static PerfResult FromHistogram(std::string name, uint32_t core, uint32_t io_size_bytes, double elapsed_seconds,
                                  LatencyHistogram histogram, bool keep_histogram);
};

// One printed row, in the table's units.
struct PerfRow {
  std::string name;  // empty for the total
  uint32_t core = 0;
  size_t result_index = 0;  // the PerfResult this row shows (0 for the total)
  uint64_t ios = 0;
  double iops = 0;
  double mib_per_second = 0;
  double avg_us = 0;
  double min_us = 0;
  double max_us = 0;
};

struct PerfSummary {
  std::vector<PerfRow> rows;  // results with ios > 0, in input order
  std::optional<PerfRow> total;  // set when any row exists
  size_t name_width = 0;      // longest name of all results
};

PerfSummary Summarize(std::span<const PerfResult> results);

// The final table exactly in SPDK's shape:
//   ========================================================
//                                                      Latency(us)
//   Device Information                     :       IOPS      MiB/s    Average        min        max
//   VFIOUSER (/tmp/x) NSID 1 from core  0:   123456.78     482.25       8.10       2.00     120.00
//   ========================================================
//   Total                                  :   123456.78     482.25       8.10       2.00     120.00
//   <empty line>
// The total lines and the empty line are printed only when some I/O completed.
std::string FormatTable(std::span<const PerfResult> results);

// The percentile cutoffs SPDK's -L prints, as fractions (1% .. 99.99999%).
std::span<const double> SummaryCutoffs();

// -L: "Summary latency data for <name> from core N:" and one
// "%9.5f%% : %9.3fus" line per cutoff, for every result.
std::string FormatLatencySummary(std::span<const PerfResult> results);

// -LL: "Latency histogram for <name> from core N:" and one
// "start - end: cumulative%  (count)" line per non-empty bucket.
std::string FormatLatencyHistogram(std::span<const PerfResult> results);

// What the caller prints at the end for -L level 0, 1 or 2: the table, then
// the summary (level >= 1), then the histogram (level 2).
std::string FormatReport(std::span<const PerfResult> results, int latency_level);

// The progress line: "%9ju IOPS, %8.2f MiB/s", "[warmup] " first during the
// warm-up. ios and bytes are those of the last interval, scaled to one second.
// No '\r' or '\n': the caller decides how to show it (terminal, stderr).
std::string FormatLiveLine(uint64_t interval_ios, uint64_t interval_bytes, double interval_seconds, bool warmup);

// -Q N's rate limit on I/O error messages, as SPDK's RATELIMIT_LOG: the 1st,
// (N+1)th, (2N+1)th ... message is printed, the ones after the first with
// "Message suppressed N-1 times: " in front; the rest are dropped.
// One per worker thread (SPDK shares one counter across threads, inexactly).
class ErrorLogLimiter {
 public:
  explicit ErrorLogLimiter(uint32_t every) : every_(every == 0 ? 1 : every) {}
  // The line to print for this occurrence of an error, or nullopt to stay
  // quiet. Allocates only when it returns a line.
  std::optional<std::string> Next(std::string_view message);
  uint64_t count() const { return count_; }

 private:
  uint32_t every_;
  uint64_t count_ = 0;
};

// The same numbers as JSON (one object, ending in a newline); "results" are
// the table's rows (results with ios > 0), in the same order:
//   {"results": [{"name", "core", "ios", "bytes", "elapsed_s", "iops",
//                 "mib_per_s", "latency_us": {"avg", "min", "max",
//                 "percentiles": {"50": ...}}, "histogram": [...]}],
//    "total": {"ios", "iops", "mib_per_s", "latency_us": {"avg", "min", "max"}}}
// "percentiles" (keys are the cutoffs in percent, e.g. "99.99") appear from
// latency_level 1 and "histogram" ([{"start_us", "end_us", "count"}]) at 2,
// for results that carry a histogram. "total" is null when no I/O completed.
std::string FormatJson(std::span<const PerfResult> results, int latency_level);

}  // namespace nvmux::perf
