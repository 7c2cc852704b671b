#include "shm/robust_mutex.h"

#include <gtest/gtest.h>

#include <atomic>

#include "shm/test_support.h"

namespace nvmux::shm {
namespace {

using testing::ForkChild;
using testing::Pipe;
using testing::SharedMapping;
using testing::WaitExit;

// A multi-field record protected by the lock. Invariant: a + b == total.
// Writers record intent (the old values) before changing anything, so the
// next holder can roll a half-done update back.
struct Ledger {
  RobustMutexState lock;
  uint64_t a;
  uint64_t b;
  uint64_t total;
  uint32_t intent;  // 1 while an update is in flight
  uint64_t old_a;
  uint64_t old_b;
};

Status RollBack(Ledger& l) {
  if (l.intent == 1) {
    l.a = l.old_a;
    l.b = l.old_b;
    l.intent = 0;
  }
  if (l.a + l.b != l.total) return Fail(EIO, "ledger inconsistent and no intent recorded");
  return Ok();
}

TEST(RobustMutex, LocksAndRejectsRelockFromSameThread) {
  SharedMapping<Ledger> l;
  ASSERT_TRUE(InitRobustMutex(l->lock));
  RobustLock lock(l->lock, nullptr);
  auto g = lock.Lock();
  ASSERT_TRUE(g);
  EXPECT_FALSE(g->repaired());
  auto again = lock.TryLock();
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, EDEADLK);
}

TEST(RobustMutex, UninitialisedIsAnError) {
  SharedMapping<Ledger> l;
  RobustLock lock(l->lock, nullptr);
  auto g = lock.Lock();
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, EINVAL);
}

TEST(RobustMutex, TimesOutWhileALiveProcessHoldsIt) {
  SharedMapping<Ledger> l;
  ASSERT_TRUE(InitRobustMutex(l->lock));
  Pipe locked, release;
  pid_t child = ForkChild([&] {
    RobustLock lock(l->lock, nullptr);
    auto g = lock.Lock();
    locked.Signal();
    release.Wait();
    return g ? 0 : 1;
  });
  ASSERT_TRUE(locked.Wait());
  RobustLock lock(l->lock, nullptr);
  auto g = lock.Lock(std::chrono::milliseconds(50));
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, ETIMEDOUT);
  release.Signal();
  EXPECT_EQ(WaitExit(child), 0);
  EXPECT_TRUE(lock.Lock());
}

TEST(RobustMutex, NextHolderRepairsAHalfDoneUpdateOfAKilledHolder) {
  SharedMapping<Ledger> l;
  ASSERT_TRUE(InitRobustMutex(l->lock));
  l->a = 60;
  l->b = 40;
  l->total = 100;
  Pipe midway;
  pid_t child = ForkChild([&] {
    RobustLock lock(l->lock, nullptr);
    auto g = lock.Lock();
    if (!g) return 1;
    // Move 25 from a to b: intent first, then the fields one by one.
    l->old_a = l->a;
    l->old_b = l->b;
    l->intent = 1;
    l->a -= 25;  // a + b != total from here until b is written
    midway.Signal();
    for (;;) pause();
  });
  ASSERT_TRUE(midway.Wait());
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  WaitExit(child);
  ASSERT_NE(l->a + l->b, l->total) << "the child should have died mid-update";

  int repairs = 0;
  RobustLock lock(l->lock, [&]() -> Status {
    ++repairs;
    return RollBack(*l);
  });
  auto g = lock.Lock();
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_TRUE(g->repaired());
  EXPECT_EQ(repairs, 1);
  EXPECT_EQ(l->a, 60u);
  EXPECT_EQ(l->b, 40u);
  EXPECT_EQ(l->intent, 0u);
  EXPECT_EQ(lock.OwnerDiedCount(), 1u);
}

TEST(RobustMutex, FailedRepairLeavesTheLockUnrecoverable) {
  SharedMapping<Ledger> l;
  ASSERT_TRUE(InitRobustMutex(l->lock));
  pid_t child = ForkChild([&] {
    RobustLock lock(l->lock, nullptr);
    auto g = lock.Lock();
    ::kill(getpid(), SIGKILL);
    return 0;
  });
  WaitExit(child);
  RobustLock lock(l->lock, []() -> Status { return Fail(EIO, "cannot repair"); });
  auto g = lock.Lock();
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, EOWNERDEAD);
  EXPECT_NE(g.error().message.find("cannot repair"), std::string::npos);
  auto again = lock.Lock();
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ENOTRECOVERABLE);
}

}  // namespace
}  // namespace nvmux::shm
