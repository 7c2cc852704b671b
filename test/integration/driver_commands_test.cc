// The driver's NVM commands other than plain Read/Write against a real
// nvmux-emu — Compare, Write Zeroes, Write Uncorrectable, Dataset
// Management, Flush, Copy, Verify, reservations, fused Compare and Write,
// raw commands, Abort — and the submission rules: request queueing when
// trackers run out, ENOMEM when requests run out, EINVAL for malformed
// requests, and the queue pair's error injection.
#include <cstring>
#include <vector>

#include "shm/base/clock.h"
#include "test/integration/driver_test_support.h"

namespace nvmux::test {
namespace {

namespace nvm = spec::nvm;
namespace resv = spec::resv;

class CommandsTest : public DriverTest {
 protected:
  std::vector<std::string> EmuArgs() const override { return {"--mdts", "2", "--ns", "size=64M"}; }
  // Reads `count` blocks at `lba`; returns the completion and the data.
  spec::Cqe ReadInto(DmaBuffer& buf, uint64_t lba, uint32_t count) {
    return Run([&](CompletionFn fn, void* arg) { return qpair().Read(ns(), buf.data(), lba, count, fn, arg); });
  }
  void ExpectStatus(const spec::Cqe& c, uint8_t sct, uint8_t sc) {
    EXPECT_EQ(c.sct(), sct) << StatusOf(c);
    EXPECT_EQ(c.sc(), sc) << StatusOf(c);
  }
};

TEST_F(CommandsTest, CompareMatchesAndMismatches) {
  ASSERT_TRUE(ns().supports_compare());
  WritePattern(ns(), 500, 8, 7);
  DmaBuffer buf = Alloc(8 * 512);
  FillPattern(buf.data(), 8 * 512, 7);
  spec::Cqe c = Run([&](CompletionFn fn, void* arg) { return qpair().Compare(ns(), buf.data(), 500, 8, fn, arg); });
  ExpectStatus(c, 0, 0);
  static_cast<uint8_t*>(buf.data())[8 * 512 - 1] ^= 1;
  c = Run([&](CompletionFn fn, void* arg) { return qpair().Compare(ns(), buf.data(), 500, 8, fn, arg); });
  ExpectStatus(c, spec::sct::kMediaError, spec::sc::kCompareFailure);
  // Split compares (over MDTS) report the mismatch of the child that saw it.
  WritePattern(ns(), 1000, 64, 8);
  DmaBuffer big = Alloc(64 * 512);
  FillPattern(big.data(), 64 * 512, 8);
  c = Run([&](CompletionFn fn, void* arg) { return qpair().Compare(ns(), big.data(), 1000, 64, fn, arg); });
  ExpectStatus(c, 0, 0);
  static_cast<uint8_t*>(big.data())[40 * 512] ^= 0x80;
  c = Run([&](CompletionFn fn, void* arg) { return qpair().Compare(ns(), big.data(), 1000, 64, fn, arg); });
  ExpectStatus(c, spec::sct::kMediaError, spec::sc::kCompareFailure);
}

TEST_F(CommandsTest, WriteZeroesReadsBackZeroesAndLeavesNeighbours) {
  ASSERT_TRUE(ns().supports_write_zeroes());
  WritePattern(ns(), 600, 64, 9);
  spec::Cqe c = Run([&](CompletionFn fn, void* arg) { return qpair().WriteZeroes(ns(), 610, 20, fn, arg); });
  ExpectStatus(c, 0, 0);
  std::vector<uint8_t> want(64 * 512);
  FillPattern(want.data(), want.size(), 9);
  std::memset(want.data() + 10 * 512, 0, 20 * 512);
  DmaBuffer got = Alloc(64 * 512);
  ExpectStatus(ReadInto(got, 600, 64), 0, 0);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size()), 0);
  // Larger than MDTS: Write Zeroes moves no data, so only the boundary splits it.
  WritePattern(ns(), 2048, 1024, 10);
  c = Run([&](CompletionFn fn, void* arg) { return qpair().WriteZeroes(ns(), 2048, 1024, fn, arg); });
  ExpectStatus(c, 0, 0);
  ExpectZeroes(ns(), 2048, 1024);
}

