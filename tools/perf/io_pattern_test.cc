#include "tools/perf/io_pattern.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace nvmux::perf {
namespace {

IoPattern Make(AccessPattern pattern, LbaRange range, uint32_t io_blocks, double theta = 0, int read_percent = 100,
               uint64_t seed = 1) {
  IoPatternConfig c;
  c.pattern = pattern;
  c.range = range;
  c.io_blocks = io_blocks;
  c.zipf_theta = theta;
  c.read_percent = read_percent;
  c.seed = seed;
  auto p = IoPattern::Create(c);
  EXPECT_TRUE(p) << p.error().ToString();
  return std::move(*p);
}

TEST(Crc32c, KnownVectorsAndChaining) {
  const char* digits = "123456789";
  auto bytes = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(digits), 9);
  EXPECT_EQ(Crc32c(bytes), 0xE3069283u);
  EXPECT_EQ(Crc32c(bytes.subspan(4), Crc32c(bytes.first(4))), 0xE3069283u);
  std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(Crc32c(zeros), 0x8A9136AAu);  // RFC 3720 B.4
  EXPECT_EQ(Crc32c({}), 0u);
}

TEST(FastRandom, SeededAndInRange) {
  FastRandom a(7), b(7), c(8);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    uint64_t x = a.Next();
    EXPECT_EQ(x, b.Next());
    differs |= x != c.Next();
  }
  EXPECT_TRUE(differs);
  FastRandom r(0);  // seed 0 must not stick at zero
  uint64_t seen_or = 0;
  for (int i = 0; i < 1000; ++i) {
    EXPECT_LT(r.Below(10), 10u);
    double d = r.NextDouble();
    EXPECT_GE(d, 0.0);
    EXPECT_LT(d, 1.0);
    seen_or |= r.Next();
  }
  EXPECT_NE(seen_or, 0u);
  EXPECT_NE(MakeSeed(1), MakeSeed(2));
}

TEST(IoPattern, SequentialWrapsAtTheRangeEnd) {
  // 10 blocks, 3 per I/O: slots at 100, 103, 106; the last block is never used.
  IoPattern p = Make(AccessPattern::kSequential, {100, 10}, 3);
  EXPECT_EQ(p.slots(), 3u);
  std::vector<uint64_t> lbas;
  for (int i = 0; i < 7; ++i) lbas.push_back(p.NextLba());
  EXPECT_EQ(lbas, (std::vector<uint64_t>{100, 103, 106, 100, 103, 106, 100}));

  IoPatternConfig c = p.config();
  c.first_slot = 5;  // 5 mod 3 = slot 2
  auto from_two = IoPattern::Create(c);
  ASSERT_TRUE(from_two);
  EXPECT_EQ(from_two->NextLba(), 106u);
  EXPECT_EQ(from_two->NextLba(), 100u);
}

TEST(IoPattern, RandomStaysInTheRangeOnSlotBoundaries) {
  IoPattern p = Make(AccessPattern::kRandom, {1000, 64}, 8, 0, 100, 99);
  std::vector<int> hits(8, 0);
  for (int i = 0; i < 8000; ++i) {
    uint64_t lba = p.NextLba();
    ASSERT_GE(lba, 1000u);
    ASSERT_LE(lba + 8, 1064u);
    ASSERT_EQ((lba - 1000) % 8, 0u);
    ++hits[(lba - 1000) / 8];
  }
  for (int h : hits) EXPECT_NEAR(h, 1000, 150);  // uniform-ish
  IoPattern again = Make(AccessPattern::kRandom, {1000, 64}, 8, 0, 100, 99);
  IoPattern same = Make(AccessPattern::kRandom, {1000, 64}, 8, 0, 100, 99);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(again.NextLba(), same.NextLba());
}

