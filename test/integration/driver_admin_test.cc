// The driver's admin API against a real nvmux-emu: features, log pages,
// Identify, namespace management and attachment, Format, controller reset
// (queue pairs keep working; outstanding I/O completes aborted),
// asynchronous events, and admin command timeouts.
#include <cstring>
#include <vector>

#include "nvmux/spec/features.h"
#include "nvmux/spec/log_page.h"
#include "shm/base/clock.h"
#include "test/integration/driver_test_support.h"

namespace nvmux::test {
namespace {

namespace fid = spec::fid;
namespace lid = spec::lid;

class AdminTest : public DriverTest {
 protected:
  std::vector<std::string> EmuArgs() const override {
    return {"--io-queues", "8", "--ns", "size=256M", "--ns", "size=64M,lbads=4096"};
  }
  void ExpectEio(const Status& st, uint8_t sct, uint8_t sc) {
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, EIO) << st.error().ToString();
    EXPECT_EQ(ctrlr().LastAdminCompletion().sct(), sct) << st.error().message;
    EXPECT_EQ(ctrlr().LastAdminCompletion().sc(), sc) << st.error().message;
  }
  uint64_t Le64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
  }
  // A detached namespace of `blocks` 4096-byte blocks; returns its id.
  uint32_t CreateNamespace(uint64_t blocks) {
    spec::IdentifyNamespace data{};
    data.nsze = blocks;
    data.ncap = blocks;
    data.flbas = 4;  // LBA format 4: 4096-byte blocks, no metadata
    auto nsid = ctrlr().CreateNamespace(data);
    EXPECT_TRUE(nsid) << nsid.error().ToString();
    return nsid ? *nsid : 0;
  }
  std::vector<uint16_t> Self() { return {ctrlr().data().cntlid}; }
};

TEST_F(AdminTest, NumberOfQueuesArbitrationAndTemperatureFeatures) {
  auto queues = ctrlr().GetFeature(fid::kNumberOfQueues);
  ASSERT_TRUE(queues) << queues.error().ToString();
  EXPECT_EQ((*queues & 0xFFFF) + 1, 8u);  // NSQA, 0's based
  EXPECT_EQ((*queues >> 16) + 1, 8u);     // NCQA
  EXPECT_EQ(ctrlr().io_queues_granted(), 8);
  // Number of Queues cannot change once I/O queues exist.
  ExpectEio(ctrlr().SetFeature(fid::kNumberOfQueues, 0x00030003).error(), 0, spec::sc::kCommandSequenceError);

  ASSERT_TRUE(ctrlr().supports_feature(fid::kArbitration));
  auto set = ctrlr().SetFeature(fid::kArbitration, 0x03);  // burst 2^3
  ASSERT_TRUE(set) << set.error().ToString();
  auto arb = ctrlr().GetFeature(fid::kArbitration);
  ASSERT_TRUE(arb) << arb.error().ToString();
  EXPECT_EQ(*arb & 0x7, 3u);

  ASSERT_TRUE(ctrlr().SetFeature(fid::kTemperatureThreshold, 350));
  auto temp = ctrlr().GetFeature(fid::kTemperatureThreshold);
  ASSERT_TRUE(temp) << temp.error().ToString();
  EXPECT_EQ(*temp & 0xFFFF, 350u);

  auto unknown = ctrlr().GetFeature(0x7F);
  ASSERT_FALSE(unknown);
  ExpectEio(unknown.error(), 0, spec::sc::kInvalidField);
  // Every command submitted through the API completed (AERs are the driver's own).
  EXPECT_EQ(ctrlr().admin_statistics().submitted, ctrlr().admin_statistics().completed);
}

