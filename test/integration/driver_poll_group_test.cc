// Poll groups (nvmux/poll_group.h) against a real nvmux-emu: several queue
// pairs doing verified I/O driven only by the group's poll, its statistics
// against the members' own, membership errors and lifetimes (a member or
// the group destroyed first, members removed or destroyed from the
// callback), and the disconnected-queue-pair callback after Disconnect and
// after the controller fails (CSTS.CFS, surprise removal) — only for the
// failed controller's queue pairs, while another controller's member goes on.
#include "nvmux/poll_group.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "shm/base/clock.h"
#include "test/integration/driver_test_support.h"

namespace nvmux::test {
namespace {

// What the disconnected callback saw: the queue pairs, one per call (not
// their ids: two controllers' queue pairs may have the same id).
struct Disconnects {
  std::vector<const IoQpair*> seen;
  static void Record(IoQpair& q, void* arg) { static_cast<Disconnects*>(arg)->seen.push_back(&q); }
  size_t count(const IoQpair& q) const { return static_cast<size_t>(std::count(seen.begin(), seen.end(), &q)); }
};

class PollGroupTest : public DriverTest {
 protected:
  std::vector<std::string> EmuArgs() const override { return {"--ns", "size=64M"}; }
  std::unique_ptr<IoQpair> NewQpair(Controller& c, const IoQpairOptions& o = {}) {
    auto q = c.AllocIoQpair(o);
    EXPECT_TRUE(q) << q.error().ToString();
    return q ? std::move(*q) : nullptr;
  }
  // Polls `group` (counting calls and idle calls) until `pred` holds; false
  // on deadline.
  bool PollGroupUntil(PollGroup& group, const std::function<bool()>& pred, Disconnects* d = nullptr,
                      std::chrono::milliseconds timeout = 10s) {
    int64_t deadline = MonotonicNanos() + std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
    while (!pred()) {
      uint64_t n = group.ProcessCompletions(0, d ? Disconnects::Record : nullptr, d);
      group_polls_++;
      completions_ += n;
      if (n == 0) group_idle_polls_++;
      if (MonotonicNanos() > deadline) return pred();
    }
    return true;
  }
  uint64_t group_polls_ = 0, group_idle_polls_ = 0, completions_ = 0;
};

TEST_F(PollGroupTest, VerifiedIoOnSeveralQueuePairsAndStatisticsAddUp) {
  constexpr uint32_t kQpairs = 4, kIos = 32, kBlocks = 8, kBytes = kBlocks * 512;
  std::vector<std::unique_ptr<IoQpair>> extra;
  std::vector<IoQpair*> qs{&qpair()};
  for (uint32_t i = 1; i < kQpairs; ++i) {
    extra.push_back(NewQpair(ctrlr()));
    ASSERT_NE(extra.back(), nullptr);
    qs.push_back(extra.back().get());
  }
  PollGroup group;
  for (IoQpair* q : qs) ASSERT_TRUE(group.Add(*q));
  EXPECT_EQ(group.size(), kQpairs);
  std::vector<QpairStatistics> before;
  for (IoQpair* q : qs) before.push_back(q->statistics());

  // Every queue pair writes its own range, then reads it back; only the
  // group is polled.
  DmaBuffer data = Alloc(size_t{kQpairs} * kIos * kBytes);
  auto* p = static_cast<uint8_t*>(data.data());
  auto at = [&](uint32_t q, uint32_t i) { return p + (size_t{q} * kIos + i) * kBytes; };
  auto lba = [&](uint32_t q, uint32_t i) { return uint64_t{q} * 4096 + uint64_t{i} * kBlocks; };
  std::vector<Done> writes(kQpairs * kIos), reads(kQpairs * kIos);
  for (uint32_t q = 0; q < kQpairs; ++q)
    for (uint32_t i = 0; i < kIos; ++i) {
      FillPattern(at(q, i), kBytes, q * 1000 + i);
      ASSERT_TRUE(qs[q]->Write(ns(), at(q, i), lba(q, i), kBlocks, OnDone, &writes[q * kIos + i]));
    }
  auto all = [](const std::vector<Done>& v) {
    return std::all_of(v.begin(), v.end(), [](const Done& d) { return d.done(); });
  };
  Disconnects disconnects;
  ASSERT_TRUE(PollGroupUntil(group, [&] { return all(writes); }, &disconnects));
  std::memset(p, 0, data.size());
  for (uint32_t q = 0; q < kQpairs; ++q)
    for (uint32_t i = 0; i < kIos; ++i)
      ASSERT_TRUE(qs[q]->Read(ns(), at(q, i), lba(q, i), kBlocks, OnDone, &reads[q * kIos + i]));
  ASSERT_TRUE(PollGroupUntil(group, [&] { return all(reads); }, &disconnects));
  for (uint32_t q = 0; q < kQpairs; ++q)
    for (uint32_t i = 0; i < kIos; ++i) {
      EXPECT_TRUE(writes[q * kIos + i].ok()) << StatusOf(writes[q * kIos + i].cpl);
      EXPECT_TRUE(reads[q * kIos + i].ok()) << StatusOf(reads[q * kIos + i].cpl);
      EXPECT_EQ(FirstPatternMismatch(at(q, i), kBytes, q * 1000 + i), -1) << "queue pair " << q << " I/O " << i;
    }
  EXPECT_TRUE(disconnects.seen.empty());
  // One more poll with nothing to do is an idle poll.
  EXPECT_EQ(group.ProcessCompletions(0, Disconnects::Record, &disconnects), 0u);
  group_polls_++;
  group_idle_polls_++;

  // The group's own counters are what its calls returned; the members' sum
  // is what each member says; every member was polled at every group poll.
  PollGroupStatistics st = group.statistics();
  EXPECT_EQ(st.polls, group_polls_);
  EXPECT_EQ(st.idle_polls, group_idle_polls_);
  EXPECT_EQ(st.completions, completions_);
  EXPECT_EQ(st.completions, uint64_t{2} * kQpairs * kIos);
  EXPECT_EQ(st.disconnected, 0u);
  QpairStatistics sum;
  for (uint32_t q = 0; q < kQpairs; ++q) {
    const QpairStatistics& s = qs[q]->statistics();
    EXPECT_EQ(s.completed - before[q].completed, 2u * kIos) << "queue pair " << q;
    EXPECT_EQ(s.polls - before[q].polls, group_polls_) << "queue pair " << q;
    sum.submitted += s.submitted;
    sum.completed += s.completed;
    sum.polls += s.polls;
    sum.idle_polls += s.idle_polls;
    sum.sq_doorbell_writes += s.sq_doorbell_writes;
    sum.cq_doorbell_writes += s.cq_doorbell_writes;
    sum.shadow_doorbell_updates += s.shadow_doorbell_updates;
    sum.queued += s.queued;
    sum.split += s.split;
  }
  EXPECT_EQ(st.qpairs.submitted, sum.submitted);
  EXPECT_EQ(st.qpairs.completed, sum.completed);
  EXPECT_EQ(st.qpairs.polls, sum.polls);
  EXPECT_EQ(st.qpairs.idle_polls, sum.idle_polls);
  EXPECT_EQ(st.qpairs.sq_doorbell_writes, sum.sq_doorbell_writes);
  EXPECT_EQ(st.qpairs.cq_doorbell_writes, sum.cq_doorbell_writes);
  EXPECT_EQ(st.qpairs.shadow_doorbell_updates, sum.shadow_doorbell_updates);
  EXPECT_EQ(st.qpairs.queued, sum.queued);
  EXPECT_EQ(st.qpairs.split, sum.split);
  EXPECT_GE(st.qpairs.completed, st.completions);
  // Every command was announced to the device one way or the other.
  EXPECT_GT(st.qpairs.sq_doorbell_writes + st.qpairs.shadow_doorbell_updates, 0u);
  std::printf("[ figures  ] %u queue pairs, %llu completions in %llu group polls (%llu idle); "
              "sq doorbells %llu, cq doorbells %llu, shadow updates %llu\n",
              kQpairs, static_cast<unsigned long long>(st.completions), static_cast<unsigned long long>(st.polls),
              static_cast<unsigned long long>(st.idle_polls),
              static_cast<unsigned long long>(st.qpairs.sq_doorbell_writes),
              static_cast<unsigned long long>(st.qpairs.cq_doorbell_writes),
              static_cast<unsigned long long>(st.qpairs.shadow_doorbell_updates));

  // A removed member leaves the sum.
  ASSERT_TRUE(group.Remove(*qs[3]));
  EXPECT_EQ(group.statistics().qpairs.completed, sum.completed - qs[3]->statistics().completed);
}

TEST_F(PollGroupTest, MembershipErrorsAndLifetimes) {
  PollGroup group, other;
  ASSERT_TRUE(group.Add(qpair()));
  Status st = group.Add(qpair());
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EEXIST) << st.error().ToString();
  st = other.Add(qpair());
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EBUSY) << st.error().ToString();
  st = other.Remove(qpair());
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ENOENT) << st.error().ToString();
  EXPECT_EQ(group.size(), 1u);
  EXPECT_EQ(other.size(), 0u);
  ASSERT_TRUE(group.Remove(qpair()));
  st = group.Remove(qpair());
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ENOENT);
  ASSERT_TRUE(other.Add(qpair()));  // free again
  ASSERT_TRUE(other.Remove(qpair()));

  // Destroying a member takes it out of its group.
  auto doomed = NewQpair(ctrlr());
  ASSERT_NE(doomed, nullptr);
  ASSERT_TRUE(group.Add(*doomed));
  ASSERT_TRUE(group.Add(qpair()));
  EXPECT_EQ(group.size(), 2u);
  doomed.reset();
  EXPECT_EQ(group.size(), 1u);
  EXPECT_EQ(group.statistics().qpairs.completed, qpair().statistics().completed);
  Done d;
  DmaBuffer buf = Alloc(4096);
  ASSERT_TRUE(qpair().Write(ns(), buf.data(), 0, 8, OnDone, &d));
  ASSERT_TRUE(PollGroupUntil(group, [&] { return d.done(); }));
  EXPECT_TRUE(d.ok()) << StatusOf(d.cpl);

  // Destroying the group leaves its members usable and free to join another.
  auto temp = std::make_unique<PollGroup>();
  ASSERT_TRUE(group.Remove(qpair()));
  ASSERT_TRUE(temp->Add(qpair()));
  temp.reset();
  ASSERT_TRUE(group.Add(qpair()));
  FillPattern(buf.data(), 4096, 7);
  Done w;
  ASSERT_TRUE(qpair().Write(ns(), buf.data(), 8, 8, OnDone, &w));
  ASSERT_TRUE(PollGroupUntil(group, [&] { return w.done(); }));
  EXPECT_TRUE(w.ok()) << StatusOf(w.cpl);
  ExpectPattern(ns(), 8, 8, 7);
}