TEST_F(CommandsTest, WriteUncorrectableFailsReadsUntilRewritten) {
  ASSERT_TRUE(ns().supports_write_uncorrectable());
  WritePattern(ns(), 700, 8, 11);
  spec::Cqe c = Run([&](CompletionFn fn, void* arg) { return qpair().WriteUncorrectable(ns(), 702, 2, fn, arg); });
  ExpectStatus(c, 0, 0);
  DmaBuffer buf = Alloc(8 * 512);
  ExpectStatus(ReadInto(buf, 700, 2), 0, 0);
  ExpectStatus(ReadInto(buf, 702, 1), spec::sct::kMediaError, spec::sc::kUnrecoveredReadError);
  ExpectStatus(ReadInto(buf, 700, 8), spec::sct::kMediaError, spec::sc::kUnrecoveredReadError);
  WritePattern(ns(), 702, 2, 12);
  ExpectPattern(ns(), 702, 2, 12);
  // In a split read (64 blocks: two children) one failing child fails the
  // whole request, reported once.
  WritePattern(ns(), 700, 64, 13);
  c = Run([&](CompletionFn fn, void* arg) { return qpair().WriteUncorrectable(ns(), 750, 1, fn, arg); });
  ExpectStatus(c, 0, 0);
  DmaBuffer big = Alloc(64 * 512);
  uint64_t split_before = qpair().statistics().split;
  ExpectStatus(ReadInto(big, 700, 64), spec::sct::kMediaError, spec::sc::kUnrecoveredReadError);
  EXPECT_EQ(qpair().statistics().split - split_before, 1u);
  EXPECT_EQ(qpair().outstanding(), 0u);
}

TEST_F(CommandsTest, DatasetManagementDeallocateReadsBackZeroes) {
  ASSERT_TRUE(ns().supports_deallocate());
  WritePattern(ns(), 800, 64, 13);
  DmaBuffer ranges = Alloc(2 * sizeof(spec::DsmRange));
  auto* r = static_cast<spec::DsmRange*>(ranges.data());
  r[0] = {0, 16, 808};
  r[1] = {0, 8, 840};
  spec::Cqe c = Run([&](CompletionFn fn, void* arg) {
    return qpair().DatasetManagement(ns(), spec::kDsmAttrDeallocate, r, 2, fn, arg);
  });
  ExpectStatus(c, 0, 0);
  std::vector<uint8_t> want(64 * 512);
  FillPattern(want.data(), want.size(), 13);
  std::memset(want.data() + 8 * 512, 0, 16 * 512);
  std::memset(want.data() + 40 * 512, 0, 8 * 512);
  DmaBuffer got = Alloc(64 * 512);
  ExpectStatus(ReadInto(got, 800, 64), 0, 0);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size()), 0);
  // A range past the end is refused before it reaches the device.
  r[1] = {0, 8, ns().num_sectors() - 4};
  Done d;
  Status st = qpair().DatasetManagement(ns(), spec::kDsmAttrDeallocate, r, 2, OnDone, &d);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EINVAL) << st.error().ToString();
  st = qpair().DatasetManagement(ns(), spec::kDsmAttrDeallocate, r, 0, OnDone, &d);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EINVAL);
  EXPECT_FALSE(d.done());
}

TEST_F(CommandsTest, FlushCompletes) {
  ASSERT_TRUE(ns().supports_flush());
  WritePattern(ns(), 900, 4, 14);
  spec::Cqe c = Run([&](CompletionFn fn, void* arg) { return qpair().Flush(ns(), fn, arg); });
  ExpectStatus(c, 0, 0);
  ExpectPattern(ns(), 900, 4, 14);
}

TEST_F(CommandsTest, CopyConcatenatesSourceRangesAtTheDestination) {
  ASSERT_TRUE(ns().supports_copy());
  WritePattern(ns(), 3000, 16, 15);
  WritePattern(ns(), 3100, 8, 16);
  DmaBuffer ranges = Alloc(2 * sizeof(spec::CopySourceRange));
  auto* r = static_cast<spec::CopySourceRange*>(ranges.data());
  r[0] = spec::CopySourceRange{};
  r[0].slba = 3000;
  r[0].nlb = 15;  // 0's based
  r[1] = spec::CopySourceRange{};
  r[1].slba = 3100;
  r[1].nlb = 7;
  spec::Cqe c = Run([&](CompletionFn fn, void* arg) { return qpair().Copy(ns(), r, 2, 3200, fn, arg); });
  ExpectStatus(c, 0, 0);
  ExpectPattern(ns(), 3200, 16, 15);
  ExpectPattern(ns(), 3216, 8, 16);
  Done d;
  Status st = qpair().Copy(ns(), r, 0, 3200, OnDone, &d);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EINVAL);
  st = qpair().Copy(ns(), r, 2, ns().num_sectors(), OnDone, &d);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EINVAL);
}

