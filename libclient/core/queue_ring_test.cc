#include "queue_ring.h"

#include <gtest/gtest.h>

#include <vector>

#include "admin_queue.h"

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

}  // namespace
}  // namespace nvmux
