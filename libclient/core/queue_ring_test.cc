#include "queue_ring.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "admin_queue.h"
#include "io_queue.h"

namespace nvmux {
namespace {

// The device side of a queue pair, in-process: consumes SQ entries up to the
// tail doorbell and posts completions with the right phase and SQ head.
class FakeDevice {
 public:
  explicit FakeDevice(uint32_t entries) : sq(entries), cq(entries), entries_(entries) {}
  Doorbells doorbells() { return Doorbells{&sq_tail_db, &cq_head_db}; }
  // Completes every submitted command whose CQ slot is free; returns how many.
  int Process(uint16_t status = 0) {
    int n = 0;
    while (head_ != sq_tail_db) {
      if ((tail_ + 1) % entries_ == cq_head_db) break;  // CQ full: hold completions
      const spec::Sqe& cmd = sq[head_];
      head_ = (head_ + 1) % entries_;
      spec::Cqe c;
      c.cid = cmd.cid;
      c.sqhd = static_cast<uint16_t>(head_);
      c.cdw0 = cmd.cdw10 * 2;
      c.status = static_cast<uint16_t>((status << 1) | phase_);
      cq[tail_] = c;
      if (++tail_ == entries_) {
        tail_ = 0;
        phase_ ^= 1;
      }
      ++n;
    }
    return n;
  }
  void Post(uint16_t cid) {
    spec::Cqe c;
    c.cid = cid;
    c.sqhd = static_cast<uint16_t>(head_);
    c.status = phase_;
    cq[tail_] = c;
    if (++tail_ == entries_) {
      tail_ = 0;
      phase_ ^= 1;
    }
  }

  std::vector<spec::Sqe> sq;
  std::vector<spec::Cqe> cq;
  volatile uint32_t sq_tail_db = 0, cq_head_db = 0;

 private:
  uint32_t entries_, head_ = 0, tail_ = 0;
  uint16_t phase_ = 1;
};

spec::Sqe Cmd(uint16_t cid, uint32_t value) {
  spec::Sqe s;
  s.cid = cid;
  s.cdw10 = value;
  return s;
}

// Issue 16: the CQ head and the expected phase are one word (RingIndices::cq)
// that Consume moves with one store, so a process killed while consuming a
// completion of a shared ring leaves the old position or the new one, never
// a flipped phase with the old head. Peek leaves the entry where it is.
TEST(QueueRing, PeekLeavesTheEntryAndConsumeMovesHeadAndPhaseTogether) {
  FakeDevice dev(4);
  RingIndices shared;
  QueueRing ring(dev.sq.data(), dev.cq.data(), 4, dev.doorbells(), &shared);
  EXPECT_EQ(shared.cq, RingIndices::kPhaseBit) << "head 0, phase 1 on a fresh queue";
  for (uint16_t i = 0; i < 10; ++i) {
    dev.Post(i);
    const uint32_t before = shared.cq;
    auto c = ring.Peek();
    ASSERT_TRUE(c);
    EXPECT_EQ(c->cid, i);
    EXPECT_EQ(shared.cq, before);
    ASSERT_TRUE(ring.Peek());
    EXPECT_EQ(ring.Peek()->cid, i) << "Peek must not consume";
    ring.Consume(*c);
    const uint32_t head = (i + 1u) % 4u;
    const uint32_t phase = ((i + 1u) / 4u) % 2u == 0 ? 1u : 0u;
    EXPECT_EQ(shared.cq, head | (phase << 16)) << "after completion " << i;
    EXPECT_EQ(shared.cq_head(), head);
    EXPECT_EQ(shared.phase(), phase);
    EXPECT_FALSE(ring.Peek());
    ring.RingCq();
    EXPECT_EQ(dev.cq_head_db, head);
  }
}

TEST(QueueRing, PushRingPopInOrderWithOneDoorbellPerBatch) {
  FakeDevice dev(8);
  QueueRing ring(dev.sq.data(), dev.cq.data(), 8, dev.doorbells());
  for (uint16_t i = 0; i < 3; ++i) ASSERT_TRUE(ring.Push(Cmd(i, i)));
  EXPECT_EQ(dev.sq_tail_db, 0u);  // nothing published before RingSq
  ring.RingSq();
  ring.RingSq();  // nothing new: no second write
  EXPECT_EQ(dev.sq_tail_db, 3u);
  EXPECT_EQ(ring.doorbell_writes(), 1u);
  EXPECT_FALSE(ring.Pop());
  EXPECT_EQ(dev.Process(), 3);
  for (uint16_t i = 0; i < 3; ++i) {
    auto c = ring.Pop();
    ASSERT_TRUE(c);
    EXPECT_EQ(c->cid, i);
    EXPECT_EQ(c->cdw0, i * 2u);
  }
  EXPECT_FALSE(ring.Pop());
  ring.RingCq();
  EXPECT_EQ(dev.cq_head_db, 3u);
  EXPECT_EQ(ring.InFlight(), 0u);
}

TEST(QueueRing, FullQueueIsEAGAINUntilTheDeviceReportsProgress) {
  FakeDevice dev(4);
  QueueRing ring(dev.sq.data(), dev.cq.data(), 4, dev.doorbells());
  for (uint16_t i = 0; i < 3; ++i) ASSERT_TRUE(ring.Push(Cmd(i, 0)));
  EXPECT_TRUE(ring.Full());
  auto st = ring.Push(Cmd(3, 0));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EAGAIN);
  ring.RingSq();
  dev.Process();
  EXPECT_TRUE(ring.Full());  // SQ head learnt only from completions
  ASSERT_TRUE(ring.Pop());
  EXPECT_FALSE(ring.Full());
}

TEST(QueueRing, PhaseFlipsAcrossManyWraps) {
  FakeDevice dev(4);
  QueueRing ring(dev.sq.data(), dev.cq.data(), 4, dev.doorbells());
  uint32_t next = 0, seen = 0;
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 2; ++i, ++next) ASSERT_TRUE(ring.Push(Cmd(static_cast<uint16_t>(next), next)));
    ring.RingSq();
    dev.Process();
    while (auto c = ring.Pop()) {
      EXPECT_EQ(c->cdw0, seen * 2);
      ++seen;
    }
    ring.RingCq();
  }
  EXPECT_EQ(seen, 100u);
}