TEST(IoPattern, ZipfFavoursLowOffsets) {
  const uint64_t slots = 1000;
  IoPattern p = Make(AccessPattern::kZipf, {0, slots * 8}, 8, 1.2, 100, 5);
  std::vector<uint64_t> hits(slots, 0);
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    uint64_t lba = p.NextLba();
    ASSERT_LT(lba, slots * 8);
    ASSERT_EQ(lba % 8, 0u);
    ++hits[lba / 8];
  }
  EXPECT_GT(hits[0], hits[1]);
  EXPECT_GT(hits[1], hits[10]);
  uint64_t low = 0, high = 0;
  for (uint64_t s = 0; s < slots / 10; ++s) low += hits[s];
  for (uint64_t s = slots - slots / 10; s < slots; ++s) high += hits[s];
  EXPECT_GT(low, static_cast<uint64_t>(0.75 * n));  // theta 1.2: the first 10% take ~83%
  EXPECT_LT(high, low / 50);

  // A uniform random pattern over the same range spreads evenly by contrast.
  IoPattern u = Make(AccessPattern::kRandom, {0, slots * 8}, 8, 0, 100, 5);
  uint64_t uniform_low = 0;
  for (int i = 0; i < n; ++i) uniform_low += u.NextLba() / 8 < slots / 10 ? 1 : 0;
  EXPECT_NEAR(static_cast<double>(uniform_low) / n, 0.1, 0.01);
}

// The sampler matches the exact zipf probabilities, also at theta 1 where
// SPDK's closed form is singular.
TEST(ZipfGenerator, MatchesTheDistribution) {
  for (double theta : {0.5, 1.0, 1.2, 2.0}) {
    const uint64_t n = 10;
    ZipfGenerator zipf(n, theta);
    FastRandom rng(3);
    std::vector<double> counts(n, 0);
    const int samples = 400000;
    for (int i = 0; i < samples; ++i) {
      uint64_t k = zipf.Next(rng);
      ASSERT_LT(k, n);
      counts[k] += 1;
    }
    double norm = 0;
    for (uint64_t k = 1; k <= n; ++k) norm += std::pow(static_cast<double>(k), -theta);
    for (uint64_t k = 0; k < n; ++k) {
      double want = std::pow(static_cast<double>(k + 1), -theta) / norm;
      EXPECT_NEAR(counts[k] / samples, want, 0.005) << "theta " << theta << " rank " << k;
    }
  }
  ZipfGenerator one(1, 1.2);
  FastRandom rng(1);
  EXPECT_EQ(one.Next(rng), 0u);
}

TEST(IoPattern, ReadWriteMix) {
  IoPattern mixed = Make(AccessPattern::kSequential, {0, 8}, 1, 0, 70, 11);
  int reads = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) reads += mixed.Next().is_read ? 1 : 0;
  EXPECT_NEAR(static_cast<double>(reads) / n, 0.70, 0.01);
  IoPattern all_reads = Make(AccessPattern::kRandom, {0, 8}, 1, 0, 100);
  IoPattern all_writes = Make(AccessPattern::kRandom, {0, 8}, 1, 0, 0);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_TRUE(all_reads.NextIsRead());
    EXPECT_FALSE(all_writes.NextIsRead());
  }
}

TEST(IoPattern, CreateRejectsImpossibleConfigs) {
  IoPatternConfig c;
  c.range = {0, 8};
  c.io_blocks = 0;
  EXPECT_FALSE(IoPattern::Create(c));
  c.io_blocks = 16;
  auto small = IoPattern::Create(c);
  ASSERT_FALSE(small);
  EXPECT_NE(small.error().message.find("holds no I/O"), std::string::npos);
  c.io_blocks = 1;
  c.read_percent = 101;
  EXPECT_FALSE(IoPattern::Create(c));
  c.read_percent = 50;
  c.pattern = AccessPattern::kZipf;
  c.zipf_theta = 0;
  EXPECT_FALSE(IoPattern::Create(c));
  c.range = {UINT64_MAX - 2, 8};
  c.pattern = AccessPattern::kRandom;
  EXPECT_FALSE(IoPattern::Create(c));
}

TEST(IoPattern, ConfigFromOptions) {
  PerfOptions o;
  o.workload = Workload::kRandRw;
  o.read_percent = 30;
  o.zipf_theta = 1.1;
  IoPatternConfig c = PatternConfigFrom(o, {10, 100}, 4, 77);
  EXPECT_EQ(c.pattern, AccessPattern::kZipf);
  EXPECT_EQ(c.read_percent, 30);
  EXPECT_EQ(c.range, (LbaRange{10, 100}));
  EXPECT_EQ(c.io_blocks, 4u);
  EXPECT_EQ(c.seed, 77u);
  o.zipf_theta = 0;
  EXPECT_EQ(PatternConfigFrom(o, {0, 8}, 1, 1).pattern, AccessPattern::kRandom);
  o.workload = Workload::kWrite;
  EXPECT_EQ(PatternConfigFrom(o, {0, 8}, 1, 1).pattern, AccessPattern::kSequential);
  EXPECT_EQ(ToString(AccessPattern::kZipf), "zipf");
}

