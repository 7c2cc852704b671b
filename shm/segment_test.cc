#include "shm/segment.h"

#include <gtest/gtest.h>

#include "shm/test_support.h"

namespace nvmux::shm {
namespace {

struct Block {
  alignas(4096) char bytes[1 << 20];
};

struct Counter {
  uint64_t value;
};

TEST(Segment, CreatePublishAttachAndFindNamedObjects) {
  testing::SharedMapping<Block> block;
  auto seg = Segment::Create(block->bytes, sizeof(block->bytes), 7, kAbiVersion);
  ASSERT_TRUE(seg) << seg.error().message;
  RobustLock lock((*seg)->lock_state(), nullptr);
  {
    auto g = lock.Lock();
    ASSERT_TRUE(g);
    auto c = (*seg)->Construct<Counter>(*g, "counter");
    ASSERT_TRUE(c);
    (*c)->value = 42;
    auto dup = (*seg)->Construct<Counter>(*g, "counter");
    ASSERT_FALSE(dup);
    EXPECT_EQ(dup.error().code, EEXIST);
  }
  EXPECT_FALSE((*seg)->published());
  (*seg)->Publish();
  pid_t child = testing::ForkChild([&] {
    auto att = Segment::Attach(block->bytes, sizeof(block->bytes), kAbiVersion, std::chrono::milliseconds(100),
                               SystemClock::Get());
    if (!att) return 1;
    RobustLock l((*att)->lock_state(), nullptr);
    auto g = l.Lock();
    auto c = (*att)->Find<Counter>(*g, "counter");
    if (!c || (*c)->value != 42) return 2;
    (*c)->value = 43;
    auto missing = (*att)->Find<Counter>(*g, "nothing");
    return !missing && missing.error().code == ENOENT ? 0 : 3;
  });
  int status = testing::WaitExit(child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  auto g = lock.Lock();
  EXPECT_EQ((*(*seg)->Find<Counter>(*g, "counter"))->value, 43u);
}

TEST(Segment, AttachRefusesAnotherAbiVersionNamingBoth) {
  testing::SharedMapping<Block> block;
  auto seg = Segment::Create(block->bytes, sizeof(block->bytes), 3, kAbiVersion);
  ASSERT_TRUE(seg);
  (*seg)->Publish();
  auto att = Segment::Attach(block->bytes, sizeof(block->bytes), kAbiVersion + 1, std::chrono::milliseconds(10),
                             SystemClock::Get());
  ASSERT_FALSE(att);
  EXPECT_EQ(att.error().code, EPROTONOSUPPORT);
  EXPECT_NE(att.error().message.find("ABI version " + std::to_string(kAbiVersion)), std::string::npos);
  EXPECT_NE(att.error().message.find("ABI version " + std::to_string(kAbiVersion + 1)), std::string::npos);
}

TEST(Segment, AttachTimesOutOnAnUnpublishedSegment) {
  testing::SharedMapping<Block> block;
  auto seg = Segment::Create(block->bytes, sizeof(block->bytes), 3, kAbiVersion);
  ASSERT_TRUE(seg);
  int64_t t0 = MonotonicNanos();
  auto att = Segment::Attach(block->bytes, sizeof(block->bytes), kAbiVersion, std::chrono::milliseconds(30),
                             SystemClock::Get());
  ASSERT_FALSE(att);
  EXPECT_EQ(att.error().code, ETIMEDOUT);
  EXPECT_LT(MonotonicNanos() - t0, 500'000'000);
}

TEST(Segment, AttachRejectsForeignMemory) {
  testing::SharedMapping<Block> block;
  auto* h = reinterpret_cast<SegmentHeader*>(block->bytes);
  h->ready = 1;
  h->magic = 0x1234;
  auto att = Segment::Attach(block->bytes, sizeof(block->bytes), kAbiVersion, std::chrono::milliseconds(10),
                             SystemClock::Get());
  ASSERT_FALSE(att);
  EXPECT_EQ(att.error().code, EPROTO);
}

TEST(Segment, TooSmallIsEINVAL) {
  testing::SharedMapping<Block> block;
  auto seg = Segment::Create(block->bytes, 1024, 3, kAbiVersion);
  ASSERT_FALSE(seg);
  EXPECT_EQ(seg.error().code, EINVAL);
}

}  // namespace
}  // namespace nvmux::shm
