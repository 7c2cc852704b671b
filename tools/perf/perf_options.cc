#include "tools/perf/perf_options.h"

#include <CLI/CLI.hpp>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "shm/group_paths.h"

namespace nvmux::perf {
namespace {

constexpr uint32_t kMaxQueueDepth = 65536;  // entries of the largest NVMe queue
constexpr uint32_t kCacheLine = 64;

// "-q 0: queue depth must be at least 1": the message every check builds.
Error Bad(std::string_view option, std::string_view value, const std::string& why) {
  return Fail(EINVAL, std::string(option) + " " + (value.empty() ? std::string("''") : std::string(value)) +
                          ": " + why);
}

// Decimal, or hex with 0x. No sign, no spaces, no trailing text.
bool ParseNumber(std::string_view s, uint64_t& out) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// A whole number in [min, max]; `what` says what the option means.
Result<uint64_t> ParseCount(std::string_view option, std::string_view text, const char* what, uint64_t min,
                            uint64_t max) {
  uint64_t v = 0;
  std::string range = std::to_string(min) + ".." + std::to_string(max);
  if (!ParseNumber(text, v)) return Bad(option, text, std::string(what) + " must be a whole number " + range);
  if (v < min && min == 1) return Bad(option, text, std::string(what) + " must be at least 1");
  if (v < min || v > max) return Bad(option, text, std::string(what) + " must be " + range);
  return v;
}

uint32_t ToU32(uint64_t v) { return static_cast<uint32_t>(v); }

bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// CLI11 says "--io-depth: 1 required N missing"; say it plainly.
std::string DescribeParseError(const CLI::ParseError& e) {
  std::string what = e.what();
  if (what.find("required") != std::string::npos && what.find("missing") != std::string::npos) {
    return what.substr(0, what.find(':')) + ": needs a value (see --help)";
  }
  return what + " (see --help)";
}

// The raw text of every option, as given; parsed and checked after CLI11.
struct RawArgs {
  std::string q, o, w, M, t, a, d, F, c, i, P, io_queue_size, O, A, C, Q, s, e, lba_range, mode, hybrid_spin_us;
  std::vector<std::string> r;
  int L = 0;
  bool N = false, transport_stats = false, json = false, verify = false, live = false, no_live = false;
  bool use_cmb_sqs = false;
  bool no_shadow_doorbells = false;
  bool cpu_stats = false;
  bool header_digest = false, data_digest = false;
};

struct Cli {
  CLI::App app{"nvmux-perf: NVMe I/O performance test over nvmux (the options of SPDK's spdk_nvme_perf)",
               "nvmux-perf"};
  RawArgs raw;
};

void Setup(Cli& cli) {
  CLI::App& app = cli.app;
  RawArgs& r = cli.raw;
  // One value per option; given twice, the last wins (as with getopt).
  auto one = [](const char* type, CLI::Option* opt) {
    opt->type_name(type)->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  };
  one("N", app.add_option("-q,--io-depth", r.q, "queue depth per (namespace, core), 1..65536 (required)"));
  one("SIZE", app.add_option("-o,--io-size", r.o, "I/O size in bytes, k/m/g suffixes: 512, 4k, 128K, 1m (required)"));
  one("PATTERN", app.add_option("-w,--io-pattern", r.w, "read, write, randread, randwrite, rw or randrw (required)"));
  one("PCT", app.add_option("-M,--rwmixread", r.M, "percentage of reads 0..100 (required with rw and randrw)"));
  one("SEC", app.add_option("-t,--time", r.t, "test time in seconds (required)"));
  one("SEC", app.add_option("-a,--warmup-time", r.a, "warm-up seconds before measuring (default 0)"));
  one("N|N%", app.add_option("-d,--number-ios", r.d,
                      "stop each (namespace, core) after N I/Os, or N% of the namespace (default: no limit)"));
  one("THETA", app.add_option("-F,--zipf", r.F, "zipf theta > 0 for the random workloads (default: uniform)"));
  one("START:COUNT", app.add_option("--lba-range", r.lba_range,
                      "START:COUNT: only blocks [START, START+COUNT) of each namespace (default: all)"));
  app.add_flag("-H,--header-digest", r.header_digest, "NVMe/TCP: CRC32C header digests (as spdk_nvme_perf -H)");
  app.add_flag("-I,--data-digest", r.data_digest, "NVMe/TCP: CRC32C data digests (as spdk_nvme_perf -I)");
  app.add_flag("--verify", r.verify, "write self-checking blocks (LBA, sequence, CRC32C) and check every read");
  one("CORES", app.add_option("-c,--core-mask", r.c, "cores: hex mask 0x3 or list [0-1], 0,1 (default 0x1)"));
  app.add_option("-r,--transport", r.r,
                 "transport id, repeatable, e.g. 'trtype:vfiouser traddr:/tmp/emu' (required unless -i)")
      ->type_name("TRID")
      ->allow_extra_args(false);  // one value per -r, as getopt: "-r A stray" is an error
  one("ID", app.add_option("-i,--shmem-grp-id", r.i, "join shared-memory group N (run nvmuxd -i N first)"));
  one("N", app.add_option("-P,--num-qpairs", r.P, "I/O queue pairs per namespace (default 1)"));
  one("N", app.add_option("--io-queue-size", r.io_queue_size, "I/O queue entries (default: the controller's maximum)"));
  one("SIZE", app.add_option("-O,--io-unit-size", r.O, "I/O unit size in bytes, a multiple of 4 (default: the I/O size)"));
  one("SIZE", app.add_option("-A,--buffer-alignment", r.A, "I/O buffer alignment, a power of two >= 64 (default 512)"));
  one("N", app.add_option("-C,--max-completion-per-poll", r.C, "completions per poll, 0 = unlimited (default 0)"));
  one("MB", app.add_option("-s,--hugemem-size", r.s, "memory size in MB (default: as needed)"));
  one("PI", app.add_option("-e,--metadata", r.e,
                      "protection information: 'PRACT=0|1,PRCHK=GUARD|REFTAG|APPTAG' or "
                      "'PRACT,PRCHK_GUARD,PRCHK_REFTAG,PRCHK_APPTAG'"));
  app.add_flag("-N,--no-shst-notification", r.N, "skip the shutdown notification when detaching");
  one("N", app.add_option("-Q,--continue-on-error", r.Q, "keep going after I/O errors, log every Nth (N >= 1)"));
  app.add_flag("-L,--enable-sw-latency-tracking", r.L, "-L: latency percentiles; -LL: also the histogram");
  app.add_flag("--transport-stats", r.transport_stats, "print transport statistics at the end");
  app.add_flag("--no-shadow-doorbells", r.no_shadow_doorbells,
               "write every doorbell, never configuring shadow doorbells (as SPDK on vfio-user; a group's nvmuxd "
               "decides for it)");
  app.add_flag("--use-cmb-sqs", r.use_cmb_sqs,
               "pcie: I/O submission queues in the controller's Controller Memory Buffer when it has one that can "
               "hold them (else host memory, said per queue pair); in a group nvmuxd must run with --use-cmb-sqs");
  one("MODE", app.add_option("--mode", r.mode,
                             "how workers wait for completions: poll (spin, default), event (block on the queue "
                             "pairs' interrupt eventfds), hybrid (spin --hybrid-spin-us after the last completion, "
                             "then block)"));
  one("US", app.add_option("--hybrid-spin-us", r.hybrid_spin_us, "hybrid mode's spin budget in microseconds (default 50; less while spinning does not pay, see spin_budget.h)"));
  app.add_flag("--cpu-stats", r.cpu_stats,
               "print the CPU time the workers used while measuring: seconds, share of a core, microseconds per I/O");
  app.add_flag("--json", r.json, "print the results as JSON on stdout instead of the table");
  app.add_flag("--live", r.live, "print a progress line every second (default: when stdout is a terminal)");
  app.add_flag("--no-live", r.no_live, "never print the progress line");
  app.footer(
      "Examples:\n"
      "  nvmux-perf -q 32 -o 4k -w randread -t 10 -r 'trtype:vfiouser traddr:/tmp/emu'\n"
      "  nvmux-perf -q 16 -o 128k -w rw -M 70 -t 30 -a 5 -c 0x3 -LL -r 'trtype:vfiouser traddr:/tmp/emu'\n"
      "  nvmux-perf -i 1 -q 8 -o 4k -w randwrite -F 1.2 -t 10 --lba-range 0:1048576 --verify\n"
      "  nvmux-perf -i 1 -q 8 -o 4k -w randread -t 10 --lba-range 1048576:1048576 --json\n"
      "With -i the process joins the group started by nvmuxd -i N; -r then selects among its controllers.");
}

// Everything after CLI11: each value, then the rules between options.
Result<PerfOptions> Validate(const Cli& cli) {
  const RawArgs& r = cli.raw;
  auto given = [&](const char* name) { return cli.app.get_option(name)->count() > 0; };
  PerfOptions o;

  if (!given("-q")) return Fail(EINVAL, "missing -q <queue depth>");
  auto q = ParseCount("-q", r.q, "queue depth", 1, kMaxQueueDepth);
  if (!q) return q.error();
  o.queue_depth = ToU32(*q);

  if (!given("-o")) return Fail(EINVAL, "missing -o <I/O size in bytes, e.g. 4k>");
  auto io = ParseByteSize("-o", r.o);
  if (!io) return io.error();
  if (*io == 0) return Bad("-o", r.o, "I/O size must be greater than 0");
  if (*io > std::numeric_limits<uint32_t>::max()) return Bad("-o", r.o, "I/O size must be below 4g");
  o.io_size_bytes = ToU32(*io);

  if (!given("-w")) return Fail(EINVAL, "missing -w <read|write|randread|randwrite|rw|randrw>");
  auto w = ParseWorkload(r.w);
  if (!w) return w.error();
  o.workload = *w;

  bool mixed = o.workload == Workload::kRw || o.workload == Workload::kRandRw;
  if (given("-M")) {
    if (!mixed) {
      return Bad("-M", r.M, "-M requires -w rw or randrw (got -w " + std::string(ToString(o.workload)) + ")");
    }
    auto m = ParseCount("-M", r.M, "read percentage", 0, 100);
    if (!m) return m.error();
    o.read_percent = static_cast<int>(*m);
  } else if (mixed) {
    return Fail(EINVAL, "-w " + std::string(ToString(o.workload)) + " needs -M <read percentage 0..100>");
  } else {
    bool reads = o.workload == Workload::kRead || o.workload == Workload::kRandRead;
    o.read_percent = reads ? 100 : 0;
  }

  if (!given("-t")) return Fail(EINVAL, "missing -t <seconds>");
  auto t = ParseCount("-t", r.t, "time in seconds", 1, 100'000'000);
  if (!t) return t.error();
  o.time_seconds = ToU32(*t);

  if (given("-a")) {
    auto a = ParseCount("-a", r.a, "warm-up seconds", 0, 100'000'000);
    if (!a) return a.error();
    o.warmup_seconds = ToU32(*a);
  }

  if (given("-d")) {
    if (!r.d.empty() && r.d.back() == '%') {
      auto pct = ParseCount("-d", std::string_view(r.d).substr(0, r.d.size() - 1), "percentage of the namespace",
                            1, 100'000);
      if (!pct) return Bad("-d", r.d, "must be a number of I/Os (e.g. 100000 or 1m) or a percentage >= 1% "
                                      "of the namespace (e.g. 50%)");
      o.number_ios_percent = ToU32(*pct);
    } else {
      auto n = ParseByteSize("-d", r.d);
      if (!n || *n == 0) {
        return Bad("-d", r.d, "must be a number of I/Os >= 1 (k/m/g suffixes allowed) or a percentage of "
                              "the namespace (e.g. 50%)");
      }
      if (*n < o.queue_depth) {
        return Bad("-d", r.d, "must be at least the queue depth (-q " + std::to_string(o.queue_depth) + ")");
      }
      o.number_ios = *n;
    }
    if (o.warmup_seconds > 0) return Bad("-d", r.d, "-d cannot be combined with a warm-up (-a)");
  }

  if (given("-F")) {
    char* end = nullptr;
    errno = 0;
    double theta = std::strtod(r.F.c_str(), &end);
    if (r.F.empty() || errno != 0 || *end != '\0' || !std::isfinite(theta) || theta < 0) {
      return Bad("-F", r.F, "zipf theta must be a number >= 0 (e.g. 1.2)");
    }
    if (theta > 0 && !IsRandom(o.workload)) {
      return Bad("-F", r.F, "zipf needs a random workload (-w randread, randwrite or randrw; got -w " +
                                std::string(ToString(o.workload)) + ")");
    }
    o.zipf_theta = theta;
  }

  if (given("--lba-range")) {
    auto range = ParseLbaRange("--lba-range", r.lba_range);
    if (!range) return range.error();
    o.lba_range = *range;
  }
  o.verify = r.verify;
  o.use_cmb_sqs = r.use_cmb_sqs;
  o.shadow_doorbells = !r.no_shadow_doorbells;
  o.header_digest = r.header_digest;
  o.data_digest = r.data_digest;

  if (given("-c")) {
    auto cores = shm::CoreSet::Parse(r.c);
    if (!cores) return Fail(EINVAL, "-c " + r.c + ": " + cores.error().message);
    o.cores = *cores;
  } else {
    o.cores.Add(0);
  }

  for (const std::string& trid : r.r) {
    if (trid.find_first_not_of(" \t") == std::string::npos) {
      return Bad("-r", trid, "transport id must not be empty (e.g. 'trtype:vfiouser traddr:/tmp/emu')");
    }
  }
  o.transport_ids = r.r;

  if (given("-i")) {
    auto id = ParseCount("-i", r.i, "group id", 0, shm::kMaxGroupId);
    if (!id) return id.error();
    o.group_id = static_cast<int>(*id);
  }
  if (o.transport_ids.empty() && !o.group_id) {
    return Fail(EINVAL, "missing -r <transport id> (or -i <group id> to use the group's controllers)");
  }

  if (given("-P")) {
    auto p = ParseCount("-P", r.P, "queue pairs per namespace", 1, 65535);
    if (!p) return p.error();
    o.qpairs_per_ns = ToU32(*p);
  }
  if (given("--io-queue-size")) {
    auto n = ParseCount("--io-queue-size", r.io_queue_size, "I/O queue size in entries", 2, 65536);
    if (!n) return n.error();
    o.io_queue_size = ToU32(*n);
  }
  if (given("-O")) {
    auto n = ParseByteSize("-O", r.O);
    if (!n) return n.error();
    if (*n == 0 || *n % 4 != 0 || *n > std::numeric_limits<uint32_t>::max()) {
      return Bad("-O", r.O, "I/O unit size must be a multiple of 4 bytes, greater than 0 and below 4g");
    }
    o.io_unit_size = ToU32(*n);
  }
  if (given("-A")) {
    auto n = ParseByteSize("-A", r.A);
    if (!n) return n.error();
    if (!IsPowerOfTwo(*n) || *n < kCacheLine || *n > (1u << 30)) {
      return Bad("-A", r.A, "buffer alignment must be a power of two from 64 (a cache line) to 1g");
    }
    o.buffer_alignment = ToU32(*n);
  }
  if (given("-C")) {
    auto n = ParseCount("-C", r.C, "completions per poll", 0, std::numeric_limits<uint32_t>::max());
    if (!n) return n.error();
    o.max_completions = ToU32(*n);
  }
  if (given("-s")) {
    auto n = ParseCount("-s", r.s, "memory size in MB", 1, 1u << 24);
    if (!n) return n.error();
    o.mem_size_mb = ToU32(*n);
  }
  if (given("-e")) {
    auto pi = ParsePiFlags("-e", r.e);
    if (!pi) return pi.error();
    o.pi = *pi;
  }
  o.no_shutdown_notification = r.N;
  if (given("-Q")) {
    auto n = ParseCount("-Q", r.Q, "error log interval", 1, std::numeric_limits<uint32_t>::max());
    if (!n) return n.error();
    o.continue_on_error = true;
    o.error_log_every = ToU32(*n);
  }
  if (r.L > 2) return Fail(EINVAL, "-L given " + std::to_string(r.L) + " times: allowed -L or -LL");
  o.latency_tracking = r.L;
  o.transport_stats = r.transport_stats;
  o.json = r.json;
  if (given("--mode")) {
    if (r.mode == "poll") o.mode = WaitMode::kPoll;
    else if (r.mode == "event") o.mode = WaitMode::kEvent;
    else if (r.mode == "hybrid") o.mode = WaitMode::kHybrid;
    else return Bad("--mode", r.mode, "allowed poll, event or hybrid");
  }
  if (given("--hybrid-spin-us")) {
    auto n = ParseCount("--hybrid-spin-us", r.hybrid_spin_us, "spin budget in microseconds", 0, 10'000'000);
    if (!n) return n.error();
    o.hybrid_spin_us = ToU32(*n);
  }
  o.cpu_stats = r.cpu_stats;
  if (r.live && r.no_live) return Fail(EINVAL, "--live and --no-live exclude each other");
  o.live = r.live ? LiveMode::kOn : r.no_live ? LiveMode::kOff : LiveMode::kAuto;
  return o;
}

}  // namespace

std::string_view ToString(Workload workload) {
  switch (workload) {
    case Workload::kRead: return "read";
    case Workload::kWrite: return "write";
    case Workload::kRandRead: return "randread";
    case Workload::kRandWrite: return "randwrite";
    case Workload::kRw: return "rw";
    case Workload::kRandRw: return "randrw";
  }
  return "?";
}

bool IsRandom(Workload workload) {
  return workload == Workload::kRandRead || workload == Workload::kRandWrite || workload == Workload::kRandRw;
}

Result<Workload> ParseWorkload(std::string_view text) {
  for (Workload w : {Workload::kRead, Workload::kWrite, Workload::kRandRead, Workload::kRandWrite, Workload::kRw,
                     Workload::kRandRw}) {
    if (text == ToString(w)) return w;
  }
  return Bad("-w", text, "allowed read, write, randread, randwrite, rw, randrw");
}

Result<uint64_t> ParseByteSize(std::string_view option, std::string_view text) {
  std::string_view digits = text;
  unsigned shift = 0;
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'k': case 'K': shift = 10; break;
      case 'm': case 'M': shift = 20; break;
      case 'g': case 'G': shift = 30; break;
      default: break;
    }
    if (shift != 0) digits.remove_suffix(1);
  }
  uint64_t v = 0;
  if (!ParseNumber(digits, v)) {
    return Bad(option, text, "must be a byte count with an optional k, m or g suffix (e.g. 4k = 4096)");
  }
  if (shift != 0 && v > (std::numeric_limits<uint64_t>::max() >> shift)) return Bad(option, text, "too large");
  return v << shift;
}

