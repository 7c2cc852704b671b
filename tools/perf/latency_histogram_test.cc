#include "tools/perf/latency_histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace nvmux::perf {
namespace {

using H = LatencyHistogram;

TEST(LatencyHistogram, BucketsCoverEveryValueWithBoundedWidth) {
  std::vector<uint64_t> values;
  for (uint64_t v = 0; v < 5000; ++v) values.push_back(v);
  for (int bit = 12; bit < 64; ++bit) {
    uint64_t p = uint64_t{1} << bit;
    for (uint64_t v : {p - 1, p, p + 1, p + p / 3, p + p / 2 + 7}) values.push_back(v);
  }
  values.push_back(UINT64_MAX);
  uint32_t last_index = 0;
  std::sort(values.begin(), values.end());
  for (uint64_t v : values) {
    uint32_t i = H::BucketIndex(v);
    ASSERT_LT(i, H::kBuckets) << v;
    EXPECT_GE(i, last_index) << "index not monotonic at " << v;
    last_index = i;
    EXPECT_LE(H::BucketStart(i), v) << v;
    if (v != UINT64_MAX) {
      EXPECT_LT(v, H::BucketEnd(i)) << v;
    }
    uint64_t width = H::BucketEnd(i) - H::BucketStart(i);
    if (v < 256) {
      EXPECT_EQ(width, 1u) << v;  // exact below 256
    } else if (v != UINT64_MAX) {
      EXPECT_LE(static_cast<double>(width) / static_cast<double>(H::BucketStart(i)), 1.0 / 128) << v;
    }
  }
  EXPECT_EQ(H::BucketIndex(UINT64_MAX), H::kBuckets - 1);
  EXPECT_EQ(H::BucketEnd(H::kBuckets - 1), UINT64_MAX);
  // Buckets tile the line: each ends where the next starts.
  for (uint32_t i = 0; i + 1 < H::kBuckets; ++i) ASSERT_EQ(H::BucketEnd(i), H::BucketStart(i + 1)) << i;
}

TEST(LatencyHistogram, ExactTotals) {
  H h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.min_ns(), 0u);
  EXPECT_EQ(h.max_ns(), 0u);
  EXPECT_EQ(h.mean_ns(), 0.0);
  EXPECT_EQ(h.Percentile(0.5), 0u);
  for (uint64_t v : {1500u, 2000u, 120000u, 8100u}) h.Record(v);
  EXPECT_EQ(h.count(), 4u);
  EXPECT_EQ(h.min_ns(), 1500u);
  EXPECT_EQ(h.max_ns(), 120000u);
  EXPECT_EQ(h.sum_ns(), 131600u);
  EXPECT_DOUBLE_EQ(h.mean_ns(), 32900.0);
  EXPECT_EQ(h.Percentile(1.0), 120000u);
  h.Reset();
  EXPECT_EQ(h.count(), 0u);
  EXPECT_TRUE(h.NonEmptyBuckets().empty());
}

// Every percentile read from the histogram is at or above the true one and
// within one bucket width (1/128) of it.
void ExpectPercentilesWithinBucketError(const std::vector<uint64_t>& samples) {
  H h;
  for (uint64_t v : samples) h.Record(v);
  std::vector<uint64_t> sorted = samples;
  std::sort(sorted.begin(), sorted.end());
  for (double p : {0.01, 0.10, 0.25, 0.50, 0.75, 0.90, 0.99, 0.999, 0.9999, 1.0}) {
    auto rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
    uint64_t truth = sorted[std::max<size_t>(rank, 1) - 1];
    uint64_t got = h.Percentile(p);
    EXPECT_GE(got, truth) << "p=" << p;
    EXPECT_LE(static_cast<double>(got), static_cast<double>(truth) * (1.0 + 1.0 / 128) + 1) << "p=" << p;
  }
}

