// AdminWakeups against real processes: a forked waiter records its wakeup
// eventfd in its mailbox of a SharedController in shared memory; the test
// process, as the router, takes it with pidfd_getfd and signals it (a
// parent may, under any Yama ptrace scope).
#include "libclient/shared/admin_wakeup.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <string>

#include "shm/test_support.h"

namespace nvmux {
namespace {

using shm::testing::ForkChild;
using shm::testing::Pipe;
using shm::testing::SharedMapping;
using shm::testing::TempLockFile;

constexpr int kWakeupFd = 110;

struct Shared {
  shm::RobustMutexState table_lock;
  shm::ProcessTableState table;
  SharedController controller;
  WakeupTarget target;  // the waiter's record, as a router would see it
};

struct View {
  shm::GroupLockFile file;
  shm::RobustLock table_lock;
  shm::ProcessTable table;
  View(Shared& s, const std::string& path)
      : file(std::move(*shm::GroupLockFile::Open(path, true))),
        table_lock(s.table_lock, nullptr),
        table(s.table, table_lock, file) {}
};

class AdminWakeupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(shm::InitRobustMutex(shared_->table_lock));
    shm::ProcessTable::InitState(shared_->table, 8);
  }
  void TearDown() override {
    for (pid_t pid : children_) {
      ::kill(pid, SIGKILL);
      shm::testing::WaitExit(pid);
    }
  }
  // A waiter: registers, opens its mailbox, records an eventfd at
  // kWakeupFd as its wakeup. With `reuse` it then withdraws the record,
  // closes the eventfd and opens another one at the same number (what a
  // leaving waiter may do between a router's read of the record and its
  // take). Then blocks reading the eventfd; each wakeup it sees is one
  // byte on `woken`.
  void SpawnWaiter(bool reuse) {
    Pipe ready;
    pid_t pid = ForkChild([&] {
      View v(*shared_, file_.path());
      if (!v.table.Register(shm::ProcessRole::kSecondary, "waiter", shm::CoreSet::CurrentAffinity())) return 1;
      const uint32_t slot = *v.table.self_slot(), generation = v.table.self_generation();
      int efd = ::eventfd(0, 0);
      if (efd < 0 || ::dup2(efd, kWakeupFd) != kWakeupFd) return 1;
      ::close(efd);
      shared_->controller.mailboxes[slot].generation = generation;
      RecordAdminWakeup(shared_->controller, slot, generation, kWakeupFd);
      shared_->target = WakeupTarget{slot, generation, kWakeupFd};
      if (reuse) {
        ForgetAdminWakeup(shared_->controller, slot, generation, kWakeupFd);
        ::close(kWakeupFd);
        efd = ::eventfd(0, 0);
        if (efd < 0 || ::dup2(efd, kWakeupFd) != kWakeupFd) return 1;
      }
      ready.Signal();
      for (;;) {
        uint64_t n = 0;
        if (::read(kWakeupFd, &n, sizeof n) == static_cast<ssize_t>(sizeof n)) woken_.Signal();
      }
    });
    ASSERT_TRUE(ready.Wait());
    children_.push_back(pid);
  }
  // Whether the waiter reported a wakeup within 10 s (a bound for a hung
  // test, not a timing check).
  bool Woken() {
    pollfd p{woken_.fds[0], POLLIN, 0};
    return ::poll(&p, 1, 10'000) == 1 && woken_.Wait();
  }

  SharedMapping<Shared> shared_;
  TempLockFile file_;
  Pipe woken_;
  std::vector<pid_t> children_;
};

TEST_F(AdminWakeupTest, RecordOnlyInTheOwnersMailboxAndForgetOnlyItsOwnFd) {
  SharedController& c = shared_->controller;
  c.mailboxes[3].generation = 7;
  RecordAdminWakeup(c, 3, 6, 42);  // not the mailbox's generation
  EXPECT_EQ(c.mailboxes[3].wakeup_fd, 0u);
  RecordAdminWakeup(c, 3, 7, 42);
  EXPECT_EQ(c.mailboxes[3].wakeup_fd, 43u);
  ForgetAdminWakeup(c, 3, 7, 41);  // another number: someone else's record
  EXPECT_EQ(c.mailboxes[3].wakeup_fd, 43u);
  ForgetAdminWakeup(c, 3, 7, 42);
  EXPECT_EQ(c.mailboxes[3].wakeup_fd, 0u);
}

// Settled wakeup numbers only rise (across the wrap of 32 bits), and only
// in the mailbox of the generation they were owed to.
TEST_F(AdminWakeupTest, SettledNumbersOnlyRiseAndOnlyForTheirGeneration) {
  SharedController& c = shared_->controller;
  c.mailboxes[2].generation = 5;
  SettleAdminWakeup(c, 2, 5, 3);
  EXPECT_EQ(SettledAdminWakeup(c, 2), 3u);
  SettleAdminWakeup(c, 2, 5, 2);  // a slower router, an earlier number
  EXPECT_EQ(SettledAdminWakeup(c, 2), 3u);
  SettleAdminWakeup(c, 2, 4, 9);  // the slot's previous owner
  EXPECT_EQ(SettledAdminWakeup(c, 2), 3u);
  c.mailboxes[2].wakeups_settled = 0xFFFFFFFEu;
  SettleAdminWakeup(c, 2, 5, 1);  // after the wrap (0 is never a number)
  EXPECT_EQ(SettledAdminWakeup(c, 2), 1u);
  SettleAdminWakeup(c, 2, 5, 0xFFFFFFFFu);  // before it
  EXPECT_EQ(SettledAdminWakeup(c, 2), 1u);
  SettleAdminWakeup(c, shm::kMaxProcesses, 5, 7);  // no such slot: ignored
}

TEST_F(AdminWakeupTest, TakesTheWaitersEventfdOnceAndSignalsIt) {
  SpawnWaiter(false);
  View self(*shared_, file_.path());
  AdminWakeups router(shared_->controller, self.table);
  router.Wake({shared_->target});
  EXPECT_TRUE(Woken());
  router.Wake({shared_->target});
  EXPECT_TRUE(Woken());
  EXPECT_EQ(router.signalled(), 2u);
  EXPECT_EQ(router.held(), 1u);  // one duplicate, kept
  router.Prune();
  EXPECT_EQ(router.held(), 1u);  // the record is unchanged
  // The reaper clears a dead waiter's mailbox (SharedAdminQueue::ForgetSlot):
  // the duplicate goes at the next prune.
  shared_->controller.mailboxes[shared_->target.slot] = Mailbox{};
  router.Prune();
  EXPECT_EQ(router.held(), 0u);
}

// The record was withdrawn and the number reused for another eventfd
// before the router took it: the router must not signal that file.
TEST_F(AdminWakeupTest, RefusesANumberWithdrawnAndReused) {
  SpawnWaiter(true);
  View self(*shared_, file_.path());
  AdminWakeups router(shared_->controller, self.table);
  router.Wake({shared_->target});
  EXPECT_EQ(router.signalled(), 0u);
  EXPECT_EQ(router.held(), 0u);
}

// A target that is not (or no longer) a live process is skipped quietly.
TEST_F(AdminWakeupTest, SkipsAWaiterThatIsGone) {
  SpawnWaiter(false);
  const WakeupTarget t = shared_->target;
  ::kill(children_[0], SIGKILL);
  shm::testing::WaitExit(children_[0]);
  children_.clear();
  View self(*shared_, file_.path());
  AdminWakeups router(shared_->controller, self.table);
  router.Wake({t});
  EXPECT_EQ(router.signalled(), 0u);
  EXPECT_EQ(router.held(), 0u);
}

}  // namespace
}  // namespace nvmux
