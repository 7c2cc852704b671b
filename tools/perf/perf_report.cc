#include "tools/perf/perf_report.h"

#include <algorithm>
#include <array>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <limits>

#include "tools/common/json_writer.h"

namespace nvmux::perf {
namespace {

constexpr double kNsPerUs = 1000.0;
constexpr double kBytesPerMiB = 1024.0 * 1024.0;

// SPDK perf's g_latency_cutoffs.
constexpr std::array<double, 15> kCutoffs = {0.01,  0.10,  0.25,   0.50,    0.75,     0.90,      0.95,     0.98,
                                             0.99,  0.995, 0.999,  0.9999,  0.99999,  0.999999,  0.9999999};

[[gnu::format(printf, 2, 3)]] void Appendf(std::string& out, const char* format, ...) {
  char stack[512];
  va_list args;
  va_start(args, format);
  int n = std::vsnprintf(stack, sizeof(stack), format, args);
  va_end(args);
  if (n < 0) return;
  if (static_cast<size_t>(n) < sizeof(stack)) {
    out.append(stack, static_cast<size_t>(n));
    return;
  }
  std::string big(static_cast<size_t>(n) + 1, '\0');
  va_start(args, format);
  std::vsnprintf(big.data(), big.size(), format, args);
  va_end(args);
  out.append(big.data(), static_cast<size_t>(n));
}

int Width(size_t w) { return static_cast<int>(std::min<size_t>(w, 4096)); }

double PerSecond(double amount, double seconds) { return seconds > 0 ? amount / seconds : 0.0; }

using tools::JsonWriter;


// "99.99999" / "50" / "1": a cutoff in percent without trailing zeros.
std::string PercentKey(double cutoff) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.5f", cutoff * 100);
  std::string s = buf;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

void LatencyObject(JsonWriter& json, const PerfRow& row) {
  json.Key("latency_us");
  json.BeginObject();
  json.Key("avg");
  json.Value(row.avg_us);
  json.Key("min");
  json.Value(row.min_us);
  json.Key("max");
  json.Value(row.max_us);
}

}  // namespace

PerfResult PerfResult::FromHistogram(std::string name, uint32_t core, uint32_t io_size_bytes, double elapsed_seconds,
                                     LatencyHistogram histogram, bool keep_histogram) {
  PerfResult r;
  r.name = std::move(name);
  r.core = core;
  r.ios = histogram.count();
  r.bytes = r.ios * io_size_bytes;
  r.elapsed_seconds = elapsed_seconds;
  r.latency_min_ns = histogram.min_ns();
  r.latency_max_ns = histogram.max_ns();
  r.latency_avg_ns = histogram.mean_ns();
  if (keep_histogram) r.histogram = std::move(histogram);
  return r;
}

PerfSummary Summarize(std::span<const PerfResult> results) {
  PerfSummary s;
  double iops = 0, mib = 0, weighted_ns = 0;
  uint64_t ios = 0;
  double min_us = std::numeric_limits<double>::infinity(), max_us = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    const PerfResult& r = results[i];
    s.name_width = std::max(s.name_width, r.name.size());
    if (r.ios == 0) continue;
    PerfRow row;
    row.result_index = i;
    row.name = r.name;
    row.core = r.core;
    row.ios = r.ios;
    row.iops = PerSecond(static_cast<double>(r.ios), r.elapsed_seconds);
    row.mib_per_second = PerSecond(static_cast<double>(r.bytes), r.elapsed_seconds) / kBytesPerMiB;
    row.avg_us = r.latency_avg_ns / kNsPerUs;
    row.min_us = static_cast<double>(r.latency_min_ns) / kNsPerUs;
    row.max_us = static_cast<double>(r.latency_max_ns) / kNsPerUs;
    iops += row.iops;
    mib += row.mib_per_second;
    weighted_ns += r.latency_avg_ns * static_cast<double>(r.ios);
    ios += r.ios;
    min_us = std::min(min_us, row.min_us);
    max_us = std::max(max_us, row.max_us);
    s.rows.push_back(std::move(row));
  }
  if (!s.rows.empty()) {
    PerfRow total;
    total.ios = ios;
    total.iops = iops;
    total.mib_per_second = mib;
    total.avg_us = weighted_ns / static_cast<double>(ios) / kNsPerUs;
    total.min_us = min_us;
    total.max_us = max_us;
    s.total = total;
  }
  return s;
}

std::string FormatTable(std::span<const PerfResult> results) {
  PerfSummary s = Summarize(results);
  int w = Width(s.name_width);
  std::string out;
  out += "========================================================\n";
  Appendf(out, "%*s\n", w + 60, "Latency(us)");
  Appendf(out, "%-*s: %10s %10s %10s %10s %10s\n", w + 13, "Device Information", "IOPS", "MiB/s", "Average", "min",
          "max");
  for (const PerfRow& row : s.rows) {
    Appendf(out, "%-*.*s from core %2u: %10.2f %10.2f %10.2f %10.2f %10.2f\n", w, w, row.name.c_str(), row.core,
            row.iops, row.mib_per_second, row.avg_us, row.min_us, row.max_us);
  }
  if (s.total) {
    out += "========================================================\n";
    Appendf(out, "%-*s: %10.2f %10.2f %10.2f %10.2f %10.2f\n", w + 13, "Total", s.total->iops,
            s.total->mib_per_second, s.total->avg_us, s.total->min_us, s.total->max_us);
    out += "\n";
  }
  return out;
}