TEST_F(CommandsTest, VerifyReadsTheMedia) {
  ASSERT_TRUE(ns().supports_verify());
  WritePattern(ns(), 3300, 4, 17);
  spec::Cqe c = Run([&](CompletionFn fn, void* arg) { return qpair().Verify(ns(), 3300, 4, fn, arg); });
  ExpectStatus(c, 0, 0);
  c = Run([&](CompletionFn fn, void* arg) { return qpair().WriteUncorrectable(ns(), 3301, 1, fn, arg); });
  ExpectStatus(c, 0, 0);
  c = Run([&](CompletionFn fn, void* arg) { return qpair().Verify(ns(), 3300, 4, fn, arg); });
  ExpectStatus(c, spec::sct::kMediaError, spec::sc::kUnrecoveredReadError);
}

TEST_F(CommandsTest, ReservationRegisterAcquireReportRelease) {
  ASSERT_TRUE(ns().supports_reservations());
  DmaBuffer reg = Alloc(sizeof(spec::ReservationRegisterData));
  DmaBuffer acq = Alloc(sizeof(spec::ReservationAcquireData));
  DmaBuffer report = Alloc(4096);
  auto* rd = static_cast<spec::ReservationRegisterData*>(reg.data());
  auto* ad = static_cast<spec::ReservationAcquireData*>(acq.data());
  struct Report {
    spec::ReservationStatusHeader header;
    spec::RegisteredController ctrl[2];
  };
  auto read_report = [&]() {
    std::memset(report.data(), 0xEE, 4096);
    spec::Cqe c = Run([&](CompletionFn fn, void* arg) {
      return qpair().ReservationReport(ns(), report.data(), 4096, false, fn, arg);
    });
    ExpectStatus(c, 0, 0);
    Report out;
    std::memcpy(&out, report.data(), sizeof(out));
    return out;
  };
  auto regctl = [](const Report& r) { return r.header.regctl[0] | (r.header.regctl[1] << 8); };

  *rd = {0, 0xA1};
  spec::Cqe c = Run([&](CompletionFn fn, void* arg) {
    return qpair().ReservationRegister(ns(), rd, false, resv::kRegister, 0, fn, arg);
  });
  ExpectStatus(c, 0, 0);
  Report r = read_report();
  EXPECT_EQ(regctl(r), 1);
  EXPECT_EQ(r.header.rtype, 0);
  EXPECT_EQ(r.ctrl[0].rkey, 0xA1u);
  EXPECT_EQ(r.ctrl[0].rcsts & 1, 0);

  *ad = {0xA1, 0};
  c = Run([&](CompletionFn fn, void* arg) {
    return qpair().ReservationAcquire(ns(), ad, false, resv::kAcquire, resv::kWriteExclusive, fn, arg);
  });
  ExpectStatus(c, 0, 0);
  r = read_report();
  EXPECT_EQ(r.header.rtype, resv::kWriteExclusive);
  EXPECT_EQ(r.ctrl[0].rcsts & 1, 1);
  EXPECT_EQ(r.ctrl[0].cntlid, ctrlr().data().cntlid);

  // A wrong key conflicts.
  *ad = {0xBAD, 0};
  c = Run([&](CompletionFn fn, void* arg) {
    return qpair().ReservationAcquire(ns(), ad, false, resv::kAcquire, resv::kWriteExclusive, fn, arg);
  });
  ExpectStatus(c, 0, spec::sc::kReservationConflict);

  *rd = {0xA1, 0};
  c = Run([&](CompletionFn fn, void* arg) {
    return qpair().ReservationRelease(ns(), rd, false, resv::kRelease, resv::kWriteExclusive, fn, arg);
  });
  ExpectStatus(c, 0, 0);
  r = read_report();
  EXPECT_EQ(r.header.rtype, 0);
  EXPECT_EQ(regctl(r), 1);

  c = Run([&](CompletionFn fn, void* arg) {
    return qpair().ReservationRegister(ns(), rd, false, resv::kUnregister, 0, fn, arg);
  });
  ExpectStatus(c, 0, 0);
  EXPECT_EQ(regctl(read_report()), 0);
}

