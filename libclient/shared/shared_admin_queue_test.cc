// SharedAdminQueue against a fake device in shared memory: AER re-arming,
// completions that a full mailbox cannot drop, and kill -9 at every step of
// submit and poll (real child processes, exec'd so that NVMUX_DIE_AT is read
// afresh), including a kill at the CQ wrap.
#include "libclient/shared/shared_admin_queue.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <deque>
#include <new>
#include <string>
#include <vector>

namespace nvmux {
namespace {

constexpr uint32_t kEntries = 16;
// Both the test and its exec'd children map the region here: the admin
// rings are named by address (IOVA = address), as in a real group.
constexpr uintptr_t kFixedAddress = 0x7a0000000000;

struct Region {
  SharedController ctrl;
  alignas(4096) spec::Sqe sq[kEntries];
  alignas(4096) spec::Cqe cq[kEntries];
  uint32_t sq_db;
  uint32_t cq_db;
};

Region* MapRegion(int fd) {
  void* p = ::mmap(reinterpret_cast<void*>(kFixedAddress), sizeof(Region), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
  if (p == MAP_FAILED || p != reinterpret_cast<void*>(kFixedAddress)) return nullptr;
  return static_cast<Region*>(p);
}

Doorbells DoorbellsOf(Region& r) { return Doorbells{&r.sq_db, &r.cq_db}; }

spec::Sqe Command(uint32_t tag) {
  spec::Sqe c;
  c.opc = spec::admin::kIdentify;
  c.cdw10 = tag;
  return c;
}

// The device: fetches commands up to the SQ tail doorbell, completes them
// (cdw0 = cdw10) unless told to hold them, keeps AERs until FireAen.
class FakeDevice {
 public:
  explicit FakeDevice(Region& r) : r_(r) {}
  bool hold_commands = false;
  bool fetch = true;
  void Step() {
    while (fetch && head_ != std::atomic_ref<uint32_t>(r_.sq_db).load(std::memory_order_acquire)) {
      const spec::Sqe cmd = r_.sq[head_];
      head_ = (head_ + 1) % kEntries;
      if (cmd.opc == spec::admin::kAsyncEventRequest) {
        aers.push_back(cmd.cid);
      } else if (hold_commands) {
        held.push_back(cmd);
      } else {
        Post(cmd.cid, cmd.cdw10);
      }
    }
  }
  void Release() {
    for (const spec::Sqe& c : held) Post(c.cid, c.cdw10);
    held.clear();
  }
  void FireAen(uint32_t cdw0) {
    ASSERT_FALSE(aers.empty()) << "no AER outstanding on the device";
    uint16_t cid = aers.front();
    aers.pop_front();
    Post(cid, cdw0);
  }
  void Post(uint16_t cid, uint32_t cdw0, uint16_t status = 0) {
    ASSERT_NE((tail_ + 1) % kEntries, std::atomic_ref<uint32_t>(r_.cq_db).load()) << "fake CQ full";
    spec::Cqe c;
    c.cid = cid;
    c.cdw0 = cdw0;
    c.sqhd = static_cast<uint16_t>(head_);
    c.status = static_cast<uint16_t>(status | phase_);
    r_.cq[tail_] = c;
    if (++tail_ == kEntries) {
      tail_ = 0;
      phase_ ^= 1;
    }
  }
  uint32_t cq_tail() const { return tail_; }

  std::deque<uint16_t> aers;
  std::vector<spec::Sqe> held;

 private:
  Region& r_;
  uint32_t head_ = 0, tail_ = 0;
  uint16_t phase_ = 1;
};

class SharedAdminQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fd_ = ::memfd_create("nvmux-aq-test", 0);  // inherited by the children
    ASSERT_GE(fd_, 0);
    ASSERT_EQ(::ftruncate(fd_, sizeof(Region)), 0);
    r_ = MapRegion(fd_);
    ASSERT_NE(r_, nullptr) << "cannot map the test region at " << std::hex << kFixedAddress;
    new (r_) Region{};
    SharedController& c = r_->ctrl;
    std::snprintf(c.trid, sizeof c.trid, "fake:aq");
    ASSERT_TRUE(shm::InitRobustMutex(c.lock));
    c.admin_entries = kEntries;
    c.admin_sq_iova = reinterpret_cast<uint64_t>(r_->sq);
    c.admin_cq_iova = reinterpret_cast<uint64_t>(r_->cq);
    dev_ = std::make_unique<FakeDevice>(*r_);
    primary_ = OpenQueue(0, 1);
    primary_->SetEventHandler([this](const spec::Cqe& e) { events_.push_back(e.cdw0); });
  }
  void TearDown() override {
    others_.clear();
    primary_.reset();
    if (r_ != nullptr) ::munmap(r_, sizeof(Region));
    if (fd_ >= 0) ::close(fd_);
  }
  std::unique_ptr<SharedAdminQueue> OpenQueue(uint32_t slot, uint32_t generation) {
    auto q = SharedAdminQueue::Open(r_->ctrl, DoorbellsOf(*r_), slot, generation);
    EXPECT_TRUE(q) << (q ? "" : q.error().message);
    return q ? std::move(*q) : nullptr;
  }
  // Submits through `q`, lets the device run, polls `q` until done.
  bool RoundTrip(SharedAdminQueue& q, uint32_t tag) {
    bool done = false;
    uint32_t got = 0;
    if (!q.Submit(Command(tag), [&](const spec::Cqe& c) { done = true, got = c.cdw0; })) return false;
    for (int i = 0; i < 10 && !done; ++i) {
      dev_->Step();
      if (!q.Poll()) return false;
    }
    return done && got == tag;
  }
  uint32_t InFlightCommands() const {
    uint32_t n = 0;
    for (const SharedAdminTracker& t : r_->ctrl.trackers)
      if (t.state == static_cast<uint32_t>(TrackerState::kInFlight) && t.owner_slot != kAerOwner) ++n;
    return n;
  }
  // Runs `role` ("submit" or "poll") in an exec'd child at process slot 1
  // with NVMUX_DIE_AT=`point`; returns whether it died of SIGKILL.
  bool RunChild(const std::string& role, const std::string& point) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::setenv("NVMUX_AQ_CHILD", role.c_str(), 1);
      ::setenv("NVMUX_AQ_FD", std::to_string(fd_).c_str(), 1);
      ::setenv("NVMUX_DIE_AT", point.c_str(), 1);
      ::execl("/proc/self/exe", "shared_admin_queue_child", "--gtest_filter=SharedAdminQueueChild.Run", nullptr);
      ::_exit(127);
    }
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid) return false;
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  }

  int fd_ = -1;
  Region* r_ = nullptr;
  std::unique_ptr<FakeDevice> dev_;
  std::unique_ptr<SharedAdminQueue> primary_;
  std::vector<std::unique_ptr<SharedAdminQueue>> others_;
  std::vector<uint32_t> events_;
};