std::span<const double> SummaryCutoffs() { return kCutoffs; }

std::string FormatLatencySummary(std::span<const PerfResult> results) {
  std::string out;
  for (const PerfResult& r : results) {
    Appendf(out, "Summary latency data for %-43.43s from core %u:\n", r.name.c_str(), r.core);
    out += "=================================================================================\n";
    if (r.histogram && r.histogram->count() > 0) {
      for (double cutoff : kCutoffs) {
        Appendf(out, "%9.5f%% : %9.3fus\n", cutoff * 100,
                static_cast<double>(r.histogram->Percentile(cutoff)) / kNsPerUs);
      }
    }
    out += "\n";
  }
  return out;
}

std::string FormatLatencyHistogram(std::span<const PerfResult> results) {
  std::string out;
  for (const PerfResult& r : results) {
    Appendf(out, "Latency histogram for %-43.43s from core %u:\n", r.name.c_str(), r.core);
    out += "==============================================================================\n";
    out += "       Range in us     Cumulative    IO count\n";
    if (r.histogram && r.histogram->count() > 0) {
      double total = static_cast<double>(r.histogram->count());
      for (const LatencyHistogram::Bucket& b : r.histogram->NonEmptyBuckets()) {
        Appendf(out, "%9.3f - %9.3f: %9.4f%%  (%9" PRIu64 ")\n", static_cast<double>(b.start_ns) / kNsPerUs,
                static_cast<double>(b.end_ns) / kNsPerUs, static_cast<double>(b.cumulative) * 100 / total, b.count);
      }
    }
    out += "\n";
  }
  return out;
}

std::string FormatReport(std::span<const PerfResult> results, int latency_level) {
  std::string out = FormatTable(results);
  bool any_io = std::any_of(results.begin(), results.end(), [](const PerfResult& r) { return r.ios > 0; });
  if (!any_io) return out;
  if (latency_level >= 1) out += FormatLatencySummary(results);
  if (latency_level >= 2) out += FormatLatencyHistogram(results);
  return out;
}

std::string FormatLiveLine(uint64_t interval_ios, uint64_t interval_bytes, double interval_seconds, bool warmup) {
  double iops = PerSecond(static_cast<double>(interval_ios), interval_seconds);
  double mib = PerSecond(static_cast<double>(interval_bytes), interval_seconds) / kBytesPerMiB;
  std::string out;
  Appendf(out, "%s%9" PRIu64 " IOPS, %8.2f MiB/s", warmup ? "[warmup] " : "", static_cast<uint64_t>(std::llround(iops)),
          mib);
  return out;
}

std::optional<std::string> ErrorLogLimiter::Next(std::string_view message) {
  uint64_t n = count_++;
  if (n % every_ != 0) return std::nullopt;
  std::string line;
  if (n > 0 && every_ > 1) Appendf(line, "Message suppressed %u times: ", every_ - 1);
  line += message;
  return line;
}

std::string FormatJson(std::span<const PerfResult> results, int latency_level) {
  PerfSummary s = Summarize(results);
  JsonWriter json(0);
  json.BeginObject();
  json.Key("results");
  json.BeginArray();
  for (const PerfRow& row : s.rows) {
    const PerfResult& r = results[row.result_index];
    json.BeginObject();
    json.Key("name");
    json.Value(row.name);
    json.Key("core");
    json.Value(uint64_t{row.core});
    json.Key("ios");
    json.Value(row.ios);
    json.Key("bytes");
    json.Value(r.bytes);
    json.Key("elapsed_s");
    json.Value(r.elapsed_seconds);
    json.Key("iops");
    json.Value(row.iops);
    json.Key("mib_per_s");
    json.Value(row.mib_per_second);
    LatencyObject(json, row);
    bool has_histogram = r.histogram && r.histogram->count() > 0;
    if (latency_level >= 1 && has_histogram) {
      json.Key("percentiles");
      json.BeginObject();
      for (double cutoff : kCutoffs) {
        json.Key(PercentKey(cutoff));
        json.Value(static_cast<double>(r.histogram->Percentile(cutoff)) / kNsPerUs);
      }
      json.EndObject();
    }
    json.EndObject();  // latency_us
    if (latency_level >= 2 && has_histogram) {
      json.Key("histogram");
      json.BeginArray();
      for (const LatencyHistogram::Bucket& b : r.histogram->NonEmptyBuckets()) {
        json.BeginObject();
        json.Key("start_us");
        json.Value(static_cast<double>(b.start_ns) / kNsPerUs);
        json.Key("end_us");
        json.Value(static_cast<double>(b.end_ns) / kNsPerUs);
        json.Key("count");
        json.Value(b.count);
        json.EndObject();
      }
      json.EndArray();
    }
    json.EndObject();
  }
  json.EndArray();
  json.Key("total");
  if (s.total) {
    json.BeginObject();
    json.Key("ios");
    json.Value(s.total->ios);
    json.Key("iops");
    json.Value(s.total->iops);
    json.Key("mib_per_s");
    json.Value(s.total->mib_per_second);
    LatencyObject(json, *s.total);
    json.EndObject();  // latency_us
    json.EndObject();
  } else {
    json.Null();
  }
  json.EndObject();
  return std::move(json).Take() + "\n";
}

}  // namespace nvmux::perf