TEST_F(CommandsTest, CompareAndWriteWritesOnlyWhenTheCompareMatches) {
  WritePattern(ns(), 4000, 4, 20);
  DmaBuffer cmp = Alloc(4 * 512), wr = Alloc(4 * 512);
  FillPattern(cmp.data(), 4 * 512, 20);
  FillPattern(wr.data(), 4 * 512, 21);
  spec::Cqe c = Run([&](CompletionFn fn, void* arg) {
    return qpair().CompareAndWrite(ns(), cmp.data(), wr.data(), 4000, 4, fn, arg);
  });
  ExpectStatus(c, 0, 0);
  ExpectPattern(ns(), 4000, 4, 21);
  // The same compare data is stale now: the compare fails and the write is
  // not done; the callback gets the compare's status.
  FillPattern(wr.data(), 4 * 512, 22);
  c = Run([&](CompletionFn fn, void* arg) {
    return qpair().CompareAndWrite(ns(), cmp.data(), wr.data(), 4000, 4, fn, arg);
  });
  ExpectStatus(c, spec::sct::kMediaError, spec::sc::kCompareFailure);
  ExpectPattern(ns(), 4000, 4, 21);
  EXPECT_EQ(qpair().outstanding(), 0u);
  // Fused commands cannot be split: over MDTS is refused.
  DmaBuffer big = Alloc(64 * 512);
  Done d;
  Status st = qpair().CompareAndWrite(ns(), big.data(), big.data(), 0, 64, OnDone, &d);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EINVAL) << st.error().ToString();
}

TEST_F(CommandsTest, RawCommandWritesAndReads) {
  DmaBuffer wr = Alloc(4 * 512), rd = Alloc(4 * 512);
  FillPattern(wr.data(), 4 * 512, 23);
  spec::Sqe cmd;
  cmd.opc = nvm::kWrite;
  cmd.nsid = ns().id();
  cmd.cdw10 = 4100;
  cmd.cdw12 = 3;  // 4 blocks, 0's based
  spec::Cqe c = Run([&](CompletionFn fn, void* arg) { return qpair().RawCommand(cmd, wr.data(), 4 * 512, fn, arg); });
  ExpectStatus(c, 0, 0);
  cmd.opc = nvm::kRead;
  c = Run([&](CompletionFn fn, void* arg) { return qpair().RawCommand(cmd, rd.data(), 4 * 512, fn, arg); });
  ExpectStatus(c, 0, 0);
  EXPECT_EQ(FirstPatternMismatch(rd.data(), 4 * 512, 23), -1);
  ExpectPattern(ns(), 4100, 4, 23);
  // The device's answer to an opcode it does not know reaches the callback.
  spec::Sqe bad;
  bad.opc = 0x7E;
  bad.nsid = ns().id();
  c = Run([&](CompletionFn fn, void* arg) { return qpair().RawCommand(bad, nullptr, 0, fn, arg); });
  ExpectStatus(c, 0, spec::sc::kInvalidOpcode);
  // Raw commands are not split: data over MDTS is refused.
  DmaBuffer big = Alloc(64 * 512);
  Done d;
  Status st = qpair().RawCommand(cmd, big.data(), 64 * 512, OnDone, &d);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EINVAL);
}

// ---- queueing, ENOMEM, EINVAL ----

