// Completion modes (IoQpairOptions::mode, PollGroupOptions::mode) against a
// real nvmux-emu: event and hybrid queue pairs do verified I/O while
// blocking on their eventfd (the device's MSI-X vector), poll mode raises no
// interrupt, arming is race-free (a completion landing between the drain
// and the re-check is seen; one landing after arming wakes the block), a
// device without vectors for I/O queues refuses event mode with ENOTSUP and
// leaves nothing behind, and poll groups do the same over their members.
#include <poll.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "libclient/core/qpair_state.h"
#include "nvmux/poll_group.h"
#include "test/integration/driver_test_support.h"

namespace nvmux::test {
namespace {

class EventsTest : public DriverTest {
 protected:
  std::vector<std::string> EmuArgs() const override { return {"--ns", "size=64M"}; }
  std::unique_ptr<IoQpair> NewQpair(CompletionMode mode) {
    IoQpairOptions o;
    o.mode = mode;
    auto q = ctrlr().AllocIoQpair(o);
    EXPECT_TRUE(q) << q.error().ToString();
    return q ? std::move(*q) : nullptr;
  }
  // Interrupts the device raised on `vector` so far (its `status`).
  uint64_t Raised(uint16_t vector) {
    auto reply = emu_->Control("status");
    EXPECT_TRUE(reply);
    if (!reply) return 0;
    const std::string key = (vector == 0 ? "vectors=" : ",") + std::to_string(vector) + ":fd:";
    size_t at = reply->find(key);
    if (at == std::string::npos) return 0;
    return std::stoull(reply->substr(at + key.size()));
  }
  // Writes then reads back `ios` I/Os of 8 blocks, waiting only through
  // WaitCompletions (one I/O in flight at a time: the wait must block).
  void VerifiedIo(IoQpair& q, uint32_t ios, uint32_t seed) {
    DmaBuffer buf = Alloc(4096);
    for (uint32_t i = 0; i < ios; ++i) {
      for (bool write : {true, false}) {
        if (write) FillPattern(buf.data(), 4096, seed + i);
        else std::memset(buf.data(), 0, 4096);
        Done d;
        ASSERT_TRUE(write ? q.Write(ns(), buf.data(), uint64_t{i} * 8, 8, OnDone, &d)
                          : q.Read(ns(), buf.data(), uint64_t{i} * 8, 8, OnDone, &d));
        while (!d.done()) {
          auto n = q.WaitCompletions(10'000);
          ASSERT_TRUE(n) << n.error().ToString();
          ASSERT_TRUE(*n > 0 || d.done()) << "no completion within 10 s";
        }
        ASSERT_TRUE(d.ok()) << StatusOf(d.cpl);
      }
      ASSERT_EQ(FirstPatternMismatch(buf.data(), 4096, seed + i), -1);
    }
  }
};

TEST_F(EventsTest, EventModeBlocksOnTheVectorAndVerifiedIoCompletes) {
  auto q = NewQpair(CompletionMode::kEvent);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->mode(), CompletionMode::kEvent);
  ASSERT_GE(q->event_fd(), 0);
  const uint64_t before = Raised(q->id());
  VerifiedIo(*q, 32, 7);
  // The CQ has IEN on vector = queue id: the device signalled each completion.
  EXPECT_GE(Raised(q->id()) - before, 64u);
  EXPECT_GT(q->statistics().blocks, 0u);
  EXPECT_GT(q->statistics().wakeups, 0u);
}

TEST_F(EventsTest, HybridModeSpinsThenBlocks) {
  IoQpairOptions o;
  o.mode = CompletionMode::kHybrid;
  o.hybrid_spin_us = 0;  // block at once: the interrupt path is what is checked
  auto q = ctrlr().AllocIoQpair(o);
  ASSERT_TRUE(q) << q.error().ToString();
  VerifiedIo(**q, 16, 11);
  EXPECT_GT((*q)->statistics().blocks, 0u);
  // A long budget: the same I/O completes by spinning (no block needed).
  o.hybrid_spin_us = 10'000'000;
  auto spinning = ctrlr().AllocIoQpair(o);
  ASSERT_TRUE(spinning) << spinning.error().ToString();
  VerifiedIo(**spinning, 4, 13);
  EXPECT_EQ((*spinning)->statistics().blocks, 0u);
}

// Interrupts the mask held back on `vector` (the "~N" of its status).
uint64_t MaskedOf(const std::string& status, uint16_t vector) {
  const std::string key = "," + std::to_string(vector) + ":fd:";
  size_t at = status.find(key);
  if (at == std::string::npos) return 0;
  size_t end = status.find_first_of(", ", at + 1);
  size_t tilde = status.find('~', at);
  if (tilde == std::string::npos || tilde > end) return 0;
  return std::stoull(status.substr(tilde + 1));
}

// A hybrid queue pair (this process maps the MSI-X table) masks its vector
// while it spins: the device sends no interrupt for completions found by
// spinning (it sets the pending bit instead), and arming unmasks it, so a
// block is still woken; a completion landing just before the unmask is
// seen by the re-check.
TEST_F(EventsTest, HybridModeMasksItsVectorWhileItSpins) {
  IoQpairOptions o;
  o.mode = CompletionMode::kHybrid;
  o.hybrid_spin_us = 10'000'000;
  auto spinning = ctrlr().AllocIoQpair(o);
  ASSERT_TRUE(spinning) << spinning.error().ToString();
  IoQpair& q = **spinning;
  ASSERT_NE(QpairState::Of(q).vector_control, nullptr) << "the MSI-X table is not mapped";
  const uint64_t raised_before = Raised(q.id());
  VerifiedIo(q, 16, 17);
  EXPECT_EQ(q.statistics().blocks, 0u);
  auto status = emu_->Control("status");
  ASSERT_TRUE(status);
  // The first completion may find the vector unmasked only before the
  // queue pair masked it at creation: none may be raised after.
  EXPECT_EQ(Raised(q.id()), raised_before) << *status;
  EXPECT_GE(MaskedOf(*status, q.id()), 31u) << *status;
  // Masked now (a completion was found by spinning); the interrupt of a
  // completion posted meanwhile is pending, and arming must not block on it.
  EXPECT_TRUE(QpairState::Of(q).vector_masked);
  DmaBuffer buf = Alloc(4096);
  Done d;
  ASSERT_TRUE(q.Read(ns(), buf.data(), 0, 8, OnDone, &d));
  // Wait for the device to post it (masked: no eventfd write).
  for (int i = 0; i < 10'000 && !QpairState::Of(q).CompletionWaiting(); ++i) ::usleep(1000);
  ASSERT_TRUE(QpairState::Of(q).CompletionWaiting());
  EXPECT_FALSE(q.ArmEvent());  // unmasked, and the re-check sees the entry
  EXPECT_FALSE(QpairState::Of(q).vector_masked);
  // Its entry still unconsumed, the pending message is sent on the unmask.
  pollfd pending{q.event_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&pending, 1, 5'000), 1) << "the pending message was not sent when the vector was unmasked";
  uint64_t drained = 0;
  (void)!::read(q.event_fd(), &drained, sizeof(drained));
  auto n = q.ProcessCompletions();
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 1u);
  EXPECT_TRUE(QpairState::Of(q).vector_masked);  // spinning again
  // A completion taken while masked: arming does not wake for it.
  Done quiet;
  ASSERT_TRUE(q.Read(ns(), buf.data(), 16, 8, OnDone, &quiet));
  while (!quiet.done()) ASSERT_TRUE(q.ProcessCompletions());
  ASSERT_TRUE(q.ArmEvent());
  EXPECT_EQ(::poll(&pending, 1, 200), 0) << "woken for a completion consumed while masked";
  ASSERT_TRUE(q.ProcessCompletions());  // nothing; the vector stays unmasked
  // Armed with nothing waiting: the next completion raises the interrupt.
  // (The message left pending while masked is dropped once the host has
  // consumed its entries; the loop tolerates a wake for it all the same.)
  ASSERT_TRUE(q.ArmEvent());
  const uint64_t raised = Raised(q.id());
  Done d2;
  ASSERT_TRUE(q.Read(ns(), buf.data(), 8, 8, OnDone, &d2));
  pollfd p{q.event_fd(), POLLIN, 0};
  for (int wake = 0; wake < 3 && !d2.done(); ++wake) {
    ASSERT_EQ(::poll(&p, 1, 10'000), 1) << "an unmasked vector was not raised";
    uint64_t count = 0;
    ASSERT_EQ(::read(q.event_fd(), &count, sizeof(count)), static_cast<ssize_t>(sizeof(count)));
    ASSERT_TRUE(q.ProcessCompletions());
  }
  ASSERT_TRUE(d2.done());
  EXPECT_TRUE(d2.ok());
  EXPECT_GT(Raised(q.id()), raised);
  // Freed while masked: the vector is unmasked for the queue id's next owner.
  ASSERT_TRUE(QpairState::Of(q).vector_masked);
  volatile uint32_t* control = QpairState::Of(q).vector_control;
  spinning->reset();
  EXPECT_EQ(*control & 1u, 0u);
}

TEST_F(EventsTest, PollModeHasNoEventFdAndRaisesNoInterrupt) {
  EXPECT_EQ(qpair().mode(), CompletionMode::kPoll);
  EXPECT_EQ(qpair().event_fd(), -1);
  EXPECT_FALSE(qpair().ArmEvent());
  const uint64_t before = Raised(qpair().id());
  VerifiedIo(qpair(), 8, 3);  // WaitCompletions spins
  EXPECT_EQ(Raised(qpair().id()), before);
  EXPECT_EQ(qpair().statistics().blocks, 0u);
}

TEST_F(EventsTest, CompletionBetweenDrainAndRecheckIsSeen) {
  auto q = NewQpair(CompletionMode::kEvent);
  ASSERT_NE(q, nullptr);
  DmaBuffer buf = Alloc(4096);
  Done d;
  // The interrupt arrives inside ArmEvent, after the drain: the re-check
  // must see its completion and refuse to block (checking before draining
  // would consume this interrupt and then block for good).
  QpairState::Of(*q).arm_hook = [&] {
    ASSERT_TRUE(q->Read(ns(), buf.data(), 0, 8, OnDone, &d));
    pollfd p{q->event_fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10'000), 1) << "the device did not signal within 10 s";
  };
  EXPECT_FALSE(q->ArmEvent());
  QpairState::Of(*q).arm_hook = nullptr;
  auto n = q->ProcessCompletions();
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 1u);
  EXPECT_TRUE(d.ok());
}

TEST_F(EventsTest, CompletionAfterArmingWakesTheBlock) {
  auto q = NewQpair(CompletionMode::kEvent);
  ASSERT_NE(q, nullptr);
  DmaBuffer buf = Alloc(4096);
  // Stale signals of earlier completions are drained by arming.
  VerifiedIo(*q, 2, 5);
  ASSERT_TRUE(q->ArmEvent());
  pollfd p{q->event_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0);  // armed: nothing pending
  Done d;
  ASSERT_TRUE(q->Read(ns(), buf.data(), 0, 8, OnDone, &d));
  // Between arming and blocking the completion arrives; the block returns.
  ASSERT_EQ(::poll(&p, 1, 10'000), 1);
  auto n = q->ProcessCompletions();
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 1u);
  EXPECT_TRUE(d.ok());
}

TEST_F(EventsTest, WaitWithNothingOutstandingReturnsAtOnce) {
  auto q = NewQpair(CompletionMode::kEvent);
  ASSERT_NE(q, nullptr);
  auto n = q->WaitCompletions(-1);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 0u);
}

TEST_F(EventsTest, PollGroupInEventModeWaitsOnEveryMember) {
  PollGroup group(PollGroupOptions{CompletionMode::kEvent, 0});
  ASSERT_GE(group.event_fd(), 0);
  auto a = NewQpair(CompletionMode::kEvent);
  auto b = NewQpair(CompletionMode::kHybrid);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(group.Add(*a));
  ASSERT_TRUE(group.Add(*b));
  Status poll_member = group.Add(qpair());
  ASSERT_FALSE(poll_member);
  EXPECT_EQ(poll_member.error().code, EINVAL);
  EXPECT_NE(poll_member.error().message.find("'poll'"), std::string::npos) << poll_member.error().message;
  DmaBuffer buf = Alloc(2 * 4096);
  auto* p = static_cast<uint8_t*>(buf.data());
  for (uint32_t round = 0; round < 16; ++round) {
    // One I/O on the second member only: the group's epoll must wake for it.
    IoQpair& q = round % 2 == 0 ? *b : *a;
    Done d;
    FillPattern(p, 4096, round);
    ASSERT_TRUE(q.Write(ns(), p, 64 + round * 8, 8, OnDone, &d));
    while (!d.done()) ASSERT_GT(group.WaitCompletions(10'000, 0, nullptr), 0u) << "round " << round;
    ASSERT_TRUE(d.ok());
  }
  PollGroupStatistics st = group.statistics();
  EXPECT_GT(st.blocks, 0u);
  EXPECT_GT(st.wakeups, 0u);
  EXPECT_EQ(st.qpairs.completed, 16u);
  // Armed with nothing outstanding: the epoll fd is not readable.
  ASSERT_TRUE(group.ArmEvent());
  pollfd pf{group.event_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&pf, 1, 0), 0);
}

class NoVectorsTest : public DriverTest {
 protected:
  // Only the admin queue's vector: no I/O queue can have an interrupt.
  std::vector<std::string> EmuArgs() const override { return {"--ns", "size=64M", "--msix-vectors", "1"}; }
};

TEST_F(NoVectorsTest, EventModeIsRefusedWithEnotsupAndNothingIsLeft) {
  auto cqs = [&] {
    auto reply = emu_->Control("status");
    EXPECT_TRUE(reply);
    return reply ? reply->substr(reply->find("io_cqs=")) : std::string();
  };
  const std::string before = cqs();
  for (CompletionMode mode : {CompletionMode::kEvent, CompletionMode::kHybrid}) {
    IoQpairOptions o;
    o.mode = mode;
    auto q = ctrlr().AllocIoQpair(o);
    ASSERT_FALSE(q);
    EXPECT_EQ(q.error().code, ENOTSUP);
    const std::string& m = q.error().message;
    EXPECT_NE(m.find(std::string("mode '") + CompletionModeName(mode) + "'"), std::string::npos) << m;
    EXPECT_NE(m.find("VFIOUSER"), std::string::npos) << m;
    EXPECT_NE(m.find("vector"), std::string::npos) << m;
  }
  // No queue reached the device and no queue id was kept: a poll-mode
  // queue pair takes the next id (2; the fixture's has 1).
  EXPECT_EQ(cqs(), before);
  auto q = ctrlr().AllocIoQpair();
  ASSERT_TRUE(q) << q.error().ToString();
  EXPECT_EQ((*q)->id(), 2u);
}

}  // namespace
}  // namespace nvmux::test
