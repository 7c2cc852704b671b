#include "tools/perf/perf_report.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace nvmux::perf {
namespace {

// A strict little JSON reader, to check the report is well-formed and to read numbers back.
struct Json {
  enum Kind { kNull, kNumber, kString, kArray, kObject } kind = kNull;
  double number = 0;
  std::string text;
  std::vector<Json> items;
  std::map<std::string, Json> fields;
  const Json& operator[](const std::string& key) const { return fields.at(key); }
  const Json& operator[](size_t i) const { return items.at(i); }
};

class JsonReader {
 public:
  explicit JsonReader(const std::string& s) : s_(s) {}
  bool Parse(Json& out) {
    if (!Value(out)) return false;
    Space();
    return pos_ == s_.size();
  }

 private:
  void Space() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool Eat(char c) {
    Space();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool String(std::string& out) {
    if (!Eat('"')) return false;
    while (pos_ < s_.size() && s_[pos_] != '"') {
      if (s_[pos_] == '\\') ++pos_;
      out += s_[pos_++];
    }
    return Eat('"');
  }
  bool Value(Json& out) {
    Space();
    if (pos_ >= s_.size()) return false;
    char c = s_[pos_];
    if (c == '{') {
      out.kind = Json::kObject;
      ++pos_;
      if (Eat('}')) return true;
      do {
        std::string key;
        Json v;
        if (!String(key) || !Eat(':') || !Value(v)) return false;
        if (out.fields.count(key)) return false;  // duplicate key
        out.fields[key] = std::move(v);
      } while (Eat(','));
      return Eat('}');
    }
    if (c == '[') {
      out.kind = Json::kArray;
      ++pos_;
      if (Eat(']')) return true;
      do {
        Json v;
        if (!Value(v)) return false;
        out.items.push_back(std::move(v));
      } while (Eat(','));
      return Eat(']');
    }
    if (c == '"') {
      out.kind = Json::kString;
      return String(out.text);
    }
    if (s_.compare(pos_, 4, "null") == 0) {
      pos_ += 4;
      return true;
    }
    char* end = nullptr;
    out.kind = Json::kNumber;
    out.number = std::strtod(s_.c_str() + pos_, &end);
    if (end == s_.c_str() + pos_) return false;
    pos_ = static_cast<size_t>(end - s_.c_str());
    return true;
  }

  const std::string& s_;
  size_t pos_ = 0;
};

Json ParseJson(const std::string& s) {
  Json j;
  EXPECT_TRUE(JsonReader(s).Parse(j)) << s;
  return j;
}

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The five numbers after the ':' of a table row.
std::vector<double> RowNumbers(const std::string& line) {
  std::istringstream in(line.substr(line.rfind(':') + 1));
  std::vector<double> v;
  for (double d; in >> d;) v.push_back(d);
  return v;
}

PerfResult Result(std::string name, uint32_t core, uint64_t ios, double seconds, uint64_t min_ns, double avg_ns,
                  uint64_t max_ns) {
  PerfResult r;
  r.name = std::move(name);
  r.core = core;
  r.ios = ios;
  r.bytes = ios * 4096;
  r.elapsed_seconds = seconds;
  r.latency_min_ns = min_ns;
  r.latency_avg_ns = avg_ns;
  r.latency_max_ns = max_ns;
  return r;
}

std::vector<PerfResult> TwoDevices() {
  return {Result("VFIOUSER (/tmp/x) NSID 1", 0, 1'000'000, 4.0, 2000, 8100, 120000),
          Result("VFIOUSER (/tmp/y) NSID 1", 1, 500'000, 4.0, 1500, 10000, 200000)};
}

TEST(PerfReport, TableInSpdkShape) {
  auto results = TwoDevices();
  std::string expected =
      "========================================================\n"
      "                                                                         Latency(us)\n"
      "Device Information                   :       IOPS      MiB/s    Average        min        max\n"
      "VFIOUSER (/tmp/x) NSID 1 from core  0:  250000.00     976.56       8.10       2.00     120.00\n"
      "VFIOUSER (/tmp/y) NSID 1 from core  1:  125000.00     488.28      10.00       1.50     200.00\n"
      "========================================================\n"
      "Total                                :  375000.00    1464.84       8.73       1.50     200.00\n"
      "\n";
  EXPECT_EQ(FormatTable(results), expected);
}

TEST(PerfReport, TotalRowArithmetic) {
  auto results = TwoDevices();
  results.push_back(Result("VFIOUSER (/tmp/z) NSID 2", 2, 250'000, 2.0, 900, 20000, 90000));
  PerfSummary s = Summarize(results);
  ASSERT_EQ(s.rows.size(), 3u);
  ASSERT_TRUE(s.total);
  EXPECT_DOUBLE_EQ(s.total->iops, 250000.0 + 125000.0 + 125000.0);
  EXPECT_DOUBLE_EQ(s.total->mib_per_second, s.rows[0].mib_per_second + s.rows[1].mib_per_second +
                                                s.rows[2].mib_per_second);
  // Weighted by I/O count, not the mean of the averages.
  double weighted = (8100.0 * 1'000'000 + 10000.0 * 500'000 + 20000.0 * 250'000) / 1'750'000 / 1000;
  EXPECT_DOUBLE_EQ(s.total->avg_us, weighted);
  EXPECT_DOUBLE_EQ(s.total->min_us, 0.9);
  EXPECT_DOUBLE_EQ(s.total->max_us, 200.0);
  EXPECT_EQ(s.total->ios, 1'750'000u);
}

TEST(PerfReport, IdleWorkersAreLeftOutButSetTheWidth) {
  std::vector<PerfResult> results = {Result("A NSID 1", 0, 100, 1.0, 1000, 1000, 1000),
                                     Result("A much longer name NSID 2", 1, 0, 1.0, 0, 0, 0)};
  auto lines = Lines(FormatTable(results));
  ASSERT_EQ(lines.size(), 7u);
  EXPECT_EQ(lines[3].find("A NSID 1                  from core  0:"), 0u) << lines[3];
  EXPECT_EQ(lines[5].substr(0, 5), "Total");
  EXPECT_EQ(lines[5].find(':'), lines[3].find(':'));
  // Nothing completed: no total, no percentile block.
  std::vector<PerfResult> idle = {Result("A NSID 1", 0, 0, 1.0, 0, 0, 0)};
  EXPECT_EQ(Lines(FormatTable(idle)).size(), 3u);
  EXPECT_EQ(FormatReport(idle, 2), FormatTable(idle));
  EXPECT_EQ(ParseJson(FormatJson(idle, 2))["total"].kind, Json::kNull);
}

TEST(PerfReport, JsonNumbersEqualTheTable) {
  auto results = TwoDevices();
  results.push_back(Result("VFIOUSER (\"q\\uote\") NSID 3", 3, 12345, 1.5, 777, 4321.5, 99999));
  std::string table = FormatTable(results);
  Json json = ParseJson(FormatJson(results, 0));
  auto lines = Lines(table);
  const Json& rows = json["results"];
  ASSERT_EQ(rows.items.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    std::vector<double> t = RowNumbers(lines[3 + i]);
    ASSERT_EQ(t.size(), 5u) << lines[3 + i];
    const Json& r = rows[i];
    EXPECT_EQ(r["name"].text, results[i].name);
    EXPECT_EQ(r["core"].number, results[i].core);
    EXPECT_EQ(r["ios"].number, static_cast<double>(results[i].ios));
    EXPECT_EQ(r["bytes"].number, static_cast<double>(results[i].bytes));
    const double kHalfCent = 0.005 + 1e-9;
    EXPECT_NEAR(r["iops"].number, t[0], kHalfCent);
    EXPECT_NEAR(r["mib_per_s"].number, t[1], kHalfCent);
    EXPECT_NEAR(r["latency_us"]["avg"].number, t[2], kHalfCent);
    EXPECT_NEAR(r["latency_us"]["min"].number, t[3], kHalfCent);
    EXPECT_NEAR(r["latency_us"]["max"].number, t[4], kHalfCent);
  }
  std::vector<double> total = RowNumbers(lines[3 + 3 + 1]);
  ASSERT_EQ(total.size(), 5u);
  const Json& tj = json["total"];
  EXPECT_NEAR(tj["iops"].number, total[0], 0.0051);
  EXPECT_NEAR(tj["mib_per_s"].number, total[1], 0.0051);
  EXPECT_NEAR(tj["latency_us"]["avg"].number, total[2], 0.0051);
  EXPECT_NEAR(tj["latency_us"]["min"].number, total[3], 0.0051);
  EXPECT_NEAR(tj["latency_us"]["max"].number, total[4], 0.0051);
  EXPECT_EQ(tj["ios"].number, 1'512'345.0);
}

LatencyHistogram Spread(uint64_t from_ns, uint64_t to_ns, uint64_t step) {
  LatencyHistogram h;
  for (uint64_t v = from_ns; v <= to_ns; v += step) h.Record(v);
  return h;
}

TEST(PerfReport, FromHistogramTakesExactTotals) {
  LatencyHistogram h = Spread(1000, 9000, 1000);  // 9 samples, mean 5000
  PerfResult r = PerfResult::FromHistogram("X NSID 1", 4, 4096, 2.0, h, /*keep_histogram=*/true);
  EXPECT_EQ(r.ios, 9u);
  EXPECT_EQ(r.bytes, 9u * 4096);
  EXPECT_EQ(r.latency_min_ns, 1000u);
  EXPECT_EQ(r.latency_max_ns, 9000u);
  EXPECT_DOUBLE_EQ(r.latency_avg_ns, 5000.0);
  ASSERT_TRUE(r.histogram);
  EXPECT_EQ(r.histogram->count(), 9u);
  EXPECT_FALSE(PerfResult::FromHistogram("X", 0, 512, 1.0, h, false).histogram);
}

TEST(PerfReport, PercentileSummaryAndHistogramBlocks) {
  std::vector<PerfResult> results;
  results.push_back(
      PerfResult::FromHistogram("VFIOUSER (/tmp/x) NSID 1", 0, 4096, 1.0, Spread(1000, 100000, 10), true));
  const LatencyHistogram& h = *results[0].histogram;

  auto summary = Lines(FormatLatencySummary(results));
  ASSERT_EQ(summary.size(), 2 + SummaryCutoffs().size() + 1);
  EXPECT_EQ(summary[0], "Summary latency data for VFIOUSER (/tmp/x) NSID 1                    from core 0:");
  EXPECT_EQ(summary[1], std::string(81, '='));
  char want[64];
  std::snprintf(want, sizeof(want), " 50.00000%% : %9.3fus", static_cast<double>(h.Percentile(0.5)) / 1000);
  EXPECT_EQ(summary[2 + 3], want);
  EXPECT_EQ(summary[2].substr(0, 12), "  1.00000% :");
  EXPECT_EQ(summary[2 + 14].substr(0, 12), " 99.99999% :");
  EXPECT_EQ(summary.back(), "");

  auto hist = Lines(FormatLatencyHistogram(results));
  auto buckets = h.NonEmptyBuckets();
  ASSERT_EQ(hist.size(), 3 + buckets.size() + 1);
  EXPECT_EQ(hist[0], "Latency histogram for VFIOUSER (/tmp/x) NSID 1                    from core 0:");
  EXPECT_EQ(hist[1], std::string(78, '='));
  EXPECT_EQ(hist[2], "       Range in us     Cumulative    IO count");
  EXPECT_EQ(hist[3].substr(0, 23), "    1.000 -     1.004: ");
  EXPECT_NE(hist[3 + buckets.size() - 1].find("100.0000%"), std::string::npos);

  std::string report = FormatReport(results, 2);
  EXPECT_NE(report.find("Summary latency data"), std::string::npos);
  EXPECT_NE(report.find("Latency histogram"), std::string::npos);
  EXPECT_EQ(FormatReport(results, 1).find("Latency histogram"), std::string::npos);
  EXPECT_EQ(FormatReport(results, 0).find("Summary latency data"), std::string::npos);

  // JSON carries the same percentiles and buckets.
  Json json = ParseJson(FormatJson(results, 2));
  const Json& r = json["results"][0];
  EXPECT_NEAR(r["latency_us"]["percentiles"]["50"].number, static_cast<double>(h.Percentile(0.5)) / 1000, 0.0005);
  EXPECT_NEAR(r["latency_us"]["percentiles"]["99.99999"].number, static_cast<double>(h.Percentile(0.9999999)) / 1000,
              0.0005);
  ASSERT_EQ(r["histogram"].items.size(), buckets.size());
  EXPECT_EQ(r["histogram"][0]["count"].number, static_cast<double>(buckets[0].count));
  Json plain = ParseJson(FormatJson(results, 0));
  EXPECT_EQ(plain["results"][0]["latency_us"].fields.count("percentiles"), 0u);
  EXPECT_EQ(plain["results"][0].fields.count("histogram"), 0u);
}

TEST(PerfReport, LongNamesAreCutInTheLatencyBlocks) {
  std::vector<PerfResult> results;
  results.push_back(PerfResult::FromHistogram(std::string(60, 'n'), 1, 512, 1.0, Spread(100, 200, 1), true));
  auto lines = Lines(FormatLatencySummary(results));
  EXPECT_EQ(lines[0], "Summary latency data for " + std::string(43, 'n') + " from core 1:");
}

TEST(PerfReport, LiveLine) {
  EXPECT_EQ(FormatLiveLine(250000, 250000ull * 4096, 1.0, false), "   250000 IOPS,   976.56 MiB/s");
  EXPECT_EQ(FormatLiveLine(500000, 500000ull * 4096, 2.0, true), "[warmup]    250000 IOPS,   976.56 MiB/s");
  EXPECT_EQ(FormatLiveLine(0, 0, 0.0, false), "        0 IOPS,     0.00 MiB/s");
}

TEST(PerfReport, ErrorLogLimiterLikeSpdk) {
  ErrorLogLimiter every3(3);
  std::vector<std::string> printed;
  for (int i = 0; i < 7; ++i) {
    if (auto line = every3.Next("Read completed with error (sct=0, sc=6)")) printed.push_back(*line);
  }
  ASSERT_EQ(printed.size(), 3u);  // occurrences 1, 4 and 7
  EXPECT_EQ(printed[0], "Read completed with error (sct=0, sc=6)");
  EXPECT_EQ(printed[1], "Message suppressed 2 times: Read completed with error (sct=0, sc=6)");
  EXPECT_EQ(every3.count(), 7u);
  ErrorLogLimiter every1(1);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(*every1.Next("x"), "x");
}

}  // namespace
}  // namespace nvmux::perf