TEST_F(PollGroupTest, DisconnectedCallbackAfterDisconnectUntilReconnected) {
  auto a = NewQpair(ctrlr());
  auto b = NewQpair(ctrlr());
  IoQpairOptions create_only;
  create_only.create_only = true;
  auto c = NewQpair(ctrlr(), create_only);
  ASSERT_TRUE(a && b && c);
  PollGroup group;
  ASSERT_TRUE(group.Add(qpair()));
  ASSERT_TRUE(group.Add(*a));
  ASSERT_TRUE(group.Add(*b));
  ASSERT_TRUE(group.Add(*c));

  // Never connected: reported at every poll; connecting it ends that.
  Disconnects d;
  EXPECT_EQ(group.ProcessCompletions(0, Disconnects::Record, &d), 0u);
  EXPECT_EQ(d.seen, std::vector<const IoQpair*>{c.get()});
  ASSERT_TRUE(c->Connect());
  d.seen.clear();
  group.ProcessCompletions(0, Disconnects::Record, &d);
  EXPECT_TRUE(d.seen.empty());

  // `a` disconnected with a write outstanding (delayed in the device): the
  // write completes 0/08 at once, and every group poll reports `a` while
  // the other members go on completing I/O.
  ControlOk("delay us=200000 opc=0x01 count=1");
  DmaBuffer buf = Alloc(4 * 4096);
  auto* p = static_cast<uint8_t*>(buf.data());
  Done held;
  ASSERT_TRUE(a->Write(ns(), p, 0, 8, OnDone, &held));
  ASSERT_TRUE(PollGroupUntil(group, [] { return true; }, &d));
  a->Disconnect();
  EXPECT_EQ(held.calls, 1);
  EXPECT_EQ(held.cpl.sc(), kAbortedSqDeletion) << StatusOf(held.cpl);
  Done wb, wq;
  FillPattern(p + 4096, 4096, 11);
  ASSERT_TRUE(b->Write(ns(), p + 4096, 16, 8, OnDone, &wb));
  ASSERT_TRUE(qpair().Write(ns(), p + 4096, 24, 8, OnDone, &wq));
  uint64_t polls_before = group.statistics().polls;
  d.seen.clear();
  ASSERT_TRUE(PollGroupUntil(group, [&] { return wb.done() && wq.done(); }, &d));
  EXPECT_TRUE(wb.ok() && wq.ok()) << StatusOf(wb.cpl) << " " << StatusOf(wq.cpl);
  uint64_t polls = group.statistics().polls - polls_before;
  EXPECT_EQ(d.count(*a), polls) << "reported at every poll";
  EXPECT_EQ(d.seen.size(), polls) << "and nobody else";
  EXPECT_EQ(group.statistics().disconnected, 1 + polls);

  // Reconnected: polled again, no more reports, I/O through the group.
  ASSERT_TRUE(a->Reconnect());
  d.seen.clear();
  Done wa;
  ASSERT_TRUE(a->Write(ns(), p + 4096, 32, 8, OnDone, &wa));
  ASSERT_TRUE(PollGroupUntil(group, [&] { return wa.done(); }, &d));
  EXPECT_TRUE(wa.ok()) << StatusOf(wa.cpl);
  EXPECT_TRUE(d.seen.empty());
  ExpectPattern(ns(), 16, 8, 11);
  ExpectPattern(ns(), 24, 8, 11);
  ExpectPattern(ns(), 32, 8, 11);
}