TEST_F(CommandsTest, RequestsWaitForTrackersOnASmallQueueAndAllComplete) {
  IoQpairOptions o;
  o.io_queue_size = 4;  // 3 trackers
  o.io_queue_requests = 64;
  auto q = ctrlr().AllocIoQpair(o);
  ASSERT_TRUE(q) << q.error().ToString();
  constexpr uint32_t kRequests = 40;
  DmaBuffer buf = Alloc(kRequests * 512);
  FillPattern(buf.data(), kRequests * 512, 24);
  std::vector<Done> done(kRequests);
  auto* p = static_cast<uint8_t*>(buf.data());
  for (uint32_t i = 0; i < kRequests; ++i) {
    Status st = (*q)->Write(ns(), p + i * 512, 5000 + i, 1, OnDone, &done[i]);
    ASSERT_TRUE(st) << i << ": " << st.error().ToString();
  }
  EXPECT_EQ((*q)->outstanding(), kRequests);
  EXPECT_GT((*q)->statistics().queued, 0u);
  ASSERT_TRUE(PollUntil(**q, [&] { return (*q)->outstanding() == 0; }, 10s)) << (*q)->outstanding() << " left";
  for (uint32_t i = 0; i < kRequests; ++i) EXPECT_TRUE(done[i].ok()) << i << ": " << StatusOf(done[i].cpl);
  // Split requests queue too: 40 blocks is 3 children each.
  std::memset(buf.data(), 0, kRequests * 512);
  std::vector<Done> reads(4);
  DmaBuffer rd = Alloc(4 * kRequests * 512);
  for (uint32_t i = 0; i < 4; ++i) {
    Status st = (*q)->Read(ns(), static_cast<uint8_t*>(rd.data()) + i * kRequests * 512, 5000, kRequests, OnDone,
                           &reads[i]);
    ASSERT_TRUE(st) << st.error().ToString();
  }
  ASSERT_TRUE(PollUntil(**q, [&] { return (*q)->outstanding() == 0; }, 10s)) << (*q)->outstanding() << " left";
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(reads[i].ok()) << StatusOf(reads[i].cpl);
    EXPECT_EQ(FirstPatternMismatch(static_cast<uint8_t*>(rd.data()) + i * kRequests * 512, kRequests * 512, 24), -1);
  }
  EXPECT_EQ((*q)->statistics().completed, (*q)->statistics().submitted);
}

TEST_F(CommandsTest, ExhaustedRequestsGiveEnomemUntilCompletionsFreeThem) {
  IoQpairOptions o;
  o.io_queue_size = 4;
  o.io_queue_requests = 4;
  auto q = ctrlr().AllocIoQpair(o);
  ASSERT_TRUE(q) << q.error().ToString();
  DmaBuffer buf = Alloc(5 * 512);
  auto* p = static_cast<uint8_t*>(buf.data());
  std::vector<Done> done(5);
  for (uint32_t i = 0; i < 4; ++i) ASSERT_TRUE((*q)->Read(ns(), p + i * 512, i, 1, OnDone, &done[i]));
  Status st = (*q)->Read(ns(), p + 4 * 512, 4, 1, OnDone, &done[4]);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ENOMEM);
  EXPECT_NE(st.error().message.find("no free request"), std::string::npos) << st.error().message;
  ASSERT_TRUE(PollUntil(**q, [&] { return (*q)->outstanding() == 0; }));
  for (uint32_t i = 0; i < 4; ++i) EXPECT_TRUE(done[i].ok());
  EXPECT_FALSE(done[4].done());
  EXPECT_TRUE((*q)->Read(ns(), p + 4 * 512, 4, 1, OnDone, &done[4]));
  ASSERT_TRUE(PollUntil(**q, [&] { return done[4].done(); }));
  EXPECT_TRUE(done[4].ok());
}

TEST_F(CommandsTest, MalformedRequestsAreRefusedWithEinval) {
  DmaBuffer dma = Alloc(8192);
  Done d;
  uint64_t size = ns().num_sectors();
  auto expect_einval = [&](const Status& st, const std::vector<std::string>& words) {
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, EINVAL) << st.error().ToString();
    for (const std::string& w : words)
      EXPECT_NE(st.error().message.find(w), std::string::npos) << "'" << w << "' not in: " << st.error().message;
  };
  // LBA range beyond the namespace: the message names the LBA and the size.
  expect_einval(qpair().Read(ns(), dma.data(), size, 1, OnDone, &d), {std::to_string(size), "LBA"});
  expect_einval(qpair().Write(ns(), dma.data(), size - 1, 2, OnDone, &d),
                {std::to_string(size - 1), std::to_string(size) + " blocks"});
  expect_einval(qpair().Read(ns(), dma.data(), UINT64_MAX, 1, OnDone, &d), {std::to_string(UINT64_MAX)});
  // Buffers outside DMA memory: on the stack, on the heap.
  alignas(4096) uint8_t stack[4096];
  expect_einval(qpair().Read(ns(), stack, 0, 1, OnDone, &d), {"not DMA memory"});
  std::vector<uint8_t> heap(4096);
  expect_einval(qpair().Write(ns(), heap.data(), 0, 1, OnDone, &d), {"not DMA memory"});
  // No buffer at all: the message says how many bytes were expected.
  expect_einval(qpair().Read(ns(), nullptr, 0, 1, OnDone, &d), {"null", std::to_string(ns().extended_sector_size())});
  // A DMA buffer at an odd address.
  expect_einval(qpair().Read(ns(), static_cast<uint8_t*>(dma.data()) + 1, 0, 1, OnDone, &d), {"aligned"});
  // Block counts 0 and over 65536.
  expect_einval(qpair().Read(ns(), dma.data(), 0, 0, OnDone, &d), {"count 0"});
  expect_einval(qpair().WriteZeroes(ns(), 0, 65537, OnDone, &d), {"65537"});
  // io_flags outside CDW12's flag bits.
  expect_einval(qpair().Read(ns(), dma.data(), 0, 1, OnDone, &d, 0x1234), {"io_flags"});
  EXPECT_TRUE(PollUntil(qpair(), [] { return true; }));
  EXPECT_FALSE(d.done()) << "a refused request's callback ran";
  EXPECT_EQ(qpair().outstanding(), 0u);
}

