#include "tools/perf/io_pattern.h"

#include <unistd.h>

#include <bit>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

namespace nvmux::perf {

// The verify header and the CRC read words straight from memory.
static_assert(std::endian::native == std::endian::little, "verify blocks and CRC32C assume little-endian");

namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// --- CRC32C, slice-by-8 over the reflected polynomial 0x82F63B78 ---

struct Crc32cTables {
  uint32_t t[8][256];
};

constexpr Crc32cTables MakeCrc32cTables() {
  Crc32cTables tables{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    tables.t[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; ++i) {
    for (int k = 1; k < 8; ++k) tables.t[k][i] = (tables.t[k - 1][i] >> 8) ^ tables.t[0][tables.t[k - 1][i] & 0xFF];
  }
  return tables;
}

constexpr Crc32cTables kCrc = MakeCrc32cTables();

uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

uint32_t Load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

void Store64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, sizeof(v)); }
void Store32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, sizeof(v)); }

// --- verify blocks ---

constexpr uint32_t kOffMagic = 0, kOffLba = 8, kOffSeq = 16, kOffCrc = 24, kOffReserved = 28;

// The filler of (lba, seq): 8 bytes per step of a xorshift64* stream.
class FillerStream {
 public:
  FillerStream(uint64_t lba, uint64_t seq) : rng_(SplitMix64(lba) ^ SplitMix64(~seq)) {}
  uint64_t Next() { return rng_.Next(); }

 private:
  FastRandom rng_;
};

// Everything but the CRC field.
uint32_t BlockCrc(const uint8_t* block, uint32_t block_size) {
  uint32_t crc = Crc32c(std::span<const uint8_t>(block, kOffCrc));
  return Crc32c(std::span<const uint8_t>(block + kOffReserved, block_size - kOffReserved), crc);
}

Status CheckShape(size_t buffer_size, uint32_t block_size) {
  if (block_size < kVerifyHeaderSize) {
    return Fail(EINVAL, "verify block size " + std::to_string(block_size) + " is below the " +
                            std::to_string(kVerifyHeaderSize) + "-byte header");
  }
  if (buffer_size % block_size != 0) {
    return Fail(EINVAL, "verify buffer of " + std::to_string(buffer_size) + " bytes is not a whole number of " +
                            std::to_string(block_size) + "-byte blocks");
  }
  return Ok();
}

void FillBlock(uint8_t* block, uint32_t block_size, uint64_t lba, uint64_t seq) {
  FillerStream filler(lba, seq);
  uint32_t off = kVerifyHeaderSize;
  for (; off + 8 <= block_size; off += 8) Store64(block + off, filler.Next());
  if (off < block_size) {
    uint64_t last = filler.Next();
    std::memcpy(block + off, &last, block_size - off);
  }
  Store64(block + kOffMagic, kVerifyMagic);
  Store64(block + kOffLba, lba);
  Store64(block + kOffSeq, seq);
  Store32(block + kOffReserved, 0);
  Store32(block + kOffCrc, BlockCrc(block, block_size));
}