// The callback may Remove or destroy the queue pair it is given, and the
// rest of that poll still polls every other member exactly once.
TEST_F(PollGroupTest, CallbackMayRemoveOrDestroyTheQueuePair) {
  std::vector<std::unique_ptr<IoQpair>> qs;
  for (int i = 0; i < 4; ++i) {
    qs.push_back(NewQpair(ctrlr()));
    ASSERT_NE(qs.back(), nullptr);
  }
  PollGroup group;
  for (auto& q : qs) ASSERT_TRUE(group.Add(*q));
  ASSERT_TRUE(group.Add(qpair()));
  qs[0]->Disconnect();
  qs[2]->Disconnect();
  struct Context {
    PollGroup* group;
    std::vector<std::unique_ptr<IoQpair>>* qs;
    int calls = 0;
  } ctx{&group, &qs};
  std::vector<uint64_t> polls_before;
  for (auto& q : qs) polls_before.push_back(q->statistics().polls);
  uint64_t fixture_polls = qpair().statistics().polls;
  // qs[0]: removed by the callback; qs[2]: destroyed by it.
  group.ProcessCompletions(
      0,
      [](IoQpair& q, void* arg) {
        auto* c = static_cast<Context*>(arg);
        c->calls++;
        if (&q == (*c->qs)[0].get()) {
          EXPECT_TRUE(c->group->Remove(q));
        } else if (&q == (*c->qs)[2].get()) {
          (*c->qs)[2].reset();
        } else {
          ADD_FAILURE() << "queue pair " << q.id() << " reported";
        }
      },
      &ctx);
  EXPECT_EQ(ctx.calls, 2);
  EXPECT_EQ(group.size(), 3u);
  EXPECT_EQ(qs[1]->statistics().polls, polls_before[1] + 1);
  EXPECT_EQ(qs[3]->statistics().polls, polls_before[3] + 1);
  EXPECT_EQ(qpair().statistics().polls, fixture_polls + 1);
  EXPECT_EQ(group.ProcessCompletions(0, nullptr), 0u);  // nothing left to report, nothing dangling
  EXPECT_EQ(ctx.calls, 2);
  Status st = group.Remove(*qs[0]);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ENOENT);
}

