// Probing and detaching against real nvmux-emu processes (nvmux/probe.h,
// nvmux/detach.h): the asynchronous probe reaches attach by polling; the
// probe callback's options take effect; a repeated probe reports nothing
// when nothing changed, a surprise removal once through the remove
// callback, and a restarted emulator as new; the asynchronous detach polls
// to completion and the device saw the shutdown notification.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "nvmux/detach.h"
#include "nvmux/probe.h"
#include "shm/base/clock.h"
#include "test/integration/driver_test_support.h"

namespace nvmux::test {
namespace {

// nvmux-emu at a directory of our choosing, so a test can stop it and start
// another at the same path (EmuProcess picks a fresh one each time).
class EmuAt {
 public:
  static std::unique_ptr<EmuAt> Start(const std::string& dir) {
    auto p = Subprocess::Spawn({NVMUX_EMU, "--socket", dir, "--ns", "size=64M"});
    if (!p) {
      ADD_FAILURE() << p.error().ToString();
      return nullptr;
    }
    auto emu = std::unique_ptr<EmuAt>(new EmuAt(std::move(*p)));
    int64_t deadline = MonotonicNanos() + 10'000'000'000;
    while (!(std::filesystem::exists(dir + "/cntrl") && std::filesystem::exists(dir + "/control"))) {
      if (MonotonicNanos() > deadline) {
        ADD_FAILURE() << "nvmux-emu did not create its sockets in " << dir;
        return nullptr;
      }
      std::this_thread::sleep_for(1ms);
    }
    return emu;
  }
  ~EmuAt() { Stop(); }
  // SIGTERM and a clean exit (the emulator removes its sockets).
  void Stop() {
    if (!process_.running()) return;
    process_.Kill(SIGTERM);
    auto st = process_.Wait();
    EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0);
  }

 private:
  explicit EmuAt(Subprocess p) : process_(std::move(p)) {}
  Subprocess process_;
};

struct Counts {
  int probes = 0;
  int attaches = 0;
  int removes = 0;
  Controller* last_removed = nullptr;
};

class ProbeTest : public ::testing::Test {
 protected:
  void SetUp() override { (void)TestEnv(); }
  Env& env() { return TestEnv(); }