// Idle() is the I/O poll's shortcut: true exactly when Pop, RingCq and
// RingSq would all do nothing, across phase wraps.
TEST(QueueRing, IdleOnlyWhenNothingIsNewUnrungOrUnconsumed) {
  FakeDevice dev(4);
  QueueRing ring(dev.sq.data(), dev.cq.data(), 4, dev.doorbells());
  EXPECT_TRUE(ring.Idle());
  for (uint32_t round = 0; round < 10; ++round) {
    ASSERT_TRUE(ring.Push(Cmd(static_cast<uint16_t>(round), round)));
    EXPECT_FALSE(ring.Idle()) << "pushed, not rung (round " << round << ")";
    ring.RingSq();
    EXPECT_TRUE(ring.Idle()) << "rung, nothing completed (round " << round << ")";
    ASSERT_EQ(dev.Process(), 1);
    EXPECT_FALSE(ring.Idle()) << "a new entry at the CQ head (round " << round << ")";
    ASSERT_TRUE(ring.Pop());
    EXPECT_FALSE(ring.Idle()) << "consumed, head not written (round " << round << ")";
    ring.RingCq();
    EXPECT_TRUE(ring.Idle()) << "round " << round;
  }
}

// A host-side engine (NVMe/TCP) that delivers one completion each time the
// ring finds its CQ empty, and records the SQ tail published by then.
class OneAtATimeEngine : public QueueHook {
 public:
  explicit OneAtATimeEngine(FakeDevice& dev) : dev_(dev) {}
  void OnSqTail() override { ++sq_tail_calls; }
  void OnCqEmpty() override {
    tail_when_asked.push_back(static_cast<uint32_t>(dev_.sq_tail_db));
    if (ready > 0) {
      --ready;
      dev_.Post(next_cid++);
    }
  }
  int ready = 0;
  int sq_tail_calls = 0;
  uint16_t next_cid = 0;
  std::vector<uint32_t> tail_when_asked;

