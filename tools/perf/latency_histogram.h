// LatencyHistogram: I/O latencies in nanoseconds, in log-linear buckets like
// SPDK's spdk_histogram_data, plus exact count, sum, min and max.
//
// Buckets: 128 per power of two. Values 0..255 have a bucket each; above,
// the power-of-two range [2^k, 2^(k+1)) is split into 128 equal buckets of
// width 2^(k-7). A bucket is therefore at most 1/128 (0.8%) of its values
// wide, and a percentile read from the histogram is within that of the true
// one. 58 ranges x 128 buckets cover all of uint64_t (59 KiB per histogram,
// allocated once in the constructor).
//
// Record() is O(1) and never allocates: call it on the I/O path, one
// histogram per (namespace, core) worker; Merge() them for totals afterwards.
//
// Thread safety: none; a histogram belongs to one thread at a time. Copies
// are deep (59 KiB); moves are cheap.
#pragma once

#include <bit>
#include <cstdint>
#include <vector>

namespace nvmux::perf {

class LatencyHistogram {
 public:
  static constexpr uint32_t kBucketShift = 7;
  static constexpr uint32_t kBucketsPerRange = 1u << kBucketShift;
  static constexpr uint32_t kRanges = 64 - kBucketShift + 1;
  static constexpr uint32_t kBuckets = kBucketsPerRange * kRanges;

  // One bucket: values in [start_ns, end_ns); cumulative counts this bucket
  // and every bucket below it.
  struct Bucket {
    uint64_t start_ns = 0;
    uint64_t end_ns = 0;  // exclusive; the largest bucket ends at 2^64 - 1, inclusive
    uint64_t count = 0;
    uint64_t cumulative = 0;
  };

  LatencyHistogram();

  // Counts one latency. O(1), no allocation.
  void Record(uint64_t ns) {
    ++buckets_[BucketIndex(ns)];
    ++count_;
    sum_ns_ += ns;
    if (ns < min_ns_) min_ns_ = ns;
    if (ns > max_ns_) max_ns_ = ns;
  }

  // Adds every sample of `other` (which may be *this: doubles the counts).
  void Merge(const LatencyHistogram& other);
  // Back to empty (after a warm-up); keeps the allocation.
  void Reset();

  uint64_t count() const { return count_; }
  uint64_t sum_ns() const { return sum_ns_; }
  // 0 when empty.
  uint64_t min_ns() const { return count_ == 0 ? 0 : min_ns_; }
  uint64_t max_ns() const { return max_ns_; }
  // sum / count; 0 when empty.
  double mean_ns() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_ns_) / static_cast<double>(count_); }

  // The smallest bucket bound v such that a fraction >= `fraction` of the
  // samples is <= v: the inclusive upper end of the bucket where the
  // cumulative share first reaches `fraction`, clamped to max_ns(). 0 when
  // empty. REQUIRES: 0 < fraction <= 1.
  uint64_t Percentile(double fraction) const;

  // The non-empty buckets, lowest first. Allocates: for reports, not the I/O path.
  std::vector<Bucket> NonEmptyBuckets() const;

  // Bucket arithmetic, exposed for tests and reports.
  static uint32_t BucketIndex(uint64_t ns) {
    // Range r >= 1 holds [2^(r+6), 2^(r+7)); range 0 holds 0..127 (as SPDK).
    constexpr int kLsb = 64 - static_cast<int>(kBucketShift);
    int leading_zeros = std::countl_zero(ns);  // 64 for 0
    uint32_t range = leading_zeros <= kLsb ? static_cast<uint32_t>(kLsb - leading_zeros) : 0;
    uint32_t shift = range == 0 ? 0 : range - 1;
    return (range << kBucketShift) + static_cast<uint32_t>((ns >> shift) & (kBucketsPerRange - 1));
  }
  static uint64_t BucketStart(uint32_t index);
  // Exclusive end; saturates at UINT64_MAX for the last bucket.
  static uint64_t BucketEnd(uint32_t index);

 private:
  std::vector<uint64_t> buckets_;  // kBuckets counters
  uint64_t count_ = 0;
  uint64_t sum_ns_ = 0;  // wraps after 584 years of summed latency
  uint64_t min_ns_ = UINT64_MAX;
  uint64_t max_ns_ = 0;
};

}  // namespace nvmux::perf