  ProbeFn CountProbe(Counts& n) {
    return [&n](const TransportId&, ControllerOptions&) {
      n.probes++;
      return true;
    };
  }
  AttachFn CountAttach(Counts& n) {
    return [&n](const TransportId&, Controller&) { n.attaches++; };
  }
  RemoveFn CountRemove(Counts& n) {
    return [&n](const TransportId&, Controller& c) {
      n.removes++;
      n.last_removed = &c;
    };
  }
  // A synchronous probe through `prober` that must succeed.
  std::vector<std::unique_ptr<Controller>> ProbeOk(Prober& prober, const TransportId& trid, Counts& n) {
    auto r = prober.Probe(trid, CountProbe(n), CountAttach(n), CountRemove(n));
    EXPECT_TRUE(r) << r.error().ToString();
    if (!r) return {};
    return std::move(*r);
  }
};

// A probe callback may choose the arbitration mechanism; one the device
// does not offer (nvmux-emu offers round robin only, CAP.AMS = 0) fails the
// attach naming it, and round robin attaches.
TEST_F(ProbeTest, ProbeChosenArbitrationTheDeviceLacksIsRefusedNamingIt) {
  auto emu = EmuProcess::Start({"--ns", "size=64M"});
  ASSERT_TRUE(emu) << emu.error().ToString();
  auto wrr = Probe(env(), (*emu)->trid(),
                   [](const TransportId&, ControllerOptions& o) {
                     o.arbitration = Arbitration::kWeightedRoundRobin;
                     return true;
                   },
                   nullptr);
  ASSERT_FALSE(wrr);
  EXPECT_EQ(wrr.error().code, ENOTSUP);
  EXPECT_NE(wrr.error().message.find("weighted round robin"), std::string::npos) << wrr.error().message;
  auto rr = Probe(env(), (*emu)->trid(), nullptr, nullptr);
  ASSERT_TRUE(rr) << rr.error().ToString();
  EXPECT_EQ(rr->size(), 1u);
}

TEST_F(ProbeTest, AsyncProbeReachesAttachByPollingAndCallsAttachOnce) {
  auto emu = EmuProcess::Start({"--ns", "size=64M"});
  ASSERT_TRUE(emu) << emu.error().ToString();
  Prober prober(env());
  Counts n;
  auto ctx = prober.ProbeAsync((*emu)->trid(), CountProbe(n), CountAttach(n), CountRemove(n));
  EXPECT_EQ(n.probes, 0) << "ProbeAsync itself calls nothing";
  int polls = 0;
  Status st = Ok();
  int64_t deadline = MonotonicNanos() + 10'000'000'000;
  for (;;) {
    st = ctx->Poll();
    ++polls;
    if (ctx->done() || MonotonicNanos() > deadline) break;
    ASSERT_EQ(st.error().code, EAGAIN) << st.error().ToString();
    EXPECT_EQ(n.attaches, 0) << "attach ran before the probe finished";
  }
  ASSERT_TRUE(ctx->done());
  ASSERT_TRUE(st) << st.error().ToString();
  // Scan, open, prepare, the init machine's states (a dozen at least), finish.
  EXPECT_GT(polls, 10);
  EXPECT_EQ(n.probes, 1);
  EXPECT_EQ(n.attaches, 1);
  EXPECT_EQ(n.removes, 0);
  EXPECT_TRUE(ctx->Poll()) << "a finished probe keeps its result";
  EXPECT_EQ(n.attaches, 1);
  auto attached = ctx->TakeAttached();
  ASSERT_EQ(attached.size(), 1u);
  Controller& c = *attached[0];
  EXPECT_EQ(c.trid(), (*emu)->trid());
  ASSERT_NE(c.GetNamespace(1), nullptr);
  auto q = c.AllocIoQpair();
  ASSERT_TRUE(q) << q.error().ToString();
  q->reset();
  EXPECT_EQ(prober.known(), 1u);
  attached.clear();
  EXPECT_EQ(prober.known(), 0u) << "a destroyed controller is forgotten";
}

TEST_F(ProbeTest, ProbeCallbackOptionsTakeEffect) {
  auto emu = EmuProcess::Start({"--ns", "size=64M"});
  ASSERT_TRUE(emu) << emu.error().ToString();
  auto probe = [](const TransportId&, ControllerOptions& o) {
    o.num_io_queues = 2;
    o.io_queue_size = 4;  // 3 trackers per queue pair
    o.io_queue_requests = 16;
    return true;
  };
  auto r = Probe(env(), (*emu)->trid(), probe, nullptr);
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->size(), 1u);
  Controller& c = *(*r)[0];
  EXPECT_EQ(c.options().io_queue_size, 4u);
  EXPECT_EQ(c.io_queues_granted(), 2u);
  auto q = c.AllocIoQpair();
  ASSERT_TRUE(q) << q.error().ToString();
  Namespace* ns = c.GetNamespace(1);
  ASSERT_NE(ns, nullptr);
  auto buf = env().AllocDma(8 * 512);
  ASSERT_TRUE(buf);
  std::vector<Done> done(8);
  for (uint32_t i = 0; i < 8; ++i)
    ASSERT_TRUE((*q)->Read(*ns, static_cast<uint8_t*>(buf->data()) + i * 512, i, 1, OnDone, &done[i]));
  EXPECT_GT((*q)->statistics().queued, 0u) << "8 reads on a 4-entry queue: some wait for a tracker";
  EXPECT_TRUE(PollUntil(**q, [&] { return std::all_of(done.begin(), done.end(), [](auto& d) { return d.done(); }); }));
  for (const Done& d : done) EXPECT_TRUE(d.ok()) << StatusOf(d.cpl);
  // A probe that declines attaches nothing.
  auto declined = Probe(env(), (*emu)->trid(), [](const TransportId&, ControllerOptions&) { return false; }, nullptr);
  ASSERT_TRUE(declined);
  EXPECT_TRUE(declined->empty());
  q->reset();
}