 private:
  FakeDevice& dev_;
};

// With a host-side engine, a completion pass that finds the CQ empty
// publishes the SQ tail before it asks the engine for more (which takes the
// new entries after its read and sends them with what the read called
// for): what the completions so far submitted goes out while the pass goes
// on, not in one wave at its end (delay_cmd_submit; NVMe/TCP at QD32,
// ARCHITECTURE.md). RingSq outside a pass still calls OnSqTail at once.
TEST(QueueRing, HostSideEngineGetsWhatWasSubmittedBeforeItIsAskedForMore) {
  FakeDevice dev(16);
  OneAtATimeEngine engine(dev);
  Doorbells d = dev.doorbells();
  d.hook = &engine;
  QueueRing ring(dev.sq.data(), dev.cq.data(), 16, d);
  engine.ready = 3;
  // A pass: each completion's callback submits one command (not rung).
  uint16_t cid = 100;
  while (auto c = ring.Pop()) ASSERT_TRUE(ring.Push(Cmd(cid++, 0)));
  // Asked four times (three completions, then none); by the second ask the
  // first completion's submission was published, and so on.
  EXPECT_EQ(engine.tail_when_asked, (std::vector<uint32_t>{0, 1, 2, 3}));
  EXPECT_EQ(engine.sq_tail_calls, 0);
  ring.RingSq();  // the end of the pass: nothing new
  EXPECT_EQ(engine.sq_tail_calls, 0);
  ASSERT_TRUE(ring.Push(Cmd(cid++, 0)));
  ring.RingSq();  // a submission outside a pass
  EXPECT_EQ(engine.sq_tail_calls, 1);
  EXPECT_EQ(dev.sq_tail_db, 4u);
}

TEST(AdminQueue, RunsEachCallbackOnceAndReusesCommandIds) {
  FakeDevice dev(4);
  QueueRing ring(dev.sq.data(), dev.cq.data(), 4, dev.doorbells());
  AdminQueue admin(ring);
  std::vector<uint32_t> results;
  for (int round = 0; round < 10; ++round) {
    for (uint32_t v = 0; v < 3; ++v)
      ASSERT_TRUE(admin.Submit(Cmd(0, v + 10u * static_cast<uint32_t>(round)), [&](const spec::Cqe& c) { results.push_back(c.cdw0); }));
    auto full = admin.Submit(Cmd(0, 0), [](const spec::Cqe&) {});
    ASSERT_FALSE(full);
    EXPECT_EQ(full.error().code, EAGAIN);
    dev.Process();
    ASSERT_TRUE(admin.Poll());
    EXPECT_EQ(admin.outstanding(), 0u);
  }
  ASSERT_EQ(results.size(), 30u);
  EXPECT_EQ(results[29], (9u * 10 + 2) * 2);
}

TEST(AdminQueue, CompletionForAnUnknownCommandIdIsEPROTO) {
  FakeDevice dev(4);
  QueueRing ring(dev.sq.data(), dev.cq.data(), 4, dev.doorbells());
  AdminQueue admin(ring);
  dev.Post(3);
  auto st = admin.Poll();
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EPROTO);
  EXPECT_NE(st.error().message.find("command id 3"), std::string::npos);
}