TEST_F(AdminTest, SmartErrorAndFirmwareSlotLogPages) {
  for (uint32_t i = 0; i < 3; ++i) WritePattern(ns(), i * 8, 8, i);
  // A command the device refuses lands in the error log.
  spec::Sqe bad;
  bad.opc = 0x7E;
  bad.nsid = 1;
  spec::Cqe c = Run([&](CompletionFn fn, void* arg) { return qpair().RawCommand(bad, nullptr, 0, fn, arg); });
  ASSERT_EQ(c.sc(), spec::sc::kInvalidOpcode);

  DmaBuffer page = Alloc(4096);
  ASSERT_TRUE(ctrlr().supports_log_page(lid::kSmartHealth));
  Status st = ctrlr().GetLogPage(lid::kSmartHealth, 0xFFFFFFFF, page.data(), sizeof(spec::SmartHealthLog));
  ASSERT_TRUE(st) << st.error().ToString();
  const auto* smart = static_cast<const spec::SmartHealthLog*>(page.data());
  EXPECT_EQ(smart->composite_temperature[0] | (smart->composite_temperature[1] << 8), 314);
  EXPECT_EQ(smart->avail_spare, 100);
  EXPECT_GE(Le64(smart->host_write_commands), 3u);
  EXPECT_GE(Le64(smart->num_err_log_entries), 1u);

  std::memset(page.data(), 0, 4096);
  st = ctrlr().GetLogPage(lid::kErrorInformation, 0, page.data(), 4096);
  ASSERT_TRUE(st) << st.error().ToString();
  const auto* err = static_cast<const spec::ErrorInformationEntry*>(page.data());
  EXPECT_GE(err[0].error_count, 1u);
  EXPECT_EQ(err[0].sqid, qpair().id());
  EXPECT_EQ(err[0].cid, c.cid);
  EXPECT_EQ((err[0].status >> 1) & 0xFF, spec::sc::kInvalidOpcode);

  std::memset(page.data(), 0, 4096);
  st = ctrlr().GetLogPage(lid::kFirmwareSlot, 0, page.data(), sizeof(spec::FirmwareSlotLog));
  ASSERT_TRUE(st) << st.error().ToString();
  const auto* fw = static_cast<const spec::FirmwareSlotLog*>(page.data());
  EXPECT_EQ(fw->afi & 0x7, 1);
  EXPECT_EQ(std::memcmp(fw->frs[0], "0.1.0", 5), 0);

  ExpectEio(ctrlr().GetLogPage(0x70, 0, page.data(), 512), spec::sct::kCommandSpecific, spec::sc::kInvalidLogPage);
  std::vector<uint8_t> heap(512);
  st = ctrlr().GetLogPage(lid::kSmartHealth, 0, heap.data(), 512);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EINVAL);
  st = ctrlr().GetLogPage(lid::kSmartHealth, 0, page.data(), 0);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EINVAL);
}

TEST_F(AdminTest, IdentifyControllerNamespaceListsAndDescriptors) {
  DmaBuffer page = Alloc(4096);
  ASSERT_TRUE(ctrlr().Identify(spec::cns::kController, 0, page.data()));
  const auto* id = static_cast<const spec::IdentifyController*>(page.data());
  EXPECT_EQ(id->vid, ctrlr().data().vid);
  EXPECT_EQ(std::memcmp(id->sn, ctrlr().data().sn, sizeof(id->sn)), 0);
  EXPECT_EQ(std::memcmp(id->sn, "NVMUXEMU0001", 12), 0);
  EXPECT_EQ(id->oncs, ctrlr().data().oncs);
  EXPECT_NE(id->sgls & 0x3, 0u);

  ASSERT_TRUE(ctrlr().Identify(spec::cns::kNamespace, 2, page.data()));
  const auto* nsd = static_cast<const spec::IdentifyNamespace*>(page.data());
  EXPECT_EQ(nsd->nsze, ns(2).num_sectors());
  EXPECT_EQ(nsd->nsze, (64u << 20) / 4096);
  EXPECT_EQ(nsd->lbaf[nsd->flbas & 0xF].lbads, 12);

  ASSERT_TRUE(ctrlr().Identify(spec::cns::kActiveNamespaceList, 0, page.data()));
  const auto* list = static_cast<const uint32_t*>(page.data());
  EXPECT_EQ(list[0], 1u);
  EXPECT_EQ(list[1], 2u);
  EXPECT_EQ(list[2], 0u);
  ASSERT_EQ(ctrlr().active_namespaces().size(), 2u);

  // Namespace Identification Descriptors: the NGUID the driver reports.
  std::memset(page.data(), 0, 4096);
  ASSERT_TRUE(ctrlr().Identify(spec::cns::kNamespaceIdDescriptors, 1, page.data()));
  const auto* d = static_cast<const uint8_t*>(page.data());
  bool found_nguid = false;
  for (size_t at = 0; at + 4 < 4096 && d[at] != 0; at += 4u + d[at + 1]) {
    if (d[at] == 2 && d[at + 1] == 16)
      found_nguid = std::memcmp(d + at + 4, ns(1).nguid().data(), 16) == 0;
  }
  EXPECT_TRUE(found_nguid);

  // An inactive (but valid) NSID reads as a zeroed page; a heap buffer is refused.
  std::memset(page.data(), 0xAB, 4096);
  ASSERT_TRUE(ctrlr().Identify(spec::cns::kNamespace, 5, page.data()));
  EXPECT_TRUE(AllZero(page.data(), 4096));
  std::vector<uint8_t> heap(4096);
  Status st = ctrlr().Identify(spec::cns::kController, 0, heap.data());
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EINVAL);
}

