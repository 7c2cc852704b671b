// The driver under device faults, injected by a real nvmux-emu: failed
// commands (the status reaches the callback), dropped commands (abort,
// disconnect), and the device going away mid-I/O — surprise removal (control
// socket or SIGUSR1), the emulator killed with SIGKILL, controller fatal
// status (CSTS.CFS). After such a failure ProcessCompletions returns ENXIO
// within a bounded time, every outstanding request (on the device or waiting
// for a tracker) completes once with SCT 0 / SC 0x08, later submissions get
// ENXIO, and nothing hangs.
#include <signal.h>

#include <cstring>
#include <vector>

#include "shm/base/clock.h"
#include "test/integration/driver_test_support.h"

namespace nvmux::test {
namespace {

namespace nvm = spec::nvm;

class FaultTest : public DriverTest {
 protected:
  std::vector<std::string> EmuArgs() const override { return {"--ns", "size=64M"}; }
};

TEST_F(FaultTest, FailedCommandStatusReachesTheCallback) {
  WritePattern(ns(), 0, 4, 1);
  ControlOk("fail opc=0x02 count=2 sct=2 sc=0x81 dnr=1");
  DmaBuffer buf = Alloc(4 * 512);
  for (int i = 0; i < 2; ++i) {
    spec::Cqe c = Run([&](CompletionFn fn, void* arg) { return qpair().Read(ns(), buf.data(), 0, 4, fn, arg); });
    EXPECT_EQ(c.sct(), spec::sct::kMediaError) << StatusOf(c);
    EXPECT_EQ(c.sc(), spec::sc::kUnrecoveredReadError) << StatusOf(c);
    EXPECT_TRUE(c.dnr());
  }
  ExpectPattern(ns(), 0, 4, 1);  // the rule is used up
  // An admin command failed by the device: EIO, and the completion kept.
  ControlOk("fail opc=0x0a queue=admin sct=0 sc=0x06");
  auto arb = ctrlr().GetFeature(0x01);
  ASSERT_FALSE(arb);
  EXPECT_EQ(arb.error().code, EIO) << arb.error().ToString();
  EXPECT_EQ(ctrlr().LastAdminCompletion().sc(), spec::sc::kInternalError);
}

TEST_F(FaultTest, DroppedWriteIsAbortedOrCompletedByDisconnect) {
  IoQpairOptions o;
  o.io_queue_size = 4;  // 3 trackers
  o.io_queue_requests = 16;
  auto small = ctrlr().AllocIoQpair(o);
  ASSERT_TRUE(small) << small.error().ToString();
  IoQpair& q = **small;
  ControlOk("drop opc=0x01 count=3");
  DmaBuffer buf = Alloc(4 * 512);
  std::vector<Done> done(4);
  for (uint32_t i = 0; i < 4; ++i)
    ASSERT_TRUE(q.Write(ns(), static_cast<uint8_t*>(buf.data()) + i * 512, i, 1, OnDone, &done[i]));
  // Three writes are dropped in the device, the fourth waits for a tracker.
  int64_t until = MonotonicNanos() + 50'000'000;
  EXPECT_TRUE(PollUntil(q, [&] { return MonotonicNanos() > until; }));
  EXPECT_EQ(q.outstanding(), 4u);
  EXPECT_GT(q.statistics().queued, 0u);
  for (const Done& d : done) EXPECT_FALSE(d.done());

  // The waiting one is aborted by the driver itself: 0/07 at the next poll.
  ASSERT_TRUE(q.Abort(&done[3]));
  ASSERT_TRUE(PollUntil(q, [&] { return done[3].done(); }));
  EXPECT_EQ(done[3].cpl.sc(), spec::sc::kAbortRequested) << StatusOf(done[3].cpl);
  // One on the device: an Abort command goes to the controller, which
  // (nvmux-emu completes every command when it fetches it) reports it not aborted.
  uint64_t admin_done = ctrlr().admin_statistics().completed;
  ASSERT_TRUE(q.Abort(&done[0]));
  ASSERT_TRUE(PollAdminUntil(ctrlr(), [&] { return ctrlr().admin_statistics().completed > admin_done; }));
  EXPECT_FALSE(done[0].done());
  Done nobody;
  Status st = q.Abort(&nobody);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ENOENT);