bool AllZero(const uint8_t* p, uint32_t size) {
  if (Load64(p) != 0) return false;  // the usual case: a header is there
  for (uint32_t i = 0; i < size; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

VerifyMismatch Mismatch(uint64_t lba, VerifyProblem problem, uint32_t offset, uint64_t expected, uint64_t found) {
  VerifyMismatch m;
  m.lba = lba;
  m.problem = problem;
  m.byte_offset = offset;
  m.expected = expected;
  m.found = found;
  return m;
}

// The CRC failed: name the first byte that differs from what (lba, seq) says.
VerifyMismatch LocateDamage(const uint8_t* block, uint32_t block_size, uint64_t lba, uint64_t seq, uint32_t crc) {
  for (uint32_t i = 0; i < 4; ++i) {
    if (block[kOffReserved + i] != 0) return Mismatch(lba, VerifyProblem::kBadData, kOffReserved + i, 0, block[kOffReserved + i]);
  }
  FillerStream filler(lba, seq);
  for (uint32_t off = kVerifyHeaderSize; off < block_size; off += 8) {
    uint64_t want = filler.Next();
    uint32_t n = std::min<uint32_t>(8, block_size - off);
    uint8_t want_bytes[8];
    std::memcpy(want_bytes, &want, sizeof(want));
    for (uint32_t i = 0; i < n; ++i) {
      if (block[off + i] != want_bytes[i]) {
        return Mismatch(lba, VerifyProblem::kBadData, off + i, want_bytes[i], block[off + i]);
      }
    }
  }
  return Mismatch(lba, VerifyProblem::kBadChecksum, kOffCrc, crc, Load32(block + kOffCrc));
}

}  // namespace

// --- generators ---

FastRandom::FastRandom(uint64_t seed) : state_(SplitMix64(seed)) {
  if (state_ == 0) state_ = 0x9E3779B97F4A7C15ull;  // xorshift's one bad state
}

uint64_t MakeSeed(uint64_t salt) {
  auto now = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return SplitMix64(now ^ (static_cast<uint64_t>(getpid()) << 32) ^ SplitMix64(salt));
}

namespace {

// log1p(x) / x and expm1(x) / x, with their series near 0 where the division loses precision.
double Log1pOverX(double x) {
  if (std::fabs(x) > 1e-8) return std::log1p(x) / x;
  return 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
}

double Expm1OverX(double x) {
  if (std::fabs(x) > 1e-8) return std::expm1(x) / x;
  return 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x));
}

}  // namespace

// Ranks are 1..n inside (the paper's form); Next() returns rank - 1.
ZipfGenerator::ZipfGenerator(uint64_t n, double theta) : n_(n), theta_(theta) {
  h_integral_x1_ = HIntegral(1.5) - 1.0;
  h_integral_n_ = HIntegral(static_cast<double>(n_) + 0.5);
  s_ = 2.0 - HIntegralInverse(HIntegral(2.5) - H(2.0));
}

double ZipfGenerator::H(double x) const { return std::exp(-theta_ * std::log(x)); }

double ZipfGenerator::HIntegral(double x) const {
  double log_x = std::log(x);
  return Expm1OverX((1.0 - theta_) * log_x) * log_x;
}

double ZipfGenerator::HIntegralInverse(double x) const {
  double t = x * (1.0 - theta_);
  if (t < -1.0) t = -1.0;  // rounding near the end of the domain
  return std::exp(Log1pOverX(t) * x);
}

uint64_t ZipfGenerator::Next(FastRandom& rng) {
  const double n = static_cast<double>(n_);
  for (;;) {
    double u = h_integral_n_ + rng.NextDouble() * (h_integral_x1_ - h_integral_n_);
    double x = HIntegralInverse(u);
    double k_real = std::floor(x + 0.5);
    if (k_real < 1.0) k_real = 1.0;
    if (k_real > n) k_real = n;
    if (k_real - x <= s_ || u >= HIntegral(k_real + 0.5) - H(k_real)) {
      auto k = static_cast<uint64_t>(k_real);
      return (k > n_ ? n_ : k) - 1;
    }
  }
}

std::string_view ToString(AccessPattern pattern) {
  switch (pattern) {
    case AccessPattern::kSequential: return "sequential";
    case AccessPattern::kRandom: return "random";
    case AccessPattern::kZipf: return "zipf";
  }
  return "?";
}

IoPatternConfig PatternConfigFrom(const PerfOptions& options, LbaRange range, uint32_t io_blocks, uint64_t seed) {
  IoPatternConfig c;
  if (!IsRandom(options.workload)) c.pattern = AccessPattern::kSequential;
  else if (options.zipf_theta > 0) c.pattern = AccessPattern::kZipf;
  else c.pattern = AccessPattern::kRandom;
  c.range = range;
  c.io_blocks = io_blocks;
  c.zipf_theta = options.zipf_theta;
  c.read_percent = options.read_percent;
  c.seed = seed;
  return c;
}