// The child side of RunChild: a second process of the group.
TEST(SharedAdminQueueChild, Run) {
  const char* role = std::getenv("NVMUX_AQ_CHILD");
  if (role == nullptr) GTEST_SKIP() << "run by SharedAdminQueueTest only";
  Region* r = MapRegion(std::atoi(std::getenv("NVMUX_AQ_FD")));
  if (r == nullptr) ::_exit(3);
  auto q = SharedAdminQueue::Open(r->ctrl, DoorbellsOf(*r), 1, 7);
  if (!q) ::_exit(4);
  if (std::string(role) == "submit") (void)(*q)->Submit(Command(0xC0FFEE), [](const spec::Cqe&) {});
  if (std::string(role) == "poll") (void)(*q)->Poll();
  ::_exit(0);  // not killed: the point was not reached (the test fails)
}

TEST_F(SharedAdminQueueTest, EveryAerCompletionOfOnePollIsReArmed) {
  ASSERT_TRUE(primary_->ArmGroupAers(4));
  dev_->Step();
  ASSERT_EQ(dev_->aers.size(), 4u);
  dev_->FireAen(0x11);
  dev_->FireAen(0x22);
  ASSERT_TRUE(primary_->Poll());  // both completions in one poll
  dev_->Step();
  EXPECT_EQ(dev_->aers.size(), 4u) << "every AER completion must re-arm one";
  EXPECT_EQ(r_->ctrl.aers_outstanding, 4u);
  EXPECT_EQ(events_, (std::vector<uint32_t>{0x11, 0x22}));
}