  // Disconnect gives up the dropped ones (0/08); Reconnect brings the queue pair back.
  q.Disconnect();
  for (uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(done[i].calls, 1) << i;
    EXPECT_EQ(done[i].cpl.sc(), kAbortedSqDeletion) << StatusOf(done[i].cpl);
  }
  EXPECT_EQ(q.outstanding(), 0u);
  EXPECT_FALSE(q.connected());
  Done refused;
  st = q.Write(ns(), buf.data(), 0, 1, OnDone, &refused);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ENXIO);
  st = q.Reconnect();
  ASSERT_TRUE(st) << st.error().ToString();
  FillPattern(buf.data(), 4 * 512, 2);
  spec::Cqe c = Run(q, [&](CompletionFn fn, void* arg) { return q.Write(ns(), buf.data(), 0, 4, fn, arg); });
  EXPECT_FALSE(IsError(c)) << StatusOf(c);
  ExpectPattern(ns(), 0, 4, 2);
}

// ---- the device going away mid-I/O ----

enum class Loss { kRemoveCommand, kSigusr1, kSigkill, kCfs };

std::string LossName(const ::testing::TestParamInfo<Loss>& info) {
  switch (info.param) {
    case Loss::kRemoveCommand: return "RemoveOnControlSocket";
    case Loss::kSigusr1: return "Sigusr1";
    case Loss::kSigkill: return "EmulatorKilled";
    case Loss::kCfs: return "ControllerFatalStatus";
  }
  return "?";
}

class DeviceLossTest : public FaultTest, public ::testing::WithParamInterface<Loss> {
 protected:
  void Lose() {
    switch (GetParam()) {
      case Loss::kRemoveCommand: ControlOk("remove"); break;
      case Loss::kSigusr1: emu_->Signal(SIGUSR1); break;
      case Loss::kSigkill: emu_->KillHard(); break;
      case Loss::kCfs: ControlOk("cfs"); break;
    }
  }
};

TEST_P(DeviceLossTest, OutstandingRequestsCompleteAbortedAndLaterCallsGetEnxio) {
  IoQpairOptions o;
  o.io_queue_size = 4;
  o.io_queue_requests = 16;
  auto small = ctrlr().AllocIoQpair(o);
  ASSERT_TRUE(small) << small.error().ToString();
  WritePattern(ns(), 0, 64, 3);

  // Writes held in the device for 10 s; reads on the small queue pair, some
  // of them waiting for its 3 trackers.
  ControlOk("delay us=10000000 opc=0x01");
  DmaBuffer buf = Alloc(64 * 512);
  auto* p = static_cast<uint8_t*>(buf.data());
  std::vector<Done> writes(16), reads(10);
  for (uint32_t i = 0; i < 16; ++i) ASSERT_TRUE(qpair().Write(ns(), p + i * 512, i, 1, OnDone, &writes[i]));
  ControlOk("delay us=10000000 opc=0x02");
  for (uint32_t i = 0; i < 10; ++i)
    ASSERT_TRUE((*small)->Read(ns(), p + (16 + i) * 512, i, 1, OnDone, &reads[i]));
  EXPECT_TRUE(PollUntil(qpair(), [] { return true; }));
  EXPECT_TRUE(PollUntil(**small, [] { return true; }));
  ASSERT_EQ(qpair().outstanding(), 16u);
  ASSERT_EQ((*small)->outstanding(), 10u);
  EXPECT_GT((*small)->statistics().queued, 0u);

  int64_t start = MonotonicNanos();
  Lose();
  // Poll as an application does: the driver notices within its health check.
  Result<uint32_t> polled = 0u;
  while (polled && MonotonicNanos() - start < 5'000'000'000) polled = qpair().ProcessCompletions();
  ASSERT_FALSE(polled) << "ProcessCompletions still succeeds 5 s after the device was lost";
  int64_t noticed_ms = (MonotonicNanos() - start) / 1'000'000;
  EXPECT_EQ(polled.error().code, ENXIO) << polled.error().ToString();
  EXPECT_LT(noticed_ms, 2000) << "took " << noticed_ms << " ms to notice";
  for (uint32_t i = 0; i < 16; ++i) {
    EXPECT_EQ(writes[i].calls, 1) << "write " << i;
    EXPECT_EQ(writes[i].cpl.sct(), 0) << StatusOf(writes[i].cpl);
    EXPECT_EQ(writes[i].cpl.sc(), kAbortedSqDeletion) << StatusOf(writes[i].cpl);
  }
  EXPECT_EQ(qpair().outstanding(), 0u);
  EXPECT_TRUE(qpair().failed());
  EXPECT_TRUE(ctrlr().failed());
  EXPECT_EQ(ctrlr().removed(), GetParam() != Loss::kCfs);

  // The other queue pair learns it at its next poll, queued requests included.
  auto other = (*small)->ProcessCompletions();
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, ENXIO);
  for (uint32_t i = 0; i < 10; ++i) {
    EXPECT_EQ(reads[i].calls, 1) << "read " << i;
    EXPECT_EQ(reads[i].cpl.sc(), kAbortedSqDeletion) << StatusOf(reads[i].cpl);
  }
  EXPECT_EQ((*small)->outstanding(), 0u);

  // Everything after that fails fast with ENXIO; no callback runs again.
  Done late;
  Status st = qpair().Write(ns(), p, 0, 1, OnDone, &late);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ENXIO) << st.error().ToString();
  st = qpair().Flush(ns(), OnDone, &late);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ENXIO);
  EXPECT_FALSE(qpair().ProcessCompletions());
  auto admin = ctrlr().ProcessAdminCompletions();
  ASSERT_FALSE(admin);
  EXPECT_EQ(admin.error().code, ENXIO);
  auto arb = ctrlr().GetFeature(0x01);
  ASSERT_FALSE(arb);
  EXPECT_EQ(arb.error().code, ENXIO) << arb.error().ToString();
  auto q = ctrlr().AllocIoQpair();
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error().code, ENXIO);
  EXPECT_FALSE(late.done());
  for (const Done& d : writes) EXPECT_EQ(d.calls, 1);

  // Tearing down does not wait for the lost device.
  start = MonotonicNanos();
  small->reset();
  qpair_.reset();
  ctrlr_.reset();
  EXPECT_LT(MonotonicNanos() - start, 2'000'000'000);
}

