// Where each I/O of nvmux-perf goes, whether it reads or writes, and what a
// written block carries so that a later read can be checked (--verify).
//
// Offsets: the LBA range [start, start + count) is cut into I/O-sized slots
// (count / io_blocks of them; a partial slot at the end is never used) and an
// I/O goes to slot k at LBA start + k * io_blocks, as SPDK's offset_in_ios.
// Sequential walks the slots and wraps at the end; random picks a slot
// uniformly; zipf (-F theta) picks slot k with probability proportional to
// 1 / (k + 1)^theta, so low LBAs are hot (SPDK's zipf over size_in_ios).
// Reads vs writes follow -M with the same generator. Nothing allocates after
// Create(); one IoPattern per (namespace, core) worker.
//
// Verify blocks (host byte order), one header per logical block:
//   [0, 8)   magic "nvmuxvfy"
//   [8, 16)  LBA of the block
//   [16, 24) sequence number (the writer's per-run write counter)
//   [24, 28) CRC32C of every other byte of the block
//   [28, 32) reserved, 0
//   [32, block_size) filler: a pseudo-random stream derived from (LBA, sequence)
// A block that was never written reads as all zeros and is reported as
// "unwritten", or accepted when the caller says so.
//
// Thread safety: FastRandom, ZipfGenerator and IoPattern are owned by one
// thread; the verify and CRC functions are pure.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "shm/base/result.h"
#include "tools/perf/perf_options.h"

namespace nvmux::perf {

// xorshift64* seeded through splitmix64: fast, 64-bit state, not for crypto.
class FastRandom {
 public:
  explicit FastRandom(uint64_t seed);
  uint64_t Next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1Dull;
  }
  // Uniform in [0, bound) by multiply-high (bias below bound / 2^64). REQUIRES: bound > 0.
  uint64_t Below(uint64_t bound) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * bound) >> 64);
  }
  // Uniform in [0, 1), 53 bits.
  double NextDouble() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

// A seed that differs between processes, threads and calls (time, pid, salt).
uint64_t MakeSeed(uint64_t salt);

// Zipf over ranks 0..n-1 by rejection-inversion (Hörmann & Derflinger 1996):
// O(1) setup and O(1) expected time per sample for any theta > 0, including 1.
class ZipfGenerator {
 public:
  // REQUIRES: n >= 1, theta > 0 and finite.
  ZipfGenerator(uint64_t n, double theta);
  uint64_t Next(FastRandom& rng);

 private:
  double H(double x) const;
  double HIntegral(double x) const;
  double HIntegralInverse(double x) const;

  uint64_t n_;
  double theta_;
  double h_integral_x1_;
  double h_integral_n_;
  double s_;
};

enum class AccessPattern { kSequential, kRandom, kZipf };
std::string_view ToString(AccessPattern pattern);

struct IoPatternConfig {
  AccessPattern pattern = AccessPattern::kSequential;
  LbaRange range;          // resolved (ResolveLbaRange): holds at least one I/O
  uint32_t io_blocks = 1;  // blocks per I/O, >= 1
  double zipf_theta = 0;   // kZipf: > 0
  int read_percent = 100;  // 0..100
  uint64_t seed = 1;
  uint64_t first_slot = 0;  // sequential: starting slot (taken modulo the slot count)
};

// -w, -M and -F of the options over a resolved range.
IoPatternConfig PatternConfigFrom(const PerfOptions& options, LbaRange range, uint32_t io_blocks, uint64_t seed);

struct IoDecision {
  uint64_t lba = 0;
  bool is_read = true;
};

class IoPattern {
 public:
  // Errors: EINVAL for io_blocks 0, a range smaller than one I/O, a range
  // that overflows, read_percent outside 0..100, or kZipf without theta > 0.
  [[nodiscard]] static Result<IoPattern> Create(const IoPatternConfig& config);

  // The next I/O: its first LBA and direction. O(1), no allocation.
  IoDecision Next() {
    IoDecision d;
    d.lba = NextLba();
    d.is_read = NextIsRead();
    return d;
  }
  uint64_t NextLba();
  bool NextIsRead() {
    if (read_percent_ >= 100) return true;
    if (read_percent_ <= 0) return false;
    return rng_.Below(100) < static_cast<uint64_t>(read_percent_);
  }