TEST(LatencyHistogram, PercentilesOfUniformValues) {
  std::vector<uint64_t> samples;
  for (uint64_t v = 1; v <= 100000; ++v) samples.push_back(v);
  ExpectPercentilesWithinBucketError(samples);
  H h;
  for (uint64_t v : samples) h.Record(v);
  // The median of 1..100000 is 50000; its bucket is 256 ns wide (2^15..2^16 / 128).
  EXPECT_NEAR(static_cast<double>(h.Percentile(0.5)), 50000.0, 256.0);
}

TEST(LatencyHistogram, PercentilesOfLogNormalLatencies) {
  std::mt19937_64 gen(42);
  std::lognormal_distribution<double> dist(std::log(10000.0), 0.8);  // ~10 us median, long tail
  std::vector<uint64_t> samples;
  for (int i = 0; i < 200000; ++i) samples.push_back(static_cast<uint64_t>(dist(gen)));
  ExpectPercentilesWithinBucketError(samples);
}

TEST(LatencyHistogram, MergeEqualsRecordingEverything) {
  H a, b, all;
  for (uint64_t v = 0; v < 3000; v += 7) {
    a.Record(v * 13);
    all.Record(v * 13);
  }
  for (uint64_t v = 1; v < 100000; v += 331) {
    b.Record(v * 101);
    all.Record(v * 101);
  }
  H merged = a;
  merged.Merge(b);
  EXPECT_EQ(merged.count(), all.count());
  EXPECT_EQ(merged.sum_ns(), all.sum_ns());
  EXPECT_EQ(merged.min_ns(), all.min_ns());
  EXPECT_EQ(merged.max_ns(), all.max_ns());
  auto mb = merged.NonEmptyBuckets(), ab = all.NonEmptyBuckets();
  ASSERT_EQ(mb.size(), ab.size());
  for (size_t i = 0; i < mb.size(); ++i) {
    EXPECT_EQ(mb[i].start_ns, ab[i].start_ns);
    EXPECT_EQ(mb[i].count, ab[i].count);
    EXPECT_EQ(mb[i].cumulative, ab[i].cumulative);
  }
  for (double p : {0.1, 0.5, 0.99}) EXPECT_EQ(merged.Percentile(p), all.Percentile(p));

  H empty;
  H with_empty = a;
  with_empty.Merge(empty);
  EXPECT_EQ(with_empty.count(), a.count());
  EXPECT_EQ(with_empty.min_ns(), a.min_ns());
  empty.Merge(a);
  EXPECT_EQ(empty.min_ns(), a.min_ns());
  EXPECT_EQ(empty.max_ns(), a.max_ns());

  H twice = a;
  twice.Merge(twice);
  EXPECT_EQ(twice.count(), 2 * a.count());
  EXPECT_EQ(twice.sum_ns(), 2 * a.sum_ns());
  EXPECT_EQ(twice.Percentile(0.5), a.Percentile(0.5));
}

TEST(LatencyHistogram, NonEmptyBucketsAreCumulative) {
  H h;
  for (int i = 0; i < 10; ++i) h.Record(100);
  for (int i = 0; i < 30; ++i) h.Record(5000);
  h.Record(1'000'000);
  auto buckets = h.NonEmptyBuckets();
  ASSERT_EQ(buckets.size(), 3u);
  EXPECT_EQ(buckets[0].start_ns, 100u);
  EXPECT_EQ(buckets[0].end_ns, 101u);
  EXPECT_EQ(buckets[0].count, 10u);
  EXPECT_EQ(buckets[1].count, 30u);
  EXPECT_EQ(buckets[1].cumulative, 40u);
  EXPECT_EQ(buckets[2].cumulative, 41u);
  EXPECT_LE(buckets[2].start_ns, 1'000'000u);
  EXPECT_GT(buckets[2].end_ns, 1'000'000u);
  EXPECT_EQ(h.Percentile(0.2), 100u);
  EXPECT_EQ(h.Percentile(0.5), H::BucketEnd(H::BucketIndex(5000)) - 1);
  EXPECT_EQ(h.Percentile(0.99), 1'000'000u);  // clamped to the exact max
}

}  // namespace
}  // namespace nvmux::perf