INSTANTIATE_TEST_SUITE_P(Driver, DeviceLossTest,
                         ::testing::Values(Loss::kRemoveCommand, Loss::kSigusr1, Loss::kSigkill, Loss::kCfs), LossName);

TEST_F(FaultTest, ResetRecoversFromControllerFatalStatus) {
  WritePattern(ns(), 0, 8, 4);
  ControlOk("delay us=10000000 opc=0x02");
  DmaBuffer buf = Alloc(4096);
  Done d;
  ASSERT_TRUE(qpair().Read(ns(), buf.data(), 0, 1, OnDone, &d));
  ControlOk("cfs");
  int64_t start = MonotonicNanos();
  Result<uint32_t> polled = 0u;
  while (polled && MonotonicNanos() - start < 5'000'000'000) polled = qpair().ProcessCompletions();
  ASSERT_FALSE(polled);
  EXPECT_EQ(d.calls, 1);
  EXPECT_EQ(d.cpl.sc(), kAbortedSqDeletion) << StatusOf(d.cpl);
  EXPECT_TRUE(ctrlr().failed());
  EXPECT_FALSE(ctrlr().removed());
  ControlOk("clear");
  // A reset (CC.EN 1 -> 0 clears CFS) brings the controller and its queue pairs back.
  Status st = ctrlr().Reset();
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_FALSE(ctrlr().failed());
  EXPECT_FALSE(qpair().failed());
  EXPECT_TRUE(qpair().connected());
  ExpectPattern(ns(), 0, 8, 4);
  WritePattern(ns(), 8, 8, 5);
  ExpectPattern(ns(), 8, 8, 5);
}

TEST_F(FaultTest, ConnectingToARemovedOrDeadDeviceFailsAtOnce) {
  ControlOk("remove");
  int64_t start = MonotonicNanos();
  auto c = Controller::Connect(env(), emu_->trid());
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ECONNREFUSED) << c.error().ToString();
  emu_->KillHard();
  c = Controller::Connect(env(), emu_->trid());
  ASSERT_FALSE(c);
  EXPECT_TRUE(c.error().code == ECONNREFUSED || c.error().code == ENOENT) << c.error().ToString();
  EXPECT_LT(MonotonicNanos() - start, 2'000'000'000);
}

}  // namespace
}  // namespace nvmux::test