TEST_F(AdminTest, CreateAttachUseDetachDeleteNamespace) {
  uint32_t nsid = CreateNamespace(4096);  // 16 MiB
  ASSERT_EQ(nsid, 3u);
  EXPECT_EQ(ctrlr().GetNamespace(nsid), nullptr) << "created namespaces start detached";
  DmaBuffer page = Alloc(4096);
  ASSERT_TRUE(ctrlr().Identify(spec::cns::kAllocatedNamespaceList, 0, page.data()));
  EXPECT_EQ(static_cast<const uint32_t*>(page.data())[2], nsid);

  Status st = ctrlr().AttachNamespace(nsid, Self());
  ASSERT_TRUE(st) << st.error().ToString();
  Namespace* n = ctrlr().GetNamespace(nsid);
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->sector_size(), 4096u);
  EXPECT_EQ(n->num_sectors(), 4096u);
  ExpectZeroes(*n, 0, 16);
  WritePattern(*ctrlr().GetNamespace(nsid), 4000, 96, 50);
  ExpectPattern(*ctrlr().GetNamespace(nsid), 4000, 96, 50);
  ExpectEio(ctrlr().AttachNamespace(nsid, Self()), spec::sct::kCommandSpecific, spec::sc::kNamespaceAlreadyAttached);

  st = ctrlr().DetachNamespace(nsid, Self());
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_EQ(ctrlr().GetNamespace(nsid), nullptr);
  EXPECT_EQ(ctrlr().active_namespaces().size(), 2u);
  st = ctrlr().DeleteNamespace(nsid);
  ASSERT_TRUE(st) << st.error().ToString();
  std::memset(page.data(), 0, 4096);
  ASSERT_TRUE(ctrlr().Identify(spec::cns::kAllocatedNamespaceList, 0, page.data()));
  EXPECT_EQ(static_cast<const uint32_t*>(page.data())[2], 0u);
  ExpectEio(ctrlr().DeleteNamespace(nsid), 0, spec::sc::kInvalidNamespaceOrFormat);
  // The namespaces that were there keep working.
  WritePattern(ns(1), 0, 8, 51);
  ExpectPattern(ns(1), 0, 8, 51);
}