TEST_F(SharedAdminQueueTest, AReArmThatFindsTheRingFullIsRetriedByALaterPoll) {
  ASSERT_TRUE(primary_->ArmGroupAers(1));
  ASSERT_TRUE(RoundTrip(*primary_, 1));  // the host's SQ head catches up with the device's
  dev_->fetch = false;                   // the device stops fetching: the ring fills
  uint32_t pushed = 0;
  while (primary_->Submit(Command(pushed), [](const spec::Cqe&) {})) ++pushed;
  ASSERT_EQ(pushed, kEntries - 1) << "the ring holds entries - 1 commands";
  dev_->FireAen(0x33);            // reports the same SQ head: the ring stays full
  ASSERT_TRUE(primary_->Poll());  // the re-arm finds the ring full
  EXPECT_EQ(r_->ctrl.aers_outstanding, 0u);
  dev_->fetch = true;
  for (int i = 0; i < 4; ++i) {
    dev_->Step();
    ASSERT_TRUE(primary_->Poll());
  }
  dev_->Step();
  EXPECT_EQ(dev_->aers.size(), 1u) << "the failed re-arm must be retried";
  EXPECT_EQ(events_, (std::vector<uint32_t>{0x33}));
}

TEST_F(SharedAdminQueueTest, AFullMailboxDropsEventsNeverACompletion) {
  others_.push_back(OpenQueue(1, 5));
  SharedAdminQueue& idle = *others_.back();
  ASSERT_TRUE(primary_->ArmGroupAers(2));
  bool done = false;
  uint32_t got = 0;
  dev_->hold_commands = true;
  ASSERT_TRUE(idle.Submit(Command(0x1234), [&](const spec::Cqe& c) { done = true, got = c.cdw0; }));
  dev_->Step();
  const uint32_t kAens = 70;  // more than a mailbox holds; `idle` does not poll
  for (uint32_t i = 0; i < kAens; ++i) {
    dev_->FireAen(i);
    ASSERT_TRUE(primary_->Poll());
    dev_->Step();
  }
  EXPECT_EQ(events_.size(), kAens);
  dev_->Release();  // now the idle process's completion arrives; the primary routes it
  ASSERT_TRUE(primary_->Poll());
  ASSERT_TRUE(idle.Poll());
  EXPECT_TRUE(done) << "the completion of a process whose mailbox is full of events was dropped";
  EXPECT_EQ(got, 0x1234u);
  EXPECT_EQ(r_->ctrl.mailboxes[1].dropped, kAens - kMailboxEvents);
  EXPECT_EQ(r_->ctrl.events_dropped, kAens - kMailboxEvents);
  EXPECT_EQ(InFlightCommands(), 0u);
}

TEST_F(SharedAdminQueueTest, OneProcessCannotOpenTheSameControllerTwice) {
  auto again = SharedAdminQueue::Open(r_->ctrl, DoorbellsOf(*r_), 0, 1);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, EBUSY);
  EXPECT_NE(again.error().message.find("fake:aq"), std::string::npos) << again.error().message;
  EXPECT_TRUE(RoundTrip(*primary_, 9)) << "the refused second open must leave the first working";
}

// A submitter killed at each step: its tracker is released (not pushed) or
// its command completes and the tracker is freed (pushed); the queue works.
TEST_F(SharedAdminQueueTest, SubmitterKilledAtEveryStepLeaksNoTracker) {
  for (const char* point : {"admin.submit.tracker_taken", "admin.submit.sqe_written", "admin.submit.pushed"}) {
    SCOPED_TRACE(point);
    ASSERT_TRUE(RunChild("submit", point)) << "the child did not die at " << point;
    ASSERT_TRUE(primary_->Poll());  // the repair
    for (int i = 0; i < 3; ++i) {
      dev_->Step();
      ASSERT_TRUE(primary_->Poll());
    }
    EXPECT_EQ(r_->ctrl.submit_cid, 0u);
    EXPECT_GT(primary_->ForgetSlot(1), 0u);  // the reaper
    EXPECT_EQ(InFlightCommands(), 0u) << "a tracker of the dead submitter leaked";
    EXPECT_TRUE(RoundTrip(*primary_, 0x77));
  }
}