Result<LbaRange> ParseLbaRange(std::string_view option, std::string_view text) {
  size_t colon = text.find(':');
  LbaRange range;
  if (colon == std::string_view::npos || !ParseNumber(text.substr(0, colon), range.start) ||
      !ParseNumber(text.substr(colon + 1), range.count)) {
    return Bad(option, text, "expected START:COUNT in blocks, e.g. 0:1048576");
  }
  if (range.count == 0) return Bad(option, text, "COUNT must be at least 1 block");
  if (range.start > std::numeric_limits<uint64_t>::max() - range.count) {
    return Bad(option, text, "START + COUNT overflows 64 bits");
  }
  return range;
}

Result<PiFlags> ParsePiFlags(std::string_view option, std::string_view text) {
  PiFlags pi;
  auto check = [&](std::string_view name) -> bool {
    if (name == "GUARD") pi.prchk_guard = true;
    else if (name == "REFTAG") pi.prchk_reftag = true;
    else if (name == "APPTAG") pi.prchk_apptag = true;
    else return false;
    return true;
  };
  const std::string allowed =
      "allowed PRACT=0|1 and PRCHK=GUARD|REFTAG|APPTAG, or the flags PRACT, PRCHK_GUARD, PRCHK_REFTAG, "
      "PRCHK_APPTAG, separated by commas";
  if (text.empty()) return Bad(option, text, allowed);
  std::string_view rest = text;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (item.empty()) continue;
    size_t eq = item.find('=');
    std::string_view key = item.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
    bool ok = false;
    if (eq == std::string_view::npos) {
      if (key == "PRACT") ok = pi.pract = true;
      else if (key.starts_with("PRCHK_")) ok = check(key.substr(6));
    } else if (key == "PRACT" && (value == "0" || value == "1")) {
      pi.pract = value == "1";
      ok = true;
    } else if (key == "PRCHK" && !value.empty()) {
      ok = true;
      while (ok && !value.empty()) {
        size_t bar = value.find('|');
        ok = check(value.substr(0, bar));
        value = bar == std::string_view::npos ? std::string_view() : value.substr(bar + 1);
      }
    }
    if (!ok) return Bad(option, text, "'" + std::string(item) + "' is not understood; " + allowed);
  }
  return pi;
}

