#include "tools/perf/latency_histogram.h"

#include <algorithm>

namespace nvmux::perf {

LatencyHistogram::LatencyHistogram() : buckets_(kBuckets, 0) {}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  // Read other's totals first: other may be *this.
  uint64_t other_min = other.min_ns_, other_max = other.max_ns_;
  count_ += other.count_;
  sum_ns_ += other.sum_ns_;
  min_ns_ = std::min(min_ns_, other_min);
  max_ns_ = std::max(max_ns_, other_max);
  for (uint32_t i = 0; i < kBuckets; ++i) buckets_[i] += other.buckets_[i];
}

void LatencyHistogram::Reset() {
  std::fill(buckets_.begin(), buckets_.end(), 0);
  count_ = 0;
  sum_ns_ = 0;
  min_ns_ = UINT64_MAX;
  max_ns_ = 0;
}

uint64_t LatencyHistogram::BucketStart(uint32_t index) {
  uint32_t range = index >> kBucketShift;
  uint64_t slot = index & (kBucketsPerRange - 1);
  if (range == 0) return slot;
  return (uint64_t{1} << (range + kBucketShift - 1)) + (slot << (range - 1));
}

uint64_t LatencyHistogram::BucketEnd(uint32_t index) {
  uint32_t range = index >> kBucketShift;
  uint64_t width = range == 0 ? 1 : uint64_t{1} << (range - 1);
  uint64_t start = BucketStart(index);
  return start > UINT64_MAX - width ? UINT64_MAX : start + width;
}

uint64_t LatencyHistogram::Percentile(double fraction) const {
  if (count_ == 0) return 0;
  uint64_t so_far = 0;
  for (uint32_t i = 0; i < kBuckets; ++i) {
    if (buckets_[i] == 0) continue;
    so_far += buckets_[i];
    // The same comparison as SPDK's check_cutoff, so -L prints the same rows.
    if (static_cast<double>(so_far) / static_cast<double>(count_) >= fraction) {
      uint64_t end = BucketEnd(i);
      uint64_t last = end == UINT64_MAX ? end : end - 1;
      return std::min(last, max_ns_);
    }
  }
  return max_ns_;
}

std::vector<LatencyHistogram::Bucket> LatencyHistogram::NonEmptyBuckets() const {
  std::vector<Bucket> out;
  uint64_t so_far = 0;
  for (uint32_t i = 0; i < kBuckets; ++i) {
    if (buckets_[i] == 0) continue;
    so_far += buckets_[i];
    out.push_back(Bucket{BucketStart(i), BucketEnd(i), buckets_[i], so_far});
  }
  return out;
}

}  // namespace nvmux::perf