TEST(IoQueue, BuildsPrpsInTheTrackersPageAndQueuesNothingWhenFull) {
  FakeDevice dev(4);
  QueueRing ring(dev.sq.data(), dev.cq.data(), 4, dev.doorbells());
  std::vector<uint64_t> prp_pages(3 * 512, 0);
  IoQueue io(1, ring, TrackerMemory{prp_pages.data(), 0x700000, 3});
  IovaSegment big{0x100000, 4 * 4096};  // needs a PRP list
  int done = 0;
  ASSERT_TRUE(io.Write(1, 8, 32, {&big, 1}, [&](const spec::Cqe&) { ++done; }));
  const spec::Sqe& sent = dev.sq[0];
  EXPECT_EQ(sent.opc, spec::nvm::kWrite);
  EXPECT_EQ(sent.cdw10, 8u);
  EXPECT_EQ(sent.cdw12, 31u);  // 0's based
  EXPECT_EQ(sent.prp1, 0x100000u);
  uint64_t list_page = 0x700000 + sent.cid * 4096ull;
  EXPECT_EQ(sent.prp2, list_page);
  EXPECT_EQ(prp_pages[sent.cid * 512 + 0], 0x101000u);
  EXPECT_EQ(prp_pages[sent.cid * 512 + 2], 0x103000u);
  IovaSegment small{0x200000, 512};
  ASSERT_TRUE(io.Read(1, 0, 1, {&small, 1}, [&](const spec::Cqe&) { ++done; }));
  ASSERT_TRUE(io.Read(1, 0, 1, {&small, 1}, [&](const spec::Cqe&) { ++done; }));
  auto full = io.Read(1, 0, 1, {&small, 1}, [&](const spec::Cqe&) { ++done; });
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, EAGAIN);
  EXPECT_NE(full.error().message.find("3 commands outstanding"), std::string::npos);
  dev.Process();
  auto n = io.Poll(2);  // at most two callbacks this time
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(*io.Poll(), 1u);
  EXPECT_EQ(done, 3);
  EXPECT_EQ(io.outstanding(), 0u);
}

TEST(IoQueue, RefusesBadBlockCountsAndUndescribableBuffers) {
  FakeDevice dev(8);
  QueueRing ring(dev.sq.data(), dev.cq.data(), 8, dev.doorbells());
  std::vector<uint64_t> prp_pages(7 * 512, 0);
  IoQueue io(1, ring, TrackerMemory{prp_pages.data(), 0x700000, 7});
  IovaSegment s{0x100000, 512};
  auto none = io.Read(1, 0, 0, {&s, 1}, [](const spec::Cqe&) {});
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("block count 0"), std::string::npos);
  auto many = io.Read(1, 0, 70000, {&s, 1}, [](const spec::Cqe&) {});
  ASSERT_FALSE(many);
  EXPECT_NE(many.error().message.find("70000"), std::string::npos);
  IovaSegment odd{0x100002, 512};
  auto misaligned = io.Write(1, 0, 1, {&odd, 1}, [](const spec::Cqe&) {});
  ASSERT_FALSE(misaligned);
  EXPECT_EQ(misaligned.error().code, EINVAL);
  EXPECT_EQ(io.outstanding(), 0u);
  EXPECT_EQ(dev.sq_tail_db, 0u);  // nothing reached the device
}

}  // namespace
}  // namespace nvmux