TEST_F(CommandsTest, IoFlagsReachTheDeviceAndAreAccepted) {
  DmaBuffer buf = Alloc(4 * 512);
  FillPattern(buf.data(), 4 * 512, 25);
  spec::Cqe c = Run([&](CompletionFn fn, void* arg) {
    return qpair().Write(ns(), buf.data(), 20, 4, fn, arg, kIoFlagsFua | kIoFlagsLimitedRetry);
  });
  ExpectStatus(c, 0, 0);
  ExpectPattern(ns(), 20, 4, 25);
}

TEST_F(CommandsTest, DelayedSubmissionRingsTheDoorbellOncePerPoll) {
  IoQpairOptions o;
  o.delay_cmd_submit = true;
  auto q = ctrlr().AllocIoQpair(o);
  ASSERT_TRUE(q) << q.error().ToString();
  DmaBuffer buf = Alloc(8 * 512);
  FillPattern(buf.data(), 8 * 512, 26);
  uint64_t rings = (*q)->statistics().sq_doorbell_writes;
  std::vector<Done> done(8);
  for (uint32_t i = 0; i < 8; ++i)
    ASSERT_TRUE((*q)->Write(ns(), static_cast<uint8_t*>(buf.data()) + i * 512, 30 + i, 1, OnDone, &done[i]));
  EXPECT_EQ((*q)->statistics().sq_doorbell_writes, rings) << "nothing rung before the poll";
  ASSERT_TRUE(PollUntil(**q, [&] { return (*q)->outstanding() == 0; }));
  EXPECT_LE((*q)->statistics().sq_doorbell_writes - rings, 2u);
  for (const Done& d : done) EXPECT_TRUE(d.ok()) << StatusOf(d.cpl);
  ExpectPattern(ns(), 30, 8, 26);
}

TEST_F(CommandsTest, CreateOnlyQueuePairConnectsLater) {
  IoQpairOptions o;
  o.create_only = true;
  auto q = ctrlr().AllocIoQpair(o);
  ASSERT_TRUE(q) << q.error().ToString();
  EXPECT_FALSE((*q)->connected());
  DmaBuffer buf = Alloc(512);
  Done d;
  Status st = (*q)->Read(ns(), buf.data(), 0, 1, OnDone, &d);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ENXIO);
  ASSERT_TRUE((*q)->Connect());
  st = (*q)->Connect();
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EALREADY);
  spec::Cqe c = Run(**q, [&](CompletionFn fn, void* arg) { return (*q)->Read(ns(), buf.data(), 0, 1, fn, arg); });
  ExpectStatus(c, 0, 0);
}

// ---- error injection and abort ----