IoPattern::IoPattern(const IoPatternConfig& config)
    : config_(config),
      slots_(config.range.count / config.io_blocks),
      next_slot_(config.first_slot % slots_),
      read_percent_(config.read_percent),
      rng_(config.seed) {
  if (config.pattern == AccessPattern::kZipf) zipf_.emplace(slots_, config.zipf_theta);
}

Result<IoPattern> IoPattern::Create(const IoPatternConfig& config) {
  if (config.io_blocks == 0) return Fail(EINVAL, "I/O size of 0 blocks");
  if (config.range.count / config.io_blocks == 0) {
    return Fail(EINVAL, "LBA range of " + std::to_string(config.range.count) + " blocks holds no I/O of " +
                            std::to_string(config.io_blocks) + " blocks");
  }
  if (config.range.start > std::numeric_limits<uint64_t>::max() - config.range.count) {
    return Fail(EINVAL, "LBA range " + std::to_string(config.range.start) + ":" +
                            std::to_string(config.range.count) + " overflows 64 bits");
  }
  if (config.read_percent < 0 || config.read_percent > 100) {
    return Fail(EINVAL, "read percentage " + std::to_string(config.read_percent) + " is outside 0..100");
  }
  if (config.pattern == AccessPattern::kZipf && !(config.zipf_theta > 0 && std::isfinite(config.zipf_theta))) {
    return Fail(EINVAL, "zipf needs a theta > 0, got " + std::to_string(config.zipf_theta));
  }
  return IoPattern(config);
}

uint64_t IoPattern::NextLba() {
  uint64_t slot = 0;
  switch (config_.pattern) {
    case AccessPattern::kSequential:
      slot = next_slot_;
      if (++next_slot_ == slots_) next_slot_ = 0;
      break;
    case AccessPattern::kRandom:
      slot = rng_.Below(slots_);
      break;
    case AccessPattern::kZipf:
      slot = zipf_->Next(rng_);
      break;
  }
  return config_.range.start + slot * config_.io_blocks;
}

Result<LbaRange> ResolveLbaRange(const std::optional<LbaRange>& requested, uint64_t namespace_blocks,
                                 uint32_t io_blocks) {
  if (io_blocks == 0) return Fail(EINVAL, "I/O size of 0 blocks");
  if (!requested) {
    if (namespace_blocks < io_blocks) {
      return Fail(EINVAL, "namespace of " + std::to_string(namespace_blocks) + " blocks is smaller than one I/O (" +
                              std::to_string(io_blocks) + " blocks)");
    }
    return LbaRange{0, namespace_blocks};
  }
  const LbaRange& r = *requested;
  std::string text = "--lba-range " + std::to_string(r.start) + ":" + std::to_string(r.count) + ": ";
  std::string ns = "the namespace's " + std::to_string(namespace_blocks) + " blocks";
  if (r.start >= namespace_blocks) return Fail(EINVAL, text + "starts beyond " + ns);
  if (r.count > namespace_blocks - r.start) {
    return Fail(EINVAL, text + "ends at LBA " + std::to_string(r.start + r.count) + ", beyond " + ns);
  }
  if (r.count < io_blocks) {
    return Fail(EINVAL, text + "holds fewer blocks than one I/O (" + std::to_string(io_blocks) + " blocks)");
  }
  return r;
}

uint64_t NumberIosFor(const PerfOptions& options, uint64_t slots) {
  if (options.number_ios != 0) return options.number_ios;
  if (options.number_ios_percent == 0) return 0;
  uint64_t n = static_cast<uint64_t>(static_cast<unsigned __int128>(slots) * options.number_ios_percent / 100);
  return n == 0 ? 1 : n;
}