TEST_F(AdminTest, FormatChangesTheBlockSizeAndErases) {
  WritePattern(ns(1), 0, 64, 52);
  Status st = ctrlr().Format(1, 4);  // 4096-byte blocks
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_EQ(ns(1).sector_size(), 4096u);
  EXPECT_EQ(ns(1).num_sectors(), (256u << 20) / 4096);
  ExpectZeroes(ns(1), 0, 8);
  WritePattern(ns(1), 10, 40, 53);
  ExpectPattern(ns(1), 10, 40, 53);

  st = ctrlr().Format(1, 1, /*md_extended=*/true);  // 512 + 8 interleaved
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_TRUE(ns(1).extended_lba());
  EXPECT_EQ(ns(1).extended_sector_size(), 520u);
  WritePattern(ns(1), 0, 33, 54);
  ExpectPattern(ns(1), 0, 33, 54);

  ASSERT_TRUE(ctrlr().Format(1, 0));
  EXPECT_EQ(ns(1).sector_size(), 512u);
  EXPECT_FALSE(ns(1).extended_lba());
  ExpectZeroes(ns(1), 0, 33);
  // Namespace 2 is untouched.
  EXPECT_EQ(ns(2).sector_size(), 4096u);

  ExpectEio(ctrlr().Format(1, 8), spec::sct::kCommandSpecific, spec::sc::kInvalidFormat);
  ExpectEio(ctrlr().Format(1, 0, false, 1), spec::sct::kCommandSpecific, spec::sc::kInvalidFormat);
  st = ctrlr().Format(1, 16);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, EINVAL);
}

