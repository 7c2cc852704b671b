// Per-command I/O timeouts (Controller::SetIoTimeout) against a real
// nvmux-emu, whose `drop` fault fetches a command and never completes it:
// the callback names the right queue pair and command id, not before the
// timeout and not much after; kAbort sends an Abort (which nvmux-emu
// answers "not aborted": it can only abort AERs) and then escalates to a
// reset; kReset resets in the next admin poll, never inside the queue
// pair's, and the queue pair comes back; with no timeout, or with commands
// that complete in time, nothing fires.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <vector>

#include "shm/base/clock.h"
#include "test/integration/driver_test_support.h"

namespace nvmux::test {
namespace {

constexpr int64_t kMs = 1'000'000;

struct Timeout {
  uint16_t qid = 0;
  uint16_t cid = 0;
  int64_t at_ns = 0;
};

class IoTimeoutTest : public DriverTest {
 protected:
  std::vector<std::string> EmuArgs() const override { return {"--ns", "size=64M"}; }
  // Sets the timeout with a callback that records into timeouts_.
  void SetTimeout(int64_t timeout_ms, TimeoutAction action) {
    ctrlr().SetIoTimeout(static_cast<uint64_t>(timeout_ms) * 1000, action, [this](uint16_t qid, uint16_t cid) {
      timeouts_.push_back({qid, cid, MonotonicNanos()});
    });
  }
  // Polls `q` and the admin queue (Abort completions and resets need it)
  // until `pred`; false on deadline or a poll error.
  bool PollBothUntil(IoQpair& q, const std::function<bool()>& pred, int64_t timeout_ms = 5000) {
    int64_t deadline = MonotonicNanos() + timeout_ms * kMs;
    while (!pred()) {
      auto n = q.ProcessCompletions();
      if (!n) {
        ADD_FAILURE() << "ProcessCompletions: " << n.error().ToString();
        return false;
      }
      auto a = ctrlr().ProcessAdminCompletions();
      if (!a) {
        ADD_FAILURE() << "ProcessAdminCompletions: " << a.error().ToString();
        return false;
      }
      if (MonotonicNanos() > deadline) return pred();
    }
    return true;
  }
  // Polls both for `ms` milliseconds.
  void PollBothFor(IoQpair& q, int64_t ms) {
    int64_t until = MonotonicNanos() + ms * kMs;
    EXPECT_TRUE(PollBothUntil(q, [&] { return MonotonicNanos() > until; }, ms + 1000));
  }
  std::unique_ptr<IoQpair> SmallQpair() {
    IoQpairOptions o;
    o.io_queue_size = 4;  // 3 trackers: command ids 0, 1, 2
    auto q = ctrlr().AllocIoQpair(o);
    EXPECT_TRUE(q) << q.error().ToString();
    return q ? std::move(*q) : nullptr;
  }
  std::vector<Timeout> timeouts_;
};

TEST_F(IoTimeoutTest, CallbackNamesTheDroppedCommandWithinTheTimeout) {
  constexpr int64_t kTimeoutMs = 100;
  auto small = SmallQpair();
  ASSERT_NE(small, nullptr);
  IoQpair& q = *small;
  SetTimeout(kTimeoutMs, TimeoutAction::kNone);
  ControlOk("drop opc=0x01 count=1");
  // Read, Write (dropped), Read: all three trackers in use, so the write's
  // command id is the one the reads' completions do not name.
  DmaBuffer buf = Alloc(3 * 4096);
  auto* p = static_cast<uint8_t*>(buf.data());
  Done r1, w, r2;
  int64_t start = MonotonicNanos();
  ASSERT_TRUE(q.Read(ns(), p, 0, 8, OnDone, &r1));
  ASSERT_TRUE(q.Write(ns(), p + 4096, 8, 8, OnDone, &w));
  ASSERT_TRUE(q.Read(ns(), p + 8192, 16, 8, OnDone, &r2));
  ASSERT_TRUE(PollUntil(q, [&] { return r1.done() && r2.done(); }));
  EXPECT_TRUE(r1.ok() && r2.ok());
  EXPECT_TRUE(timeouts_.empty()) << "fired after " << (MonotonicNanos() - start) / kMs << " ms";
  ASSERT_TRUE(PollUntil(q, [&] { return !timeouts_.empty(); }, 3s)) << "no timeout reported in 3 s";
  int64_t elapsed_ms = (timeouts_[0].at_ns - start) / kMs;
  EXPECT_GE(elapsed_ms, kTimeoutMs);
  EXPECT_LT(elapsed_ms, kTimeoutMs + kTimeoutMs / 8 + 250) << "reported late";
  EXPECT_EQ(timeouts_[0].qid, q.id());
  uint16_t expected_cid = static_cast<uint16_t>(0 + 1 + 2 - r1.cpl.cid - r2.cpl.cid);
  EXPECT_NE(r1.cpl.cid, r2.cpl.cid);
  EXPECT_EQ(timeouts_[0].cid, expected_cid);
  std::printf("[ figures  ] timeout %lld ms: reported after %lld ms (qid %u cid %u)\n",
              static_cast<long long>(kTimeoutMs), static_cast<long long>(elapsed_ms), timeouts_[0].qid,
              timeouts_[0].cid);

  // kNone: reported once, the command stays outstanding.
  uint64_t admin_submitted = ctrlr().admin_statistics().submitted;
  PollBothFor(q, 3 * kTimeoutMs);
  EXPECT_EQ(timeouts_.size(), 1u);
  EXPECT_FALSE(w.done());
  EXPECT_EQ(ctrlr().admin_statistics().submitted, admin_submitted) << "kNone sent an admin command";
  // Disconnect gives it up, naming the same command id.
  q.Disconnect();
  EXPECT_EQ(w.calls, 1);
  EXPECT_EQ(w.cpl.sc(), kAbortedSqDeletion) << StatusOf(w.cpl);
  EXPECT_EQ(w.cpl.cid, timeouts_[0].cid);
}

TEST_F(IoTimeoutTest, AbortIsSentThenEscalatesToAReset) {
  constexpr int64_t kTimeoutMs = 100;
  WritePattern(ns(), 0, 8, 41);
  SetTimeout(kTimeoutMs, TimeoutAction::kAbort);
  ControlOk("drop opc=0x01 count=1");
  DmaBuffer buf = Alloc(4096);
  Done w;
  uint64_t admin_submitted = ctrlr().admin_statistics().submitted;
  uint64_t admin_completed = ctrlr().admin_statistics().completed;
  int64_t start = MonotonicNanos();
  ASSERT_TRUE(qpair().Write(ns(), buf.data(), 64, 8, OnDone, &w));
  ASSERT_TRUE(PollBothUntil(qpair(), [&] { return !timeouts_.empty(); }));
  EXPECT_GE((timeouts_[0].at_ns - start) / kMs, kTimeoutMs);
  EXPECT_EQ(timeouts_[0].qid, qpair().id());
  // The Abort went out right after the callback, and completes; nvmux-emu
  // cannot abort a command it dropped, so the write stays outstanding.
  EXPECT_EQ(ctrlr().admin_statistics().submitted, admin_submitted + 1);
  ASSERT_TRUE(PollBothUntil(qpair(), [&] { return ctrlr().admin_statistics().completed > admin_completed; }));
  EXPECT_FALSE(w.done());
  // A timeout after the Abort: the controller is reset; the write comes
  // back aborted (0/08) with its command id.
  ASSERT_TRUE(PollBothUntil(qpair(), [&] { return w.done(); }));
  int64_t elapsed_ms = (MonotonicNanos() - start) / kMs;
  EXPECT_GE(elapsed_ms, 2 * kTimeoutMs);
  EXPECT_LT(elapsed_ms, 2 * kTimeoutMs + kTimeoutMs / 4 + 1000);
  EXPECT_EQ(w.calls, 1);
  EXPECT_EQ(w.cpl.sc(), kAbortedSqDeletion) << StatusOf(w.cpl);
  EXPECT_EQ(w.cpl.cid, timeouts_[0].cid);
  EXPECT_EQ(timeouts_.size(), 1u) << "the callback runs once per command";
  EXPECT_FALSE(ctrlr().failed());
  EXPECT_TRUE(qpair().connected());
  ExpectPattern(ns(), 0, 8, 41);
  WritePattern(ns(), 64, 8, 42);
  ExpectPattern(ns(), 64, 8, 42);
  EXPECT_EQ(timeouts_.size(), 1u);
}

TEST_F(IoTimeoutTest, ResetRunsInTheAdminPollAndTheQueuePairComesBack) {
  constexpr int64_t kTimeoutMs = 50;
  WritePattern(ns(), 0, 8, 51);
  auto other = SmallQpair();
  ASSERT_NE(other, nullptr);
  SetTimeout(kTimeoutMs, TimeoutAction::kReset);
  ControlOk("drop opc=0x01 count=1");
  DmaBuffer buf = Alloc(4096);
  Done w;
  int64_t start = MonotonicNanos();
  ASSERT_TRUE(qpair().Write(ns(), buf.data(), 8, 8, OnDone, &w));
  // Only the queue pair is polled: the timeout is reported, but the reset
  // waits for the admin poller (it re-creates every queue pair, this one
  // included, so it cannot run inside this poll).
  ASSERT_TRUE(PollUntil(qpair(), [&] { return !timeouts_.empty(); }, 3s));
  EXPECT_GE((timeouts_[0].at_ns - start) / kMs, kTimeoutMs);
  int64_t until = MonotonicNanos() + 3 * kTimeoutMs * kMs;
  ASSERT_TRUE(PollUntil(qpair(), [&] { return MonotonicNanos() > until; }));
  EXPECT_FALSE(w.done());
  EXPECT_TRUE(qpair().connected());
  // One admin poll resets: the write completes aborted, inside it.
  auto n = ctrlr().ProcessAdminCompletions();
  ASSERT_TRUE(n) << n.error().ToString();
  EXPECT_EQ(w.calls, 1);
  EXPECT_EQ(w.cpl.sc(), kAbortedSqDeletion) << StatusOf(w.cpl);
  EXPECT_EQ(w.cpl.cid, timeouts_[0].cid);
  EXPECT_EQ(timeouts_[0].qid, qpair().id());
  EXPECT_FALSE(ctrlr().failed());
  EXPECT_TRUE(qpair().connected());
  EXPECT_TRUE(other->connected());
  // Both queue pairs work again, the data from before is there, and
  // nothing else timed out.
  ExpectPattern(ns(), 0, 8, 51);
  WritePattern(ns(), 8, 8, 52);
  ExpectPattern(ns(), 8, 8, 52);
  spec::Cqe c = Run(*other, [&](CompletionFn fn, void* arg) { return other->Read(ns(), buf.data(), 8, 8, fn, arg); });
  EXPECT_FALSE(IsError(c)) << StatusOf(c);
  EXPECT_EQ(FirstPatternMismatch(buf.data(), 4096, 52), -1);
  EXPECT_EQ(timeouts_.size(), 1u);
}

TEST_F(IoTimeoutTest, NothingFiresWithoutATimeoutOrForCommandsThatCompleteInTime) {
  // Set, then switched off: a dropped command is never reported or aborted.
  SetTimeout(50, TimeoutAction::kAbort);
  ctrlr().SetIoTimeout(0, TimeoutAction::kAbort, [this](uint16_t qid, uint16_t cid) {
    timeouts_.push_back({qid, cid, MonotonicNanos()});
  });
  ControlOk("drop opc=0x01 count=1");
  DmaBuffer buf = Alloc(64 * 4096);
  auto* p = static_cast<uint8_t*>(buf.data());
  Done dropped;
  uint64_t admin_submitted = ctrlr().admin_statistics().submitted;
  ASSERT_TRUE(qpair().Write(ns(), p, 0, 8, OnDone, &dropped));
  PollBothFor(qpair(), 300);
  EXPECT_TRUE(timeouts_.empty());
  EXPECT_FALSE(dropped.done());
  EXPECT_EQ(ctrlr().admin_statistics().submitted, admin_submitted);

  // On, with commands that take 20 ms of a 100 ms timeout: none reported.
  auto small = SmallQpair();
  ASSERT_NE(small, nullptr);
  admin_submitted = ctrlr().admin_statistics().submitted;  // Create I/O CQ/SQ went before
  SetTimeout(100, TimeoutAction::kAbort);
  ControlOk("delay us=20000 opc=0x02");
  int64_t until = MonotonicNanos() + 400 * kMs;
  uint32_t completed = 0;
  while (MonotonicNanos() < until) {
    std::vector<Done> reads(8);
    for (uint32_t i = 0; i < 8; ++i) ASSERT_TRUE(small->Read(ns(), p + i * 4096, i * 8, 8, OnDone, &reads[i]));
    ASSERT_TRUE(PollBothUntil(*small, [&] {
      return std::all_of(reads.begin(), reads.end(), [](const Done& d) { return d.done(); });
    }));
    for (const Done& d : reads) EXPECT_TRUE(d.ok()) << StatusOf(d.cpl);
    completed += 8;
  }
  EXPECT_GT(completed, 8u);
  EXPECT_TRUE(timeouts_.empty()) << "a command that completed in time was reported";
  EXPECT_EQ(ctrlr().admin_statistics().submitted, admin_submitted) << "an Abort was sent";
  // The command dropped while timeouts were off counts from when they came
  // on: by now it has been reported (on the fixture's queue pair).
  ASSERT_TRUE(PollBothUntil(qpair(), [&] { return !timeouts_.empty(); }));
  EXPECT_EQ(timeouts_[0].qid, qpair().id());
  ASSERT_TRUE(PollBothUntil(qpair(), [&] { return dropped.done(); }));  // aborted, then reset
  EXPECT_EQ(dropped.cpl.cid, timeouts_[0].cid);
  EXPECT_EQ(timeouts_.size(), 1u);
}

TEST_F(IoTimeoutTest, CommandsOutstandingWhenTheTimeoutIsSetCountFromThen) {
  constexpr int64_t kTimeoutMs = 100;
  ControlOk("drop opc=0x01 count=1");
  DmaBuffer buf = Alloc(4096);
  Done w;
  ASSERT_TRUE(qpair().Write(ns(), buf.data(), 0, 8, OnDone, &w));
  int64_t until = MonotonicNanos() + 200 * kMs;
  ASSERT_TRUE(PollUntil(qpair(), [&] { return MonotonicNanos() > until; }));
  int64_t set_at = MonotonicNanos();
  SetTimeout(kTimeoutMs, TimeoutAction::kNone);
  ASSERT_TRUE(PollUntil(qpair(), [&] { return !timeouts_.empty(); }, 3s));
  int64_t elapsed_ms = (timeouts_[0].at_ns - set_at) / kMs;
  EXPECT_GE(elapsed_ms, kTimeoutMs) << "a 200 ms old command was reported at once";
  EXPECT_LT(elapsed_ms, kTimeoutMs + kTimeoutMs / 8 + 250);
  qpair().Disconnect();
  EXPECT_EQ(w.cpl.cid, timeouts_[0].cid);
}

}  // namespace
}  // namespace nvmux::test