// ---- the controller failing under a group ----

enum class Loss { kCfs, kRemove };

class PollGroupLossTest : public PollGroupTest, public ::testing::WithParamInterface<Loss> {};

TEST_P(PollGroupLossTest, FailedControllersQueuePairsAreReportedOthersGoOn) {
  // A second controller (its own emulator) with one member in the same group.
  auto emu2 = EmuProcess::Start(EmuArgs());
  ASSERT_TRUE(emu2) << emu2.error().ToString();
  auto ctrlr2 = Controller::Connect(env(), (*emu2)->trid());
  ASSERT_TRUE(ctrlr2) << ctrlr2.error().ToString();
  auto other = NewQpair(**ctrlr2);
  auto a = NewQpair(ctrlr());
  ASSERT_TRUE(other && a);
  PollGroup group;
  ASSERT_TRUE(group.Add(qpair()));
  ASSERT_TRUE(group.Add(*other));
  ASSERT_TRUE(group.Add(*a));

  // Writes held in the failing device.
  ControlOk("delay us=10000000 opc=0x01");
  DmaBuffer buf = Alloc(16 * 4096);
  auto* p = static_cast<uint8_t*>(buf.data());
  std::vector<Done> held(8);
  for (uint32_t i = 0; i < 8; ++i)
    ASSERT_TRUE((i % 2 ? *a : qpair()).Write(ns(), p + i * 4096, i * 8, 8, OnDone, &held[i]));
  Disconnects d;
  ASSERT_TRUE(PollGroupUntil(group, [] { return true; }, &d));
  ASSERT_TRUE(d.seen.empty());

  int64_t start = MonotonicNanos();
  ControlOk(GetParam() == Loss::kCfs ? "cfs" : "remove");
  // The health check (every 10 ms of idle polling with requests
  // outstanding) finds it; both members are reported, the other
  // controller's never.
  ASSERT_TRUE(PollGroupUntil(group, [&] { return d.count(qpair()) > 0 && d.count(*a) > 0; }, &d, 5s))
      << "failure not reported within 5 s";
  int64_t noticed_ms = (MonotonicNanos() - start) / 1'000'000;
  EXPECT_LT(noticed_ms, 2000);
  EXPECT_TRUE(ctrlr().failed());
  EXPECT_EQ(d.count(*other), 0u);
  EXPECT_EQ(d.seen.size(), d.count(qpair()) + d.count(*a));
  for (uint32_t i = 0; i < 8; ++i) {
    EXPECT_EQ(held[i].calls, 1) << "write " << i;
    EXPECT_EQ(held[i].cpl.sc(), kAbortedSqDeletion) << StatusOf(held[i].cpl);
  }
  EXPECT_EQ(qpair().outstanding() + a->outstanding(), 0u);

  // The other controller's member still does verified I/O through the group.
  FillPattern(p, 4096, 21);
  Done w, r;
  ASSERT_TRUE(other->Write(*(*ctrlr2)->GetNamespace(1), p, 0, 8, OnDone, &w));
  ASSERT_TRUE(PollGroupUntil(group, [&] { return w.done(); }, &d));
  EXPECT_TRUE(w.ok()) << StatusOf(w.cpl);
  std::memset(p, 0, 4096);
  ASSERT_TRUE(other->Read(*(*ctrlr2)->GetNamespace(1), p, 0, 8, OnDone, &r));
  ASSERT_TRUE(PollGroupUntil(group, [&] { return r.done(); }, &d));
  EXPECT_TRUE(r.ok()) << StatusOf(r.cpl);
  EXPECT_EQ(FirstPatternMismatch(p, 4096, 21), -1);
  EXPECT_EQ(d.count(*other), 0u);
  EXPECT_GT(d.count(qpair()), 1u) << "reported at every poll";

  // The failed ones, removed, are no longer reported.
  ASSERT_TRUE(group.Remove(qpair()));
  ASSERT_TRUE(group.Remove(*a));
  d.seen.clear();
  group.ProcessCompletions(0, Disconnects::Record, &d);
  EXPECT_TRUE(d.seen.empty());

  other.reset();
  ctrlr2->reset();
}

std::string LossName(const ::testing::TestParamInfo<Loss>& info) {
  switch (info.param) {
    case Loss::kCfs: return "ControllerFatalStatus";
    case Loss::kRemove: return "SurpriseRemoval";
  }
  return "?";
}

INSTANTIATE_TEST_SUITE_P(Driver, PollGroupLossTest, ::testing::Values(Loss::kCfs, Loss::kRemove), LossName);

}  // namespace
}  // namespace nvmux::test