uint32_t Crc32c(std::span<const uint8_t> data, uint32_t crc) {
  crc = ~crc;
  const uint8_t* p = data.data();
  size_t n = data.size();
  while (n >= 8) {
    uint64_t word = Load64(p) ^ crc;
    crc = kCrc.t[7][word & 0xFF] ^ kCrc.t[6][(word >> 8) & 0xFF] ^ kCrc.t[5][(word >> 16) & 0xFF] ^
          kCrc.t[4][(word >> 24) & 0xFF] ^ kCrc.t[3][(word >> 32) & 0xFF] ^ kCrc.t[2][(word >> 40) & 0xFF] ^
          kCrc.t[1][(word >> 48) & 0xFF] ^ kCrc.t[0][word >> 56];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) crc = (crc >> 8) ^ kCrc.t[0][(crc ^ *p++) & 0xFF];
  return ~crc;
}

Status FillVerifyBlocks(std::span<uint8_t> buffer, uint64_t first_lba, uint32_t block_size, uint64_t seq) {
  NVMUX_TRY(CheckShape(buffer.size(), block_size));
  size_t blocks = buffer.size() / block_size;
  for (size_t i = 0; i < blocks; ++i) FillBlock(buffer.data() + i * block_size, block_size, first_lba + i, seq);
  return Ok();
}

std::string_view ToString(VerifyProblem problem) {
  switch (problem) {
    case VerifyProblem::kUnwritten: return "never written (all zeros)";
    case VerifyProblem::kBadMagic: return "not a verify block (bad magic)";
    case VerifyProblem::kWrongLba: return "holds another LBA's block";
    case VerifyProblem::kWrongSequence: return "holds another write (sequence)";
    case VerifyProblem::kBadData: return "bad data";
    case VerifyProblem::kBadChecksum: return "damaged header (CRC32C)";
  }
  return "?";
}

std::string VerifyMismatch::ToString() const {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "LBA %" PRIu64 ": %.*s at byte %u: expected 0x%" PRIx64 ", found 0x%" PRIx64, lba,
                static_cast<int>(perf::ToString(problem).size()), perf::ToString(problem).data(), byte_offset,
                expected, found);
  return buf;
}

Result<VerifyCheckResult> CheckVerifyBlocks(std::span<const uint8_t> buffer, uint64_t first_lba, uint32_t block_size,
                                            const VerifyCheckOptions& options) {
  NVMUX_TRY(CheckShape(buffer.size(), block_size));
  VerifyCheckResult result;
  size_t blocks = buffer.size() / block_size;
  for (size_t i = 0; i < blocks; ++i) {
    const uint8_t* block = buffer.data() + i * block_size;
    uint64_t lba = first_lba + i;
    ++result.blocks_checked;
    if (AllZero(block, block_size)) {
      if (options.accept_unwritten) {
        ++result.blocks_unwritten;
        continue;
      }
      result.mismatch = Mismatch(lba, VerifyProblem::kUnwritten, kOffMagic, kVerifyMagic, 0);
      return result;
    }
    uint64_t magic = Load64(block + kOffMagic);
    if (magic != kVerifyMagic) {
      result.mismatch = Mismatch(lba, VerifyProblem::kBadMagic, kOffMagic, kVerifyMagic, magic);
      return result;
    }
    uint64_t header_lba = Load64(block + kOffLba);
    if (header_lba != lba) {
      result.mismatch = Mismatch(lba, VerifyProblem::kWrongLba, kOffLba, lba, header_lba);
      return result;
    }
    uint64_t seq = Load64(block + kOffSeq);
    uint32_t crc = BlockCrc(block, block_size);
    if (crc != Load32(block + kOffCrc)) {
      result.mismatch = LocateDamage(block, block_size, lba, seq, crc);
      return result;
    }
    if (options.expected_seq && seq != *options.expected_seq) {
      result.mismatch = Mismatch(lba, VerifyProblem::kWrongSequence, kOffSeq, *options.expected_seq, seq);
      return result;
    }
  }
  return result;
}

}  // namespace nvmux::perf