TEST(LbaRanges, ResolveAgainstTheNamespace) {
  EXPECT_EQ(*ResolveLbaRange(std::nullopt, 1000, 8), (LbaRange{0, 1000}));
  EXPECT_EQ(*ResolveLbaRange(LbaRange{500, 500}, 1000, 8), (LbaRange{500, 500}));
  struct Case {
    LbaRange range;
    const char* needle;
  };
  for (const Case& c : {Case{{1000, 1}, "--lba-range 1000:1: starts beyond the namespace's 1000 blocks"},
                        Case{{900, 200}, "--lba-range 900:200: ends at LBA 1100"},
                        Case{{0, 4}, "--lba-range 0:4: holds fewer blocks than one I/O (8 blocks)"}}) {
    auto r = ResolveLbaRange(c.range, 1000, 8);
    ASSERT_FALSE(r) << c.needle;
    EXPECT_NE(r.error().message.find(c.needle), std::string::npos) << r.error().message;
  }
  auto tiny = ResolveLbaRange(std::nullopt, 4, 8);
  ASSERT_FALSE(tiny);
  EXPECT_NE(tiny.error().message.find("smaller than one I/O"), std::string::npos);
}

TEST(LbaRanges, NumberOfIos) {
  PerfOptions o;
  EXPECT_EQ(NumberIosFor(o, 1000), 0u);
  o.number_ios = 5000;
  EXPECT_EQ(NumberIosFor(o, 1000), 5000u);
  o.number_ios = 0;
  o.number_ios_percent = 50;
  EXPECT_EQ(NumberIosFor(o, 1000), 500u);
  o.number_ios_percent = 1;
  EXPECT_EQ(NumberIosFor(o, 10), 1u);  // never rounds down to "no limit"
}

// --- verify blocks ---

std::vector<uint8_t> Written(uint64_t first_lba, size_t blocks, uint32_t block_size, uint64_t seq) {
  std::vector<uint8_t> buf(blocks * block_size, 0xEE);
  Status s = FillVerifyBlocks(buf, first_lba, block_size, seq);
  EXPECT_TRUE(s) << s.error().ToString();
  return buf;
}

VerifyCheckResult Check(const std::vector<uint8_t>& buf, uint64_t first_lba, uint32_t block_size,
                        VerifyCheckOptions options = {}) {
  auto r = CheckVerifyBlocks(buf, first_lba, block_size, options);
  EXPECT_TRUE(r) << r.error().ToString();
  return *r;
}

TEST(Verify, IntactBlocksPass) {
  for (uint32_t block_size : {512u, 4096u, 520u, 33u}) {
    auto buf = Written(1000, 8, block_size, 7);
    VerifyCheckResult r = Check(buf, 1000, block_size, {false, 7});
    EXPECT_TRUE(r.ok()) << block_size << ": " << r.mismatch->ToString();
    EXPECT_EQ(r.blocks_checked, 8u);
    uint64_t magic;
    std::memcpy(&magic, buf.data(), 8);
    EXPECT_EQ(magic, kVerifyMagic);
    EXPECT_EQ(std::memcmp(buf.data(), "nvmuxvfy", 8), 0);
  }
  // The filler depends on both the LBA and the sequence.
  auto a = Written(1000, 1, 512, 7), b = Written(1000, 1, 512, 8), c = Written(1001, 1, 512, 7);
  EXPECT_NE(std::memcmp(a.data() + 32, b.data() + 32, 480), 0);
  EXPECT_NE(std::memcmp(a.data() + 32, c.data() + 32, 480), 0);
}