  uint64_t slots() const { return slots_; }
  const IoPatternConfig& config() const { return config_; }

 private:
  explicit IoPattern(const IoPatternConfig& config);

  IoPatternConfig config_;
  uint64_t slots_ = 0;
  uint64_t next_slot_ = 0;
  int read_percent_ = 100;
  FastRandom rng_;
  std::optional<ZipfGenerator> zipf_;
};

// The range to use on a namespace of `namespace_blocks` blocks: the requested
// one (checked) or the whole namespace. Errors: EINVAL "--lba-range S:C: ..."
// when it starts or ends beyond the namespace or holds less than one I/O, or
// when the namespace itself is smaller than one I/O.
[[nodiscard]] Result<LbaRange> ResolveLbaRange(const std::optional<LbaRange>& requested, uint64_t namespace_blocks,
                                               uint32_t io_blocks);

// -d for one worker over `slots` I/O slots: N, or N% of the slots (at least
// 1); 0 = no limit.
uint64_t NumberIosFor(const PerfOptions& options, uint64_t slots);

// CRC32C (Castagnoli, as iSCSI and NVMe PI use); chain by passing the previous result.
uint32_t Crc32c(std::span<const uint8_t> data, uint32_t crc = 0);

inline constexpr uint32_t kVerifyHeaderSize = 32;
inline constexpr uint64_t kVerifyMagic = 0x79667678756d766eull;  // "nvmuxvfy" in little-endian memory

// Writes the verify pattern into every block of `buffer` (block i is LBA
// first_lba + i). Errors: EINVAL if block_size < kVerifyHeaderSize or the
// buffer is not a whole number of blocks. No allocation on success.
[[nodiscard]] Status FillVerifyBlocks(std::span<uint8_t> buffer, uint64_t first_lba, uint32_t block_size,
                                      uint64_t seq);

enum class VerifyProblem {
  kUnwritten,      // all zeros and the caller did not accept that
  kBadMagic,       // not a verify block at all
  kWrongLba,       // a block of another LBA (misdirected write or read)
  kWrongSequence,  // intact, but not the write the caller expected
  kBadData,        // a filler byte differs (byte_offset says which)
  kBadChecksum,    // filler intact but the CRC disagrees: the header is damaged
};
std::string_view ToString(VerifyProblem problem);

struct VerifyMismatch {
  uint64_t lba = 0;          // the failing block
  VerifyProblem problem = VerifyProblem::kBadData;
  uint32_t byte_offset = 0;  // in the block: the differing byte, or the header field
  uint64_t expected = 0;     // magic, LBA, sequence, CRC or data byte
  uint64_t found = 0;
  // "LBA 17: bad data at byte 300: expected 0x5a, found 0x5b". Allocates.
  std::string ToString() const;
};

struct VerifyCheckOptions {
  bool accept_unwritten = false;          // all-zero blocks count as never written, not as errors
  std::optional<uint64_t> expected_seq;   // also require this sequence number
};

struct VerifyCheckResult {
  uint64_t blocks_checked = 0;    // blocks examined, including the failing one
  uint64_t blocks_unwritten = 0;  // all-zero blocks accepted
  std::optional<VerifyMismatch> mismatch;  // the first failing block; checking stops there
  bool ok() const { return !mismatch.has_value(); }
};

// Checks every block of `buffer` against the pattern for LBA first_lba + i.
// An intact block passes on its CRC alone; a damaged one is compared with the
// regenerated filler to name the first differing byte. (A damaged sequence
// field therefore shows as bad data from byte 32.) Errors: EINVAL as for
// FillVerifyBlocks. No allocation.
[[nodiscard]] Result<VerifyCheckResult> CheckVerifyBlocks(std::span<const uint8_t> buffer, uint64_t first_lba,
                                                          uint32_t block_size, const VerifyCheckOptions& options = {});

}  // namespace nvmux::perf
