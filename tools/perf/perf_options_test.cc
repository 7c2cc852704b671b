#include "tools/perf/perf_options.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace nvmux::perf {
namespace {

const char* const kTrid = "trtype:vfiouser traddr:/tmp/emu";

std::vector<const char*> Argv(const std::vector<std::string>& args) {
  std::vector<const char*> argv{"nvmux-perf"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  return argv;
}

Result<PerfOptions> Parse(const std::vector<std::string>& args) {
  auto argv = Argv(args);
  return ParsePerfOptions(static_cast<int>(argv.size()), argv.data());
}

// The four required options plus extras.
std::vector<std::string> Base(std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"-q", "32", "-o", "4k", "-w", "randread", "-t", "10", "-r", kTrid};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

TEST(PerfOptions, MinimalCommandLine) {
  auto o = Parse(Base());
  ASSERT_TRUE(o) << o.error().ToString();
  EXPECT_EQ(o->queue_depth, 32u);
  EXPECT_EQ(o->io_size_bytes, 4096u);
  EXPECT_EQ(o->workload, Workload::kRandRead);
  EXPECT_EQ(o->read_percent, 100);
  EXPECT_EQ(o->time_seconds, 10u);
  ASSERT_EQ(o->transport_ids.size(), 1u);
  EXPECT_EQ(o->transport_ids[0], kTrid);
  EXPECT_FALSE(o->group_id);
  EXPECT_EQ(o->cores.ToListString(), "0");
  EXPECT_EQ(o->qpairs_per_ns, 1u);
  EXPECT_EQ(o->buffer_alignment, 512u);
  EXPECT_EQ(o->latency_tracking, 0);
  EXPECT_FALSE(o->continue_on_error);
  EXPECT_EQ(o->live, LiveMode::kAuto);
}

TEST(PerfOptions, SizeSuffixes) {
  struct Case {
    const char* text;
    uint32_t bytes;
  };
  for (const Case& c : {Case{"512", 512}, Case{"4k", 4096}, Case{"4K", 4096}, Case{"128K", 131072},
                        Case{"1m", 1u << 20}, Case{"2M", 2u << 20}, Case{"0x1000", 4096}}) {
    auto o = Parse({"-q", "1", "-o", c.text, "-w", "read", "-t", "1", "-r", kTrid});
    ASSERT_TRUE(o) << c.text << ": " << o.error().ToString();
    EXPECT_EQ(o->io_size_bytes, c.bytes) << c.text;
  }
}

TEST(PerfOptions, WorkloadsSetTheMix) {
  EXPECT_EQ(Parse({"-q", "1", "-o", "512", "-w", "write", "-t", "1", "-r", kTrid})->read_percent, 0);
  EXPECT_EQ(Parse({"-q", "1", "-o", "512", "-w", "randwrite", "-t", "1", "-r", kTrid})->read_percent, 0);
  auto rw = Parse({"-q", "1", "-o", "512", "-w", "rw", "-M", "70", "-t", "1", "-r", kTrid});
  ASSERT_TRUE(rw) << rw.error().ToString();
  EXPECT_EQ(rw->workload, Workload::kRw);
  EXPECT_EQ(rw->read_percent, 70);
  auto randrw = Parse({"-q", "1", "-o", "512", "-w", "randrw", "-M", "0", "-t", "1", "-r", kTrid});
  ASSERT_TRUE(randrw);
  EXPECT_EQ(randrw->read_percent, 0);
  EXPECT_TRUE(IsRandom(Workload::kRandRw));
  EXPECT_FALSE(IsRandom(Workload::kRw));
  for (Workload w : {Workload::kRead, Workload::kWrite, Workload::kRandRead, Workload::kRandWrite, Workload::kRw,
                     Workload::kRandRw}) {
    EXPECT_EQ(*ParseWorkload(ToString(w)), w);
  }
}

TEST(PerfOptions, EveryOption) {
  auto o = Parse({"-q", "16", "-o", "128k", "-w", "randrw", "-M", "70", "-t", "30", "-a", "5", "-c", "0x3",
                  "-r", kTrid, "-r", "trtype:vfiouser traddr:/tmp/emu2", "-i", "7", "-P", "2", "--io-queue-size",
                  "256", "-O", "4096", "-A", "4k", "-C", "16", "-LL", "-Q", "10", "--transport-stats", "-s", "1024",
                  "--use-cmb-sqs", "-F", "1.2", "-e", "PRACT=1,PRCHK=GUARD|REFTAG", "-N", "--json", "--verify",
                  "--lba-range", "100:1000", "--live"});
  ASSERT_TRUE(o) << o.error().ToString();
  EXPECT_EQ(o->warmup_seconds, 5u);
  EXPECT_EQ(o->cores.ToListString(), "0-1");
  EXPECT_EQ(o->transport_ids.size(), 2u);
  EXPECT_EQ(o->group_id, 7);
  EXPECT_EQ(o->qpairs_per_ns, 2u);
  EXPECT_EQ(o->io_queue_size, 256u);
  EXPECT_EQ(o->io_unit_size, 4096u);
  EXPECT_EQ(o->buffer_alignment, 4096u);
  EXPECT_EQ(o->max_completions, 16u);
  EXPECT_EQ(o->latency_tracking, 2);
  EXPECT_TRUE(o->continue_on_error);
  EXPECT_EQ(o->error_log_every, 10u);
  EXPECT_TRUE(o->transport_stats);
  EXPECT_TRUE(o->use_cmb_sqs);
  EXPECT_EQ(o->mem_size_mb, 1024u);
  EXPECT_DOUBLE_EQ(o->zipf_theta, 1.2);
  EXPECT_EQ(o->pi, (PiFlags{true, true, true, false}));
  EXPECT_TRUE(o->no_shutdown_notification);
  EXPECT_TRUE(o->json);
  EXPECT_TRUE(o->verify);
  EXPECT_EQ(o->lba_range, (LbaRange{100, 1000}));
  EXPECT_EQ(o->live, LiveMode::kOn);
}

TEST(PerfOptions, CoreListsAndSingleL) {
  auto list = Parse(Base({"-c", "[0-1]", "-L"}));
  ASSERT_TRUE(list) << list.error().ToString();
  EXPECT_EQ(list->cores.ToListString(), "0-1");
  EXPECT_EQ(list->latency_tracking, 1);
  auto commas = Parse(Base({"-c", "0,2", "-L", "-L"}));
  ASSERT_TRUE(commas);
  EXPECT_EQ(commas->cores.ToListString(), "0,2");
  EXPECT_EQ(commas->latency_tracking, 2);
}

TEST(PerfOptions, GroupOrTransport) {
  auto group_only = Parse({"-q", "1", "-o", "4k", "-w", "read", "-t", "1", "-i", "3"});
  ASSERT_TRUE(group_only) << group_only.error().ToString();
  EXPECT_EQ(group_only->group_id, 3);
  EXPECT_TRUE(group_only->transport_ids.empty());
  auto both = Parse(Base({"-i", "0"}));
  ASSERT_TRUE(both);
  EXPECT_EQ(both->group_id, 0);
  auto neither = Parse({"-q", "1", "-o", "4k", "-w", "read", "-t", "1"});
  ASSERT_FALSE(neither);
  EXPECT_NE(neither.error().message.find("-r"), std::string::npos);
  EXPECT_NE(neither.error().message.find("-i"), std::string::npos);
}

TEST(PerfOptions, NumberOfIos) {
  auto n = Parse(Base({"-d", "1000"}));
  ASSERT_TRUE(n) << n.error().ToString();
  EXPECT_EQ(n->number_ios, 1000u);
  auto k = Parse(Base({"-d", "1k"}));
  ASSERT_TRUE(k);
  EXPECT_EQ(k->number_ios, 1024u);
  auto pct = Parse(Base({"-d", "50%"}));
  ASSERT_TRUE(pct) << pct.error().ToString();
  EXPECT_EQ(pct->number_ios, 0u);
  EXPECT_EQ(pct->number_ios_percent, 50u);
}

TEST(PerfOptions, PiFlagForms) {
  EXPECT_EQ(*ParsePiFlags("-e", "PRACT,PRCHK_GUARD,PRCHK_APPTAG"), (PiFlags{true, true, false, true}));
  EXPECT_EQ(*ParsePiFlags("-e", "PRACT=0,PRCHK=REFTAG"), (PiFlags{false, false, true, false}));
  EXPECT_EQ(*ParsePiFlags("-e", "PRCHK_REFTAG,PRACT=1"), (PiFlags{true, false, true, false}));
  for (const char* bad : {"", "PRACT=2", "PRCHK=", "PRCHK=CRC", "GUARD", "PRCHK_X", "pract"}) {
    auto r = ParsePiFlags("-e", bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message.find("-e "), std::string::npos) << r.error().message;
  }
}

TEST(PerfOptions, LbaRangeText) {
  EXPECT_EQ(*ParseLbaRange("--lba-range", "0:1048576"), (LbaRange{0, 1048576}));
  EXPECT_EQ(*ParseLbaRange("--lba-range", "0x100:0x10"), (LbaRange{256, 16}));
  for (const char* bad : {"5", "5:", ":5", "a:b", "5:0", "1:18446744073709551615", "-1:5"}) {
    auto r = ParseLbaRange("--lba-range", bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message.find(std::string("--lba-range ") + bad), std::string::npos) << r.error().message;
  }
}

// Each bad value: the error names the option and the value, and says what is allowed.
TEST(PerfOptions, ErrorsNameOptionAndValue) {
  struct Case {
    std::vector<std::string> args;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {Base({"-q", "0"}), {"-q 0", "at least 1"}},
      {Base({"-q", "abc"}), {"-q abc", "whole number"}},
      {Base({"-q", "70000"}), {"-q 70000", "1..65536"}},
      {Base({"-o", "4x"}), {"-o 4x", "k, m or g suffix"}},
      {Base({"-o", "0"}), {"-o 0", "greater than 0"}},
      {Base({"-o", "8g"}), {"-o 8g", "below 4g"}},
      {Base({"-w", "foo"}), {"-w foo: allowed read, write, randread, randwrite, rw, randrw"}},
      {Base({"-M", "50"}), {"-M 50", "-M requires -w rw or randrw", "randread"}},
      {{"-q", "1", "-o", "4k", "-w", "rw", "-M", "101", "-t", "1", "-r", kTrid}, {"-M 101", "0..100"}},
      {{"-q", "1", "-o", "4k", "-w", "randrw", "-t", "1", "-r", kTrid}, {"-w randrw", "-M"}},
      {Base({"-t", "0"}), {"-t 0", "at least 1"}},
      {Base({"-a", "x"}), {"-a x", "warm-up"}},
      {Base({"-c", "zz"}), {"-c zz", "hex mask"}},
      {Base({"-c", "[3-1]"}), {"-c [3-1]", "reversed"}},
      {Base({"-r", ""}), {"-r ''", "must not be empty"}},
      {Base({"-i", "x"}), {"-i x", "group id"}},
      {Base({"-i", "1000000"}), {"-i 1000000", "0..999999"}},
      {Base({"-P", "0"}), {"-P 0", "at least 1"}},
      {Base({"--io-queue-size", "1"}), {"--io-queue-size 1", "2..65536"}},
      {Base({"-O", "6"}), {"-O 6", "multiple of 4"}},
      {Base({"-A", "100"}), {"-A 100", "power of two"}},
      {Base({"-A", "32"}), {"-A 32", "from 64"}},
      {Base({"-C", "-3"}), {"-C -3", "whole number"}},
      {Base({"-s", "lots"}), {"-s lots", "memory size"}},
      {Base({"-Q", "0"}), {"-Q 0", "at least 1"}},
      {Base({"-F", "-1"}), {"-F -1", ">= 0"}},
      {Base({"-F", "abc"}), {"-F abc", ">= 0"}},
      {{"-q", "1", "-o", "4k", "-w", "read", "-t", "1", "-r", kTrid, "-F", "1.2"}, {"-F 1.2", "random workload"}},
      {Base({"-e", "PRCHK=CRC"}), {"-e PRCHK=CRC", "PRCHK=CRC"}},
      {Base({"--lba-range", "7"}), {"--lba-range 7", "START:COUNT"}},
      {Base({"-d", "10"}), {"-d 10", "queue depth (-q 32)"}},
      {Base({"-d", "0"}), {"-d 0", "number of I/Os"}},
      {Base({"-d", "0%"}), {"-d 0%", "percentage"}},
      {Base({"-d", "1000", "-a", "1"}), {"-d 1000", "warm-up"}},
      {Base({"-LLL"}), {"-L given 3 times"}},
      {Base({"--live", "--no-live"}), {"--live and --no-live"}},
      {Base({"--bogus"}), {"--bogus"}},
      {Base({"stray"}), {"stray"}},
      {Base({"-q"}), {"--io-depth", "needs a value"}},
      {{"-o", "4k", "-w", "read", "-t", "1", "-r", kTrid}, {"missing -q"}},
      {{"-q", "1", "-w", "read", "-t", "1", "-r", kTrid}, {"missing -o"}},
      {{"-q", "1", "-o", "4k", "-t", "1", "-r", kTrid}, {"missing -w"}},
      {{"-q", "1", "-o", "4k", "-w", "read", "-r", kTrid}, {"missing -t"}},
  };
  for (const Case& c : cases) {
    std::string line;
    for (const std::string& a : c.args) line += a + " ";
    auto r = Parse(c.args);
    ASSERT_FALSE(r) << line;
    EXPECT_EQ(r.error().code, EINVAL) << line;
    for (const std::string& needle : c.needles) {
      EXPECT_NE(r.error().message.find(needle), std::string::npos)
          << line << "\n  message: " << r.error().message << "\n  missing: " << needle;
    }
  }
}

TEST(PerfOptions, LastValueWinsLikeGetopt) {
  auto o = Parse(Base({"-q", "8"}));
  ASSERT_TRUE(o) << o.error().ToString();
  EXPECT_EQ(o->queue_depth, 8u);
}

TEST(PerfOptions, HelpIsAnOutcomeNotAnError) {
  for (const char* flag : {"-h", "--help"}) {
    std::vector<std::string> args{flag};
    auto argv = Argv(args);
    auto r = ParsePerfCommandLine(static_cast<int>(argv.size()), argv.data());
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_TRUE(r->help_requested);
    for (const char* needle : {"nvmux-perf", "-q,--io-depth", "--lba-range", "--verify", "Examples:", "randrw"}) {
      EXPECT_NE(r->help_text.find(needle), std::string::npos) << needle;
    }
    EXPECT_FALSE(ParsePerfOptions(static_cast<int>(argv.size()), argv.data()));
  }
  EXPECT_NE(PerfHelpText().find("Examples:"), std::string::npos);
  auto run = Base();
  auto argv = Argv(run);
  auto r = ParsePerfCommandLine(static_cast<int>(argv.size()), argv.data());
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->help_requested);
}

TEST(PerfOptions, LiveLineRule) {
  PerfOptions o;
  EXPECT_TRUE(ShouldPrintLive(o, true));
  EXPECT_FALSE(ShouldPrintLive(o, false));
  o.json = true;
  EXPECT_FALSE(ShouldPrintLive(o, true));
  o.live = LiveMode::kOn;
  EXPECT_TRUE(ShouldPrintLive(o, false));
  o.live = LiveMode::kOff;
  EXPECT_FALSE(ShouldPrintLive(o, true));
}

TEST(PerfOptions, IoSizeAgainstBlockSize) {
  PerfOptions o;
  o.io_size_bytes = 4096;
  EXPECT_EQ(*IoSizeInBlocks(o, 512), 8u);
  EXPECT_EQ(*IoSizeInBlocks(o, 4096), 1u);
  o.io_size_bytes = 1000;
  auto r = IoSizeInBlocks(o, 512);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("-o 1000: I/O size must be a multiple of"), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("512 bytes"), std::string::npos);
  o.io_size_bytes = 512;
  EXPECT_FALSE(IoSizeInBlocks(o, 4096));
}

}  // namespace
}  // namespace nvmux::perf