// A poller killed at each step of routing another process's completion:
// the completion still reaches its owner, exactly once.
TEST_F(SharedAdminQueueTest, PollerKilledAtEveryStepLosesNoCompletion) {
  for (const char* point : {"admin.poll.peeked", "admin.poll.routed", "admin.poll.freed", "admin.poll.consumed"}) {
    SCOPED_TRACE(point);
    int calls = 0;
    uint32_t got = 0;
    ASSERT_TRUE(primary_->Submit(Command(0x55), [&](const spec::Cqe& c) { ++calls, got = c.cdw0; }));
    dev_->Step();
    ASSERT_TRUE(RunChild("poll", point)) << "the child did not die at " << point;
    ASSERT_TRUE(primary_->Poll());
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(got, 0x55u);
    EXPECT_EQ(r_->ctrl.poll_pending, 0u);
    EXPECT_EQ(InFlightCommands(), 0u);
    (void)primary_->ForgetSlot(1);
    EXPECT_TRUE(RoundTrip(*primary_, 0x66));
  }
}

// A poller killed while fanning an event out (after the first mailbox) or
// before re-arming: every process gets the event once, the AERs are topped
// up to the target.
TEST_F(SharedAdminQueueTest, PollerKilledFanningOutOrReArmingLosesNoEventNorAer) {
  others_.push_back(OpenQueue(2, 9));
  std::vector<uint32_t> other_events;
  others_.back()->SetEventHandler([&](const spec::Cqe& e) { other_events.push_back(e.cdw0); });
  ASSERT_TRUE(primary_->ArmGroupAers(3));
  dev_->Step();
  uint32_t aen = 0x100;
  for (const char* point : {"admin.poll.deliver", "admin.rearm.submit"}) {
    SCOPED_TRACE(point);
    events_.clear();
    other_events.clear();
    dev_->FireAen(aen);
    ASSERT_TRUE(RunChild("poll", point)) << "the child did not die at " << point;
    ASSERT_TRUE(primary_->Poll());
    ASSERT_TRUE(others_.back()->Poll());
    dev_->Step();
    EXPECT_EQ(events_, (std::vector<uint32_t>{aen}));
    EXPECT_EQ(other_events, (std::vector<uint32_t>{aen}));
    EXPECT_EQ(dev_->aers.size(), 3u) << "the AER of the dead poller was not re-armed";
    (void)primary_->ForgetSlot(1);
    ++aen;
  }
}

// The completion at the last CQ slot is consumed by a process killed just
// before or just after the single store that moves head and phase: the
// queue goes on across the wrap (with two stores, a kill between them left
// the phase flipped and the head at the last slot: the queue stalled).
TEST_F(SharedAdminQueueTest, PollerKilledAtTheCqWrapDoesNotStallTheQueue) {
  uint32_t tag = 1;
  for (const char* point : {"admin.poll.freed", "admin.poll.consumed"}) {
    SCOPED_TRACE(point);
    while (dev_->cq_tail() != kEntries - 1) ASSERT_TRUE(RoundTrip(*primary_, tag++));
    int calls = 0;
    ASSERT_TRUE(primary_->Submit(Command(0xAB), [&](const spec::Cqe&) { ++calls; }));
    dev_->Step();  // posted at the last slot
    ASSERT_TRUE(RunChild("poll", point)) << "the child did not die at " << point;
    ASSERT_TRUE(primary_->Poll());
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(r_->ctrl.admin_ring.cq_head(), 0u);
    (void)primary_->ForgetSlot(1);
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(RoundTrip(*primary_, tag++)) << "stalled after the wrap";
  }
}

}  // namespace
}  // namespace nvmux