Result<PerfCommandLine> ParsePerfCommandLine(int argc, const char* const* argv) {
  Cli cli;
  Setup(cli);
  PerfCommandLine out;
  try {
    cli.app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    out.help_requested = true;
    out.help_text = cli.app.help();
    return out;
  } catch (const CLI::ParseError& e) {
    return Fail(EINVAL, DescribeParseError(e));
  } catch (const std::exception& e) {  // CLI11 setup errors: a bug here, still not thrown to the caller
    return Fail(EINVAL, std::string("command line: ") + e.what());
  }
  auto options = Validate(cli);
  if (!options) return options.error();
  out.options = std::move(*options);
  return out;
}

Result<PerfOptions> ParsePerfOptions(int argc, const char* const* argv) {
  auto parsed = ParsePerfCommandLine(argc, argv);
  if (!parsed) return parsed.error();
  if (parsed->help_requested) return Fail(EINVAL, "-h/--help: not available here");
  return std::move(parsed->options);
}

std::string PerfHelpText() {
  Cli cli;
  Setup(cli);
  return cli.app.help();
}

bool ShouldPrintLive(const PerfOptions& options, bool stdout_is_terminal) {
  switch (options.live) {
    case LiveMode::kOn: return true;
    case LiveMode::kOff: return false;
    case LiveMode::kAuto: return stdout_is_terminal && !options.json;
  }
  return false;
}

Result<uint32_t> IoSizeInBlocks(const PerfOptions& options, uint32_t block_size) {
  if (block_size == 0) return Fail(EINVAL, "namespace block size 0 is invalid");
  if (options.io_size_bytes == 0 || options.io_size_bytes % block_size != 0) {
    return Bad("-o", std::to_string(options.io_size_bytes),
               "I/O size must be a multiple of the namespace block size (" + std::to_string(block_size) +
                   " bytes)");
  }
  return options.io_size_bytes / block_size;
}

const char* WaitModeName(WaitMode mode) {
  switch (mode) {
    case WaitMode::kPoll: return "poll";
    case WaitMode::kEvent: return "event";
    case WaitMode::kHybrid: return "hybrid";
  }
  return "?";
}

}  // namespace nvmux::perf