TEST_F(AdminTest, ResetAbortsOutstandingIoAndQueuePairsKeepWorking) {
  auto second = ctrlr().AllocIoQpair();
  ASSERT_TRUE(second) << second.error().ToString();
  WritePattern(ns(1), 0, 8, 60);
  // Reads held in the device for 10 s: outstanding when the reset comes.
  auto reply = emu_->Control("delay us=10000000 opc=0x02");
  ASSERT_TRUE(reply && reply->rfind("ok", 0) == 0) << (reply ? *reply : reply.error().message);
  DmaBuffer buf = Alloc(8 * 4096);
  std::vector<Done> done(8);
  for (uint32_t i = 0; i < 8; ++i)
    ASSERT_TRUE(qpair().Read(ns(1), static_cast<uint8_t*>(buf.data()) + i * 4096, i, 1, OnDone, &done[i]));
  EXPECT_TRUE(PollUntil(qpair(), [] { return true; }));
  EXPECT_EQ(qpair().outstanding(), 8u);

  int64_t start = MonotonicNanos();
  Status st = ctrlr().Reset();
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_LT(MonotonicNanos() - start, 5'000'000'000) << "the reset waited for the held reads";
  for (uint32_t i = 0; i < 8; ++i) {
    EXPECT_EQ(done[i].calls, 1) << i;
    EXPECT_EQ(done[i].cpl.sct(), 0) << StatusOf(done[i].cpl);
    EXPECT_EQ(done[i].cpl.sc(), kAbortedSqDeletion) << StatusOf(done[i].cpl);
  }
  EXPECT_EQ(qpair().outstanding(), 0u);
  reply = emu_->Control("clear");
  ASSERT_TRUE(reply && reply->rfind("ok", 0) == 0);

  EXPECT_TRUE(qpair().connected());
  EXPECT_FALSE(ctrlr().failed());
  ExpectPattern(ns(1), 0, 8, 60);
  WritePattern(ns(1), 100, 300, 61);
  ExpectPattern(ns(1), 100, 300, 61);
  spec::Cqe c = Run(**second, [&](CompletionFn fn, void* arg) {
    return (*second)->Read(ns(1), buf.data(), 100, 8, fn, arg);
  });
  EXPECT_FALSE(IsError(c)) << StatusOf(c);
  EXPECT_EQ(FirstPatternMismatch(buf.data(), 8 * 512, 61), -1);
  auto arb = ctrlr().GetFeature(fid::kArbitration);
  EXPECT_TRUE(arb) << arb.error().ToString();
  EXPECT_EQ(ctrlr().io_queues_granted(), 8);
}

// DISABLED: Controller::RefreshNamespaces (and Reset, through RunInit)
// replaces every Namespace object, so a Namespace& an application holds
// dangles after any refresh — Format, attach/detach, a namespace-changed AEN
// handled inside any admin call — although namespace.h promises it stays
// valid unless that namespace disappears. Enable once refreshes update the
// objects in place. (Pointers are only compared here, never used.)
TEST_F(AdminTest, NamespaceObjectsSurviveRefreshAndReset) {
  const Namespace* before = ctrlr().GetNamespace(1);
  ASSERT_TRUE(ctrlr().RefreshNamespaces());
  EXPECT_EQ(ctrlr().GetNamespace(1), before);
  ASSERT_TRUE(ctrlr().Reset());
  EXPECT_EQ(ctrlr().GetNamespace(1), before);
}

// ---- asynchronous events ----

struct AerLog {
  std::vector<spec::Cqe> events;
  static void On(void* arg, const spec::Cqe& cpl) { static_cast<AerLog*>(arg)->events.push_back(cpl); }
};

TEST_F(AdminTest, NamespaceAttachAndDetachAreReportedAsAsyncEvents) {
  AerLog aer;
  ctrlr().SetAerCallback(AerLog::On, &aer);
  uint32_t nsid = CreateNamespace(1024);
  ASSERT_NE(nsid, 0u);
  EXPECT_TRUE(aer.events.empty()) << "a detached new namespace changes nothing the host sees";
  Status st = ctrlr().AttachNamespace(nsid, Self());
  ASSERT_TRUE(st) << st.error().ToString();
  ASSERT_TRUE(PollAdminUntil(ctrlr(), [&] { return !aer.events.empty(); }, 5s)) << "no AEN for the attach";
  uint32_t dw0 = aer.events[0].cdw0;
  EXPECT_EQ(dw0 & 0x7, spec::aer::kTypeNotice);
  EXPECT_EQ((dw0 >> 8) & 0xFF, spec::aer::kInfoNoticeNsAttrChanged);
  EXPECT_EQ((dw0 >> 16) & 0xFF, lid::kChangedNamespaceList);
  EXPECT_NE(ctrlr().GetNamespace(nsid), nullptr) << "the driver refreshes namespaces before reporting";
  EXPECT_GE(ctrlr().admin_statistics().aens, 1u);

  // A second notice needs the first one's log page read (RAE=0): the driver
  // must do that itself, or the device keeps the event type masked.
  st = ctrlr().DetachNamespace(nsid, Self());
  ASSERT_TRUE(st) << st.error().ToString();
  ASSERT_TRUE(PollAdminUntil(ctrlr(), [&] { return aer.events.size() >= 2; }, 5s)) << "no AEN for the detach";
  EXPECT_EQ(aer.events[1].cdw0 & 0x7, spec::aer::kTypeNotice);
  EXPECT_EQ(ctrlr().GetNamespace(nsid), nullptr);
  ASSERT_TRUE(ctrlr().DeleteNamespace(nsid));
  ctrlr().SetAerCallback(nullptr, nullptr);
}

// ---- admin timeouts ----

TEST_F(AdminTest, DroppedAdminCommandIsReportedByTheTimeoutCallback) {
  auto reply = emu_->Control("drop opc=0x0a queue=admin count=1");
  ASSERT_TRUE(reply && reply->rfind("ok", 0) == 0) << (reply ? *reply : reply.error().message);
  std::vector<uint16_t> timed_out;
  ctrlr().SetAdminTimeout(50'000, TimeoutAction::kNone, [&](uint16_t cid) { timed_out.push_back(cid); });
  spec::Sqe get;
  get.opc = spec::admin::kGetFeatures;
  get.cdw10 = fid::kArbitration;
  Done d;
  ASSERT_TRUE(ctrlr().SubmitAdmin(get, nullptr, 0, OnDone, &d));
  ASSERT_TRUE(PollAdminUntil(ctrlr(), [&] { return !timed_out.empty(); }, 5s));
  EXPECT_GE(ctrlr().admin_statistics().timeouts, 1u);
  EXPECT_FALSE(d.done()) << "the dropped command never completes by itself";
  ctrlr().SetAdminTimeout(0, TimeoutAction::kNone);
  auto arb = ctrlr().GetFeature(fid::kArbitration);  // the drop was used up
  EXPECT_TRUE(arb) << arb.error().ToString();
  // Detaching the controller completes the command that never came back.
  qpair_.reset();
  ctrlr_.reset();
  EXPECT_EQ(d.calls, 1);
  EXPECT_EQ(d.cpl.sc(), kAbortedSqDeletion) << StatusOf(d.cpl);
}

// DISABLED: the driver counts its own armed AERs as admin commands that time
// out (AdminChannel::SubmittedBefore returns their ids), so every AER
// "times out" after `timeout_us` and, with TimeoutAction::kReset, the
// controller is reset over and over. Enable once AERs are exempt.
TEST_F(AdminTest, AersAreNotSubjectToTheAdminTimeout) {
  int calls = 0;
  ctrlr().SetAdminTimeout(20'000, TimeoutAction::kNone, [&](uint16_t) { calls++; });
  int64_t until = MonotonicNanos() + 100'000'000;
  EXPECT_TRUE(PollAdminUntil(ctrlr(), [&] { return MonotonicNanos() > until; }, 5s));
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(ctrlr().admin_statistics().timeouts, 0u);
}

TEST_F(AdminTest, AdminTimeoutWithResetAbortsTheDroppedCommand) {
  auto reply = emu_->Control("drop opc=0x0a queue=admin count=1");
  ASSERT_TRUE(reply && reply->rfind("ok", 0) == 0) << (reply ? *reply : reply.error().message);
  int calls = 0;
  ctrlr().SetAdminTimeout(50'000, TimeoutAction::kReset, [&](uint16_t) { calls++; });
  spec::Sqe get;
  get.opc = spec::admin::kGetFeatures;
  get.cdw10 = fid::kArbitration;
  Done d;
  ASSERT_TRUE(ctrlr().SubmitAdmin(get, nullptr, 0, OnDone, &d));
  ASSERT_TRUE(PollAdminUntil(ctrlr(), [&] { return d.done(); }, 5s));
  ctrlr().SetAdminTimeout(0, TimeoutAction::kNone);
  EXPECT_EQ(d.calls, 1);
  EXPECT_EQ(d.cpl.sct(), 0) << StatusOf(d.cpl);
  EXPECT_EQ(d.cpl.sc(), kAbortedSqDeletion) << StatusOf(d.cpl);
  EXPECT_GE(calls, 1);
  EXPECT_FALSE(ctrlr().failed());
  auto arb = ctrlr().GetFeature(fid::kArbitration);
  EXPECT_TRUE(arb) << arb.error().ToString();
  WritePattern(ns(1), 0, 8, 70);
  ExpectPattern(ns(1), 0, 8, 70);
}

class AdminSyncTimeoutTest : public AdminTest {
 protected:
  ControllerOptions ControllerOpts() const override {
    ControllerOptions o;
    o.admin_timeout_ms = 200;
    return o;
  }
};

TEST_F(AdminSyncTimeoutTest, SyncAdminGivesEtimedoutForADroppedCommand) {
  auto reply = emu_->Control("drop opc=0x0a queue=admin count=1");
  ASSERT_TRUE(reply && reply->rfind("ok", 0) == 0) << (reply ? *reply : reply.error().message);
  int64_t start = MonotonicNanos();
  auto arb = ctrlr().GetFeature(fid::kArbitration);
  ASSERT_FALSE(arb);
  EXPECT_EQ(arb.error().code, ETIMEDOUT) << arb.error().ToString();
  EXPECT_GE(MonotonicNanos() - start, 200'000'000);
  EXPECT_LT(MonotonicNanos() - start, 3'000'000'000);
  arb = ctrlr().GetFeature(fid::kArbitration);
  EXPECT_TRUE(arb) << arb.error().ToString();
}

}  // namespace
}  // namespace nvmux::test