TEST_F(ProbeTest, RepeatedProbeReportsNothingWhenNothingChanged) {
  auto emu = EmuProcess::Start({"--ns", "size=64M"});
  ASSERT_TRUE(emu) << emu.error().ToString();
  Prober prober(env());
  Counts n;
  auto first = ProbeOk(prober, (*emu)->trid(), n);
  ASSERT_EQ(first.size(), 1u);
  for (int i = 0; i < 3; ++i) {
    auto again = ProbeOk(prober, (*emu)->trid(), n);
    EXPECT_TRUE(again.empty());
  }
  EXPECT_EQ(n.probes, 1);
  EXPECT_EQ(n.attaches, 1);
  EXPECT_EQ(n.removes, 0);
  EXPECT_FALSE(first[0]->failed());
  // A controller attached with Connect and adopted is skipped the same way.
  Prober other(env());
  first.clear();
  auto c = Controller::Connect(env(), (*emu)->trid());
  ASSERT_TRUE(c) << c.error().ToString();
  other.Adopt(**c);
  Counts m;
  auto none = ProbeOk(other, (*emu)->trid(), m);
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(m.attaches + m.removes + m.probes, 0);
}

TEST_F(ProbeTest, SurpriseRemovalIsReportedOnceAndItsQueuePairsFailWithEnxio) {
  auto emu = EmuProcess::Start({"--ns", "size=64M"});
  ASSERT_TRUE(emu) << emu.error().ToString();
  Prober prober(env());
  Counts n;
  auto attached = ProbeOk(prober, (*emu)->trid(), n);
  ASSERT_EQ(attached.size(), 1u);
  std::unique_ptr<Controller> ctrlr = std::move(attached[0]);
  auto q = ctrlr->AllocIoQpair();
  ASSERT_TRUE(q) << q.error().ToString();
  auto reply = (*emu)->Control("remove");
  ASSERT_TRUE(reply && reply->rfind("ok", 0) == 0) << (reply ? *reply : reply.error().ToString());

  // The next probe reports it (the device refuses new connections, so
  // there is nothing to attach: the probe's error says so).
  auto r = prober.Probe((*emu)->trid(), CountProbe(n), CountAttach(n), CountRemove(n));
  EXPECT_EQ(n.removes, 1);
  EXPECT_EQ(n.last_removed, ctrlr.get());
  EXPECT_TRUE(ctrlr->failed());
  EXPECT_TRUE(ctrlr->removed());
  EXPECT_EQ(n.attaches, 1);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().code == ECONNREFUSED || r.error().code == ENXIO || r.error().code == EPROTO)
      << r.error().ToString();
  // Its queue pair fails with ENXIO, whatever the application does next.
  auto polled = (*q)->ProcessCompletions();
  ASSERT_FALSE(polled);
  EXPECT_EQ(polled.error().code, ENXIO) << polled.error().ToString();
  // Reported once: later probes say nothing more about it.
  (void)prober.Probe((*emu)->trid(), CountProbe(n), CountAttach(n), CountRemove(n));
  EXPECT_EQ(n.removes, 1);
  q->reset();
  ctrlr.reset();  // the application detaches it after remove (no shutdown: the device is gone)
  (void)prober.Probe((*emu)->trid(), CountProbe(n), CountAttach(n), CountRemove(n));
  EXPECT_EQ(n.removes, 1);
  EXPECT_EQ(prober.known(), 0u);
}

TEST_F(ProbeTest, EmulatorRestartedAtTheSamePathIsAttachedAgain) {
  std::string dir = "/tmp/nvmux-probe-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  auto emu = EmuAt::Start(dir);
  ASSERT_TRUE(emu);
  auto trid = TransportId::Parse("trtype:vfiouser traddr:" + dir);
  ASSERT_TRUE(trid);
  Prober prober(env());
  Counts n;
  auto attached = ProbeOk(prober, *trid, n);
  ASSERT_EQ(attached.size(), 1u);
  emu->Stop();  // the emulator exits: the socket goes
  ASSERT_FALSE(std::filesystem::exists(dir + "/cntrl"));
  auto r = prober.Probe(*trid, CountProbe(n), CountAttach(n), CountRemove(n));
  EXPECT_EQ(n.removes, 1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENOENT) << r.error().ToString();
  attached.clear();

  emu = EmuAt::Start(dir);
  ASSERT_TRUE(emu);
  auto again = ProbeOk(prober, *trid, n);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(n.attaches, 2);
  EXPECT_EQ(n.removes, 1);
  // It works: a write and a read back.
  Controller& c = *again[0];
  auto q = c.AllocIoQpair();
  ASSERT_TRUE(q) << q.error().ToString();
  auto buf = env().AllocDma(4096);
  ASSERT_TRUE(buf);
  FillPattern(buf->data(), 4096, 7);
  Done w;
  ASSERT_TRUE((*q)->Write(*c.GetNamespace(1), buf->data(), 0, 8, OnDone, &w));
  ASSERT_TRUE(PollUntil(**q, [&] { return w.done(); }));
  EXPECT_TRUE(w.ok()) << StatusOf(w.cpl);
  q->reset();
  again.clear();
  emu.reset();
  std::filesystem::remove_all(dir);
}