TEST_F(CommandsTest, InjectedErrorReachesTheCallbackWithoutTheDevice) {
  ErrorInjection e;
  e.opcode = nvm::kRead;
  e.count = 2;
  e.sct = spec::sct::kMediaError;
  e.sc = spec::sc::kUnrecoveredReadError;
  ASSERT_TRUE(qpair().AddErrorInjection(e));
  WritePattern(ns(), 10, 1, 30);  // writes are not affected
  DmaBuffer buf = Alloc(4096);
  for (int i = 0; i < 2; ++i) {
    spec::Cqe c = Run([&](CompletionFn fn, void* arg) { return qpair().Read(ns(), buf.data(), 10, 1, fn, arg); });
    EXPECT_EQ(c.sct(), spec::sct::kMediaError) << StatusOf(c);
    EXPECT_EQ(c.sc(), spec::sc::kUnrecoveredReadError);
  }
  ExpectPattern(ns(), 10, 1, 30);  // count used up: reads reach the device again
  // Removed before use: no effect.
  e.opcode = nvm::kWrite;
  ASSERT_TRUE(qpair().AddErrorInjection(e));
  qpair().RemoveErrorInjection(nvm::kWrite);
  WritePattern(ns(), 11, 1, 31);
  // At most 16 injections.
  for (uint8_t opc = 0x40; opc < 0x40 + 15; ++opc) {
    e.opcode = opc;
    ASSERT_TRUE(qpair().AddErrorInjection(e)) << int{opc};
  }
  e.opcode = 0x60;
  Status st = qpair().AddErrorInjection(e);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ENOMEM);
}

TEST_F(CommandsTest, InjectedErrorOnTheCompareFailsTheWholeCompareAndWrite) {
  WritePattern(ns(), 4200, 2, 27);
  ErrorInjection e;
  e.opcode = nvm::kCompare;
  e.sct = spec::sct::kMediaError;
  e.sc = spec::sc::kCompareFailure;
  ASSERT_TRUE(qpair().AddErrorInjection(e));
  DmaBuffer cmp = Alloc(2 * 512), wr = Alloc(2 * 512);
  FillPattern(cmp.data(), 2 * 512, 27);
  FillPattern(wr.data(), 2 * 512, 28);
  spec::Cqe c = Run([&](CompletionFn fn, void* arg) {
    return qpair().CompareAndWrite(ns(), cmp.data(), wr.data(), 4200, 2, fn, arg);
  });
  EXPECT_EQ(c.sct(), spec::sct::kMediaError) << StatusOf(c);
  EXPECT_EQ(c.sc(), spec::sc::kCompareFailure) << StatusOf(c);
  EXPECT_EQ(qpair().outstanding(), 0u);
  ExpectPattern(ns(), 4200, 2, 27);  // the write never reached the device
}

TEST_F(CommandsTest, HeldInjectionCompletesAfterItsTimeout) {
  ErrorInjection e;
  e.opcode = nvm::kRead;
  e.sct = spec::sct::kGeneric;
  e.sc = spec::sc::kInternalError;
  e.do_not_submit = true;
  e.timeout_us = 30'000;
  ASSERT_TRUE(qpair().AddErrorInjection(e));
  DmaBuffer buf = Alloc(4096);
  Done d;
  int64_t start = MonotonicNanos();
  ASSERT_TRUE(qpair().Read(ns(), buf.data(), 0, 1, OnDone, &d));
  EXPECT_EQ(qpair().outstanding(), 1u);
  ASSERT_TRUE(PollUntil(qpair(), [&] { return d.done(); }, 5s));
  EXPECT_GE(MonotonicNanos() - start, 30'000'000);
  EXPECT_EQ(d.calls, 1);
  EXPECT_EQ(d.cpl.sc(), spec::sc::kInternalError);
  EXPECT_EQ(qpair().outstanding(), 0u);
}

TEST_F(CommandsTest, AbortOfARequestHeldByInjectionAndOfAQueuedOne) {
  // Held forever (timeout 0): only Abort or a disconnect ends it.
  ErrorInjection e;
  e.opcode = nvm::kRead;
  e.do_not_submit = true;
  ASSERT_TRUE(qpair().AddErrorInjection(e));
  DmaBuffer buf = Alloc(4096);
  Done held;
  ASSERT_TRUE(qpair().Read(ns(), buf.data(), 0, 1, OnDone, &held));
  EXPECT_TRUE(PollUntil(qpair(), [] { return true; }));
  EXPECT_FALSE(held.done());
  Status st = qpair().Abort(&held);
  ASSERT_TRUE(st) << st.error().ToString();
  ASSERT_TRUE(PollUntil(qpair(), [&] { return held.done(); }));
  EXPECT_EQ(held.cpl.sc(), spec::sc::kAbortRequested) << StatusOf(held.cpl);
  // Nothing with that argument is left.
  st = qpair().Abort(&held);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ENOENT);
}

}  // namespace
}  // namespace nvmux::test