TEST(Verify, SingleFlippedByteNamesTheLba) {
  auto buf = Written(1000, 8, 512, 7);
  const size_t at = 3 * 512 + 300;
  uint8_t original = buf[at];
  buf[at] ^= 0x10;
  VerifyCheckResult r = Check(buf, 1000, 512);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.mismatch->lba, 1003u);
  EXPECT_EQ(r.mismatch->problem, VerifyProblem::kBadData);
  EXPECT_EQ(r.mismatch->byte_offset, 300u);
  EXPECT_EQ(r.mismatch->expected, original);
  EXPECT_EQ(r.mismatch->found, original ^ 0x10u);
  EXPECT_EQ(r.blocks_checked, 4u);
  std::string text = r.mismatch->ToString();
  EXPECT_NE(text.find("LBA 1003"), std::string::npos) << text;
  EXPECT_NE(text.find("bad data at byte 300"), std::string::npos) << text;

  // Every byte of a block is covered: flip each in turn.
  auto clean = Written(50, 1, 512, 9);
  for (size_t i = 0; i < 512; ++i) {
    auto damaged = clean;
    damaged[i] ^= 0x01;
    VerifyCheckResult d = Check(damaged, 50, 512);
    ASSERT_FALSE(d.ok()) << "byte " << i;
    EXPECT_EQ(d.mismatch->lba, 50u);
  }
}

TEST(Verify, HeaderProblemsAreTold) {
  auto buf = Written(1000, 4, 512, 7);
  auto wrong_place = Check(buf, 2000, 512);  // read from where it was not written
  ASSERT_FALSE(wrong_place.ok());
  EXPECT_EQ(wrong_place.mismatch->problem, VerifyProblem::kWrongLba);
  EXPECT_EQ(wrong_place.mismatch->expected, 2000u);
  EXPECT_EQ(wrong_place.mismatch->found, 1000u);

  auto stale = Check(buf, 1000, 512, {false, 8});
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.mismatch->problem, VerifyProblem::kWrongSequence);
  EXPECT_EQ(stale.mismatch->expected, 8u);
  EXPECT_EQ(stale.mismatch->found, 7u);

  auto magic = buf;
  magic[512 + 2] ^= 0xFF;
  auto m = Check(magic, 1000, 512);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.mismatch->lba, 1001u);
  EXPECT_EQ(m.mismatch->problem, VerifyProblem::kBadMagic);

  auto crc = buf;
  crc[2 * 512 + 25] ^= 0x04;
  auto c = Check(crc, 1000, 512);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.mismatch->lba, 1002u);
  EXPECT_EQ(c.mismatch->problem, VerifyProblem::kBadChecksum);

  auto random_bytes = std::vector<uint8_t>(512, 0x5A);
  EXPECT_EQ(Check(random_bytes, 0, 512).mismatch->problem, VerifyProblem::kBadMagic);
}

TEST(Verify, UnwrittenBlocksAreDistinguished) {
  auto buf = Written(0, 4, 512, 1);
  std::memset(buf.data() + 2 * 512, 0, 512);  // block 2 never written
  auto strict = Check(buf, 0, 512);
  ASSERT_FALSE(strict.ok());
  EXPECT_EQ(strict.mismatch->lba, 2u);
  EXPECT_EQ(strict.mismatch->problem, VerifyProblem::kUnwritten);
  EXPECT_NE(strict.mismatch->ToString().find("never written"), std::string::npos);

  auto lenient = Check(buf, 0, 512, {true, std::nullopt});
  EXPECT_TRUE(lenient.ok());
  EXPECT_EQ(lenient.blocks_unwritten, 1u);
  EXPECT_EQ(lenient.blocks_checked, 4u);

  // Zeros with one stray byte are not "unwritten".
  buf[2 * 512 + 200] = 1;
  auto stray = Check(buf, 0, 512, {true, std::nullopt});
  ASSERT_FALSE(stray.ok());
  EXPECT_EQ(stray.mismatch->lba, 2u);
  EXPECT_EQ(stray.mismatch->problem, VerifyProblem::kBadMagic);
}

TEST(Verify, ShapeErrors) {
  std::vector<uint8_t> buf(1000);
  EXPECT_FALSE(FillVerifyBlocks(buf, 0, 512, 1));
  EXPECT_FALSE(FillVerifyBlocks(buf, 0, 8, 1));
  auto r = CheckVerifyBlocks(buf, 0, 512);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EINVAL);
  EXPECT_NE(r.error().message.find("1000 bytes"), std::string::npos);
}

}  // namespace
}  // namespace nvmux::perf