// The CSTS the emulator reports on its control socket ("status").
uint32_t EmuCsts(EmuProcess& emu) {
  auto reply = emu.Control("status");
  if (!reply) {
    ADD_FAILURE() << reply.error().ToString();
    return 0;
  }
  size_t at = reply->find("csts=");
  if (at == std::string::npos) {
    ADD_FAILURE() << "no csts in '" << *reply << "'";
    return 0;
  }
  return static_cast<uint32_t>(std::strtoul(reply->c_str() + at + 5, nullptr, 16));
}

TEST_F(ProbeTest, AsyncDetachPollsToCompletionAndTheDeviceSawTheShutdown) {
  auto a = EmuProcess::Start({"--ns", "size=64M"});
  auto b = EmuProcess::Start({"--ns", "size=64M"});
  ASSERT_TRUE(a && b);
  auto ca = Controller::Connect(env(), (*a)->trid());
  auto cb = Controller::Connect(env(), (*b)->trid());
  ASSERT_TRUE(ca && cb);
  EXPECT_EQ(spec::Csts{EmuCsts(**a)}.shst(), 0);
  DetachContext detach;
  detach.Add(std::move(*ca));
  detach.Add(std::move(*cb));
  EXPECT_EQ(detach.pending(), 2u);
  int polls = 0;
  int64_t deadline = MonotonicNanos() + 15'000'000'000;
  Status st = detach.Poll();
  for (++polls; !st && MonotonicNanos() < deadline; ++polls) {
    ASSERT_EQ(st.error().code, EAGAIN) << st.error().ToString();
    st = detach.Poll();
  }
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_GE(polls, 2) << "CC.SHN is written in one step, CSTS.SHST read in later ones";
  EXPECT_EQ(detach.pending(), 0u);
  EXPECT_EQ(detach.completed(), 2u);
  EXPECT_EQ(detach.timed_out(), 0u);
  // The controllers are gone (disconnected); the devices keep their state
  // for the next client: CC.SHN acknowledged with SHST = 10b.
  EXPECT_EQ(spec::Csts{EmuCsts(**a)}.shst(), 2) << "device A did not see the shutdown notification";
  EXPECT_EQ(spec::Csts{EmuCsts(**b)}.shst(), 2) << "device B did not see the shutdown notification";

  // The synchronous forms do the same.
  auto c = Controller::Connect(env(), (*a)->trid());
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(spec::Csts{EmuCsts(**a)}.shst(), 0) << "a new attach resets the controller";
  Detach(std::move(*c));
  EXPECT_EQ(spec::Csts{EmuCsts(**a)}.shst(), 2);
  auto d = Controller::Connect(env(), (*b)->trid());
  ASSERT_TRUE(d) << d.error().ToString();
  d->reset();  // destruction is the synchronous detach too
  EXPECT_EQ(spec::Csts{EmuCsts(**b)}.shst(), 2);
}

TEST_F(ProbeTest, DetachOfAFailedControllerSkipsTheShutdown) {
  auto emu = EmuProcess::Start({"--ns", "size=64M"});
  ASSERT_TRUE(emu) << emu.error().ToString();
  auto c = Controller::Connect(env(), (*emu)->trid());
  ASSERT_TRUE(c) << c.error().ToString();
  auto reply = (*emu)->Control("remove");
  ASSERT_TRUE(reply && reply->rfind("ok", 0) == 0);
  // The application's admin polling notices the loss (its health check).
  int64_t until = MonotonicNanos() + 5'000'000'000;
  while (!(*c)->failed() && MonotonicNanos() < until) (void)(*c)->ProcessAdminCompletions();
  ASSERT_TRUE((*c)->failed());
  auto ctx = DetachAsync(std::move(*c));
  int64_t start = MonotonicNanos();
  while (!ctx->Poll()) ASSERT_LT(MonotonicNanos() - start, 5'000'000'000);
  EXPECT_EQ(ctx->completed(), 0u);
  EXPECT_EQ(ctx->skipped(), 1u);
}

}  // namespace
}  // namespace nvmux::test