namespace nvmux {
namespace {

// ---- shadow doorbells (EventIdx rule) ----

TEST(DoorbellNeedsEventTest, SignalsWhenTheUpdateCrossesEventIdx) {
  // event_idx in [old, new): the device asked to hear about this update.
  EXPECT_TRUE(DoorbellNeedsEvent(5, 6, 5));    // the device consumed up to 5: the next one crosses
  EXPECT_TRUE(DoorbellNeedsEvent(5, 9, 3));    // inside a batch
  EXPECT_TRUE(DoorbellNeedsEvent(3, 9, 3));    // at old
  EXPECT_FALSE(DoorbellNeedsEvent(9, 9, 3));   // at new: not yet passed
  EXPECT_FALSE(DoorbellNeedsEvent(4, 6, 5));   // behind old: "don't notify me" while polling
  EXPECT_FALSE(DoorbellNeedsEvent(20, 9, 3));  // ahead of new
  EXPECT_FALSE(DoorbellNeedsEvent(5, 5, 5));   // no movement
}

TEST(DoorbellNeedsEventTest, WrapsAroundTheQueueSize) {
  // A 256-entry queue: the tail goes 250 -> 5 through 0.
  EXPECT_TRUE(DoorbellNeedsEvent(250, 5, 250));
  EXPECT_TRUE(DoorbellNeedsEvent(255, 5, 250));
  EXPECT_TRUE(DoorbellNeedsEvent(0, 5, 250));
  EXPECT_TRUE(DoorbellNeedsEvent(4, 5, 250));
  EXPECT_FALSE(DoorbellNeedsEvent(5, 5, 250));
  EXPECT_FALSE(DoorbellNeedsEvent(100, 5, 250));
  EXPECT_FALSE(DoorbellNeedsEvent(249, 5, 250));  // one behind old: suppressed
  // Old at the last slot, event_idx one behind it, new at 0.
  EXPECT_FALSE(DoorbellNeedsEvent(254, 0, 255));
  EXPECT_TRUE(DoorbellNeedsEvent(255, 0, 255));
  // The largest queue (65536 entries): 16-bit arithmetic is exact.
  EXPECT_TRUE(DoorbellNeedsEvent(65535, 1, 65534));
  EXPECT_FALSE(DoorbellNeedsEvent(65533, 1, 65534));
  // A device one behind the tail never asks, whatever the host's batch
  // (at most entries - 1 ahead of the device's head).
  for (uint32_t entries : {2u, 16u, 256u, 65536u}) {
    for (uint32_t consumed = 0; consumed < entries; consumed += std::max(1u, entries / 7)) {
      const uint32_t ei = (consumed + entries - 1) % entries;
      for (uint32_t ahead = 1; ahead < entries; ahead += std::max(1u, entries / 5)) {
        const uint32_t nw = (consumed + ahead) % entries;
        EXPECT_FALSE(DoorbellNeedsEvent(static_cast<uint16_t>(ei), static_cast<uint16_t>(nw),
                                        static_cast<uint16_t>(consumed)))
            << entries << " " << consumed << " " << ahead;
      }
    }
  }
}

struct ShadowPages {
  alignas(64) uint32_t shadow[2] = {0, 0};  // SQ tail, CQ head
  alignas(64) uint32_t eventidx[2] = {0, 0};
  // `real` (the device's doorbells) with this queue's shadow and EventIdx slots.
  Doorbells With(Doorbells real) {
    real.shadow_sq_tail = &shadow[0];
    real.shadow_cq_head = &shadow[1];
    real.eventidx_sq = &eventidx[0];
    real.eventidx_cq = &eventidx[1];
    return real;
  }
};

TEST(QueueRingShadowTest, WritesTheShadowAndRingsOnlyWhenEventIdxAsks) {
  FakeDevice dev(16);
  ShadowPages pages;
  Doorbells db = pages.With(dev.doorbells());
  QueueRing ring(dev.sq.data(), dev.cq.data(), 16, db);
  // The device polls and says "don't notify me" (one behind what it consumed).
  pages.eventidx[0] = 15;
  pages.eventidx[1] = 15;
  spec::Sqe cmd;
  ASSERT_TRUE(ring.Push(cmd));
  ring.RingSq();
  EXPECT_EQ(pages.shadow[0], 1u);
  EXPECT_EQ(dev.sq_tail_db, 0u) << "no real doorbell while the device polls";
  EXPECT_EQ(ring.sq_doorbell_writes(), 0u);
  EXPECT_EQ(ring.shadow_doorbell_updates(), 1u);
  // The device consumed 1 and goes to sleep: EventIdx = 1, the next update crosses it.
  pages.eventidx[0] = 1;
  ASSERT_TRUE(ring.Push(cmd));
  ASSERT_TRUE(ring.Push(cmd));
  ring.RingSq();
  EXPECT_EQ(pages.shadow[0], 3u);
  EXPECT_EQ(dev.sq_tail_db, 3u);
  EXPECT_EQ(ring.sq_doorbell_writes(), 1u);
  EXPECT_EQ(ring.shadow_doorbell_updates(), 2u);
  // Nothing new: no update at all.
  ring.RingSq();
  EXPECT_EQ(ring.shadow_doorbell_updates(), 2u);
  // Completions: the CQ head goes to the shadow page the same way.
  dev.sq_tail_db = 3;
  EXPECT_EQ(dev.Process(), 3);
  int popped = 0;
  while (ring.Pop()) ++popped;
  EXPECT_EQ(popped, 3);
  ring.RingCq();
  EXPECT_EQ(pages.shadow[1], 3u);
  EXPECT_EQ(dev.cq_head_db, 0u);
  EXPECT_EQ(ring.cq_doorbell_writes(), 0u);
  EXPECT_EQ(ring.shadow_doorbell_updates(), 3u);
  // Switched off (a reset whose Doorbell Buffer Config failed): real doorbells again.
  ring.SetDoorbells(dev.doorbells());
  ASSERT_TRUE(ring.Push(cmd));
  ring.RingSq();
  EXPECT_EQ(dev.sq_tail_db, 4u);
  EXPECT_EQ(ring.sq_doorbell_writes(), 2u);
  EXPECT_EQ(ring.shadow_doorbell_updates(), 3u);
}

// RingCq's in_flight bound: while consumed + in flight cannot fill the CQ
// the update skips the fence (counted), and EventIdx is obeyed all the
// same; at the bound, or unknown, the fenced update.
TEST(QueueRingShadowTest, CqHeadUpdateSkipsTheFenceOnlyWhileTheCqCannotFill) {
  FakeDevice dev(8);
  ShadowPages pages;
  Doorbells db = pages.With(dev.doorbells());
  QueueRing ring(dev.sq.data(), dev.cq.data(), 8, db);
  pages.eventidx[0] = 7;
  pages.eventidx[1] = 7;  // polling: no CQ doorbell wanted
  spec::Sqe cmd;
  auto complete = [&](int n) {
    for (int i = 0; i < n; ++i) ASSERT_TRUE(ring.Push(cmd));
    ring.RingSq();
    dev.sq_tail_db = pages.shadow[0];
    ASSERT_EQ(dev.Process(), n);
    int popped = 0;
    while (ring.Pop()) ++popped;
    ASSERT_EQ(popped, n);
  };
  // 2 consumed, 5 still in flight: 7 = entries - 1, the CQ cannot fill.
  complete(2);
  ring.RingCq(5);
  EXPECT_EQ(pages.shadow[1], 2u);
  EXPECT_EQ(ring.unfenced_cq_updates(), 1u);
  EXPECT_EQ(ring.cq_doorbell_writes(), 0u);
  // 2 consumed, 6 in flight: the device may be waiting for room.
  complete(2);
  ring.RingCq(6);
  EXPECT_EQ(pages.shadow[1], 4u);
  EXPECT_EQ(ring.unfenced_cq_updates(), 1u);
  // Unknown: fenced.
  complete(1);
  ring.RingCq();
  EXPECT_EQ(pages.shadow[1], 5u);
  EXPECT_EQ(ring.unfenced_cq_updates(), 1u);
  EXPECT_EQ(ring.shadow_doorbell_updates(), 3u + 3u);  // 3 SQ updates, 3 CQ
  // A device that asks for the head (EventIdx 5) gets the real doorbell
  // from the unfenced update too.
  pages.eventidx[1] = 5;
  complete(1);
  ring.RingCq(0);
  EXPECT_EQ(ring.unfenced_cq_updates(), 2u);
  EXPECT_EQ(ring.cq_doorbell_writes(), 1u);
  EXPECT_EQ(dev.cq_head_db, 6u);
}

TEST(QueueRingShadowTest, KicksTheEventfdAfterEachRealWrite) {
  FakeDevice dev(8);
  ShadowPages pages;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  Doorbells db = pages.With(dev.doorbells());
  db.kick_fd = fds[1];
  QueueRing ring(dev.sq.data(), dev.cq.data(), 8, db);
  pages.eventidx[0] = 7;  // polling
  spec::Sqe cmd;
  ASSERT_TRUE(ring.Push(cmd));
  ring.RingSq();
  pages.eventidx[0] = 1;  // sleeping after consuming 1
  ASSERT_TRUE(ring.Push(cmd));
  ring.RingSq();
  uint64_t kicks[4] = {};
  ssize_t n = ::read(fds[0], kicks, sizeof(kicks));
  EXPECT_EQ(n, 8) << "one kick, for the one real write";
  EXPECT_EQ(kicks[0], 1u);
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace nvmux
