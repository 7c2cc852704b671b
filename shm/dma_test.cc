#include "shm/dma.h"

#include <gtest/gtest.h>

#include <cstring>

#include "shm/test_support.h"

namespace nvmux::shm {
namespace {

// Fake backend over a shared arena, so memory one process allocates another
// can free (as with DPDK's shared heap). Bump allocation; frees are counted.
struct Arena {
  alignas(4096) unsigned char bytes[1 << 20];
  uint64_t used;
  uint64_t frees;
  uint64_t limit;
};

class ArenaBackend final : public DmaBackend {
 public:
  explicit ArenaBackend(Arena& a) : a_(a) {}
  void* Allocate(size_t size, size_t align, std::string_view) override {
    uint64_t start = (a_.used + align - 1) / align * align;
    if (start + size > a_.limit) return nullptr;
    a_.used = start + size;
    std::memset(a_.bytes + start, 0, size);
    return a_.bytes + start;
  }
  void Free(void*) override { a_.frees++; }
  uint64_t VirtToIova(const void* p) const override { return 0x10000 + static_cast<uint64_t>(static_cast<const unsigned char*>(p) - a_.bytes); }
  void* IovaToVirt(uint64_t iova) const override { return a_.bytes + (iova - 0x10000); }
  size_t FreeBytes() const override { return a_.limit - a_.used; }

 private:
  Arena& a_;
};

struct Shared {
  RobustMutexState lock;
  DmaTableState table;
  Arena arena;
};

class DmaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(InitRobustMutex(s_->lock));
    DmaAllocator::InitState(s_->table, 8);
    s_->arena.limit = sizeof(s_->arena.bytes);
  }
  testing::SharedMapping<Shared> s_;
};

TEST_F(DmaTest, AllocatesZeroedAlignedMemoryRecordedAgainstTheOwner) {
  RobustLock lock(s_->lock, nullptr);
  ArenaBackend backend(s_->arena);
  DmaAllocator dma(s_->table, lock, backend, 5);
  auto a = dma.Allocate(100, 4096, "a");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a->data()) % 4096, 0u);
  EXPECT_EQ(a->iova(), backend.VirtToIova(a->data()));
  EXPECT_EQ(static_cast<unsigned char*>(a->data())[99], 0);
  EXPECT_EQ(dma.UsageOf(5).allocations, 1u);
  EXPECT_EQ(dma.UsageOf(5).bytes, 100u);
  EXPECT_EQ(dma.UsageOf(4).allocations, 0u);
  { DmaBuffer moved = std::move(*a); }
  EXPECT_EQ(dma.TotalUsage().allocations, 0u);
  EXPECT_EQ(s_->arena.frees, 1u);
}

TEST_F(DmaTest, BadArgumentsNameTheValue) {
  RobustLock lock(s_->lock, nullptr);
  ArenaBackend backend(s_->arena);
  DmaAllocator dma(s_->table, lock, backend, 0);
  auto zero = dma.Allocate(0, 64, "z");
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code, EINVAL);
  auto align = dma.Allocate(64, 48, "z");
  ASSERT_FALSE(align);
  EXPECT_EQ(align.error().code, EINVAL);
  EXPECT_NE(align.error().message.find("48"), std::string::npos);
  s_->arena.limit = 4096;
  auto big = dma.Allocate(8192, 64, "big");
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, ENOMEM);
  EXPECT_NE(big.error().message.find("8192"), std::string::npos);
  EXPECT_EQ(dma.TotalUsage().allocations, 0u);
}

TEST_F(DmaTest, FullRecordTableIsEAGAIN) {
  RobustLock lock(s_->lock, nullptr);
  ArenaBackend backend(s_->arena);
  DmaAllocator dma(s_->table, lock, backend, 0);
  std::vector<DmaBuffer> held;
  for (int i = 0; i < 8; ++i) held.push_back(std::move(*dma.Allocate(64, 64, "x")));
  auto more = dma.Allocate(64, 64, "x");
  ASSERT_FALSE(more);
  EXPECT_EQ(more.error().code, EAGAIN);
}

TEST_F(DmaTest, SurvivorFreesWhatADeadProcessAllocated) {
  testing::Pipe done;
  pid_t child = testing::ForkChild([&] {
    RobustLock lock(s_->lock, nullptr);
    ArenaBackend backend(s_->arena);
    DmaAllocator dma(s_->table, lock, backend, 9);
    auto a = dma.Allocate(4096, 4096, "child-a");
    auto b = dma.Allocate(512, 64, "child-b");
    if (!a || !b) return 1;
    done.Signal();
    for (;;) pause();
  });
  ASSERT_TRUE(done.Wait());
  ::kill(child, SIGKILL);
  testing::WaitExit(child);
  RobustLock lock(s_->lock, nullptr);
  ArenaBackend backend(s_->arena);
  DmaAllocator dma(s_->table, lock, backend, 1);
  EXPECT_EQ(dma.UsageOf(9).allocations, 2u);
  uint64_t freed;
  {
    auto g = lock.Lock();
    freed = dma.FreeAllOwnedBy(9);
    EXPECT_EQ(dma.FreeAllOwnedBy(9), 0u);  // idempotent
  }
  EXPECT_EQ(freed, 2u);
  EXPECT_EQ(s_->arena.frees, 2u);
  EXPECT_EQ(dma.TotalUsage().allocations, 0u);
}

// A dead process's ring a device may still use: quarantined (by any address
// inside it), it survives the reap of its slot, and is freed only by
// ReleaseQuarantined.
TEST_F(DmaTest, QuarantinedMemorySurvivesTheReapUntilReleased) {
  testing::Pipe done;
  pid_t child = testing::ForkChild([&] {
    RobustLock lock(s_->lock, nullptr);
    ArenaBackend backend(s_->arena);
    DmaAllocator dma(s_->table, lock, backend, 9);
    auto rings = dma.Allocate(8192, 4096, "io-rings");
    auto other = dma.Allocate(4096, 4096, "buffer");
    if (!rings || !other) return 1;
    done.Signal();
    for (;;) pause();
  });
  ASSERT_TRUE(done.Wait());
  ::kill(child, SIGKILL);
  testing::WaitExit(child);
  RobustLock lock(s_->lock, nullptr);
  ArenaBackend backend(s_->arena);
  DmaAllocator dma(s_->table, lock, backend, 1);
  uint64_t rings_iova = 0;
  for (const DmaRecord& r : s_->table.records)
    if (std::strcmp(r.tag, "io-rings") == 0) rings_iova = r.iova;
  ASSERT_NE(rings_iova, 0u);
  auto q = dma.Quarantine(rings_iova + 4096, 9);  // the CQ half
  ASSERT_TRUE(q && *q);
  auto again = dma.Quarantine(rings_iova, 9);  // the SQ half: the same record
  ASSERT_TRUE(again && *again);
  auto not_his = dma.Quarantine(rings_iova, 3);
  ASSERT_TRUE(not_his);
  EXPECT_TRUE(*not_his);  // already quarantined, whoever asks
  {
    auto g = lock.Lock();
    EXPECT_EQ(dma.FreeAllOwnedBy(9), 1u);  // the buffer only
  }
  EXPECT_EQ(dma.UsageOf(kQuarantineOwner).allocations, 1u);
  EXPECT_EQ(dma.UsageOf(kQuarantineOwner).bytes, 8192u);
  auto released = dma.ReleaseQuarantined(rings_iova + 100);
  ASSERT_TRUE(released && *released);
  auto twice = dma.ReleaseQuarantined(rings_iova);
  ASSERT_TRUE(twice);
  EXPECT_FALSE(*twice);
  EXPECT_EQ(dma.TotalUsage().allocations, 0u);
  EXPECT_EQ(s_->arena.frees, 2u);
}

// A dead process with a quarantined queue: its rings by address, and all
// the rest of its memory (the data buffers of commands still on the queue)
// as a whole, survive the reap of its slot; the rest is released by slot,
// another slot's memory is untouched.
TEST_F(DmaTest, DeadSlotsDataBuffersAreQuarantinedAsAWholeAndReleasedBySlot) {
  testing::Pipe done;
  pid_t child = testing::ForkChild([&] {
    RobustLock lock(s_->lock, nullptr);
    ArenaBackend backend(s_->arena);
    DmaAllocator dma(s_->table, lock, backend, 9);
    auto rings = dma.Allocate(8192, 4096, "io-rings");
    auto data1 = dma.Allocate(4096, 4096, "buffer");
    auto data2 = dma.Allocate(16384, 4096, "buffer");
    if (!rings || !data1 || !data2) return 1;
    done.Signal();
    for (;;) pause();
  });
  ASSERT_TRUE(done.Wait());
  ::kill(child, SIGKILL);
  testing::WaitExit(child);
  RobustLock lock(s_->lock, nullptr);
  ArenaBackend backend(s_->arena);
  DmaAllocator dma(s_->table, lock, backend, 1);
  auto mine = dma.Allocate(4096, 4096, "mine");
  ASSERT_TRUE(mine);
  uint64_t rings_iova = 0;
  for (const DmaRecord& r : s_->table.records)
    if (std::strcmp(r.tag, "io-rings") == 0) rings_iova = r.iova;
  ASSERT_NE(rings_iova, 0u);
  auto rings = dma.Quarantine(rings_iova, 9);
  ASSERT_TRUE(rings && *rings);
  auto rest = dma.QuarantineAllOf(9);
  ASSERT_TRUE(rest);
  EXPECT_EQ(*rest, 2u);  // the two data buffers
  {
    auto g = lock.Lock();
    EXPECT_EQ(dma.FreeAllOwnedBy(9), 0u);  // the reap frees nothing of it
  }
  EXPECT_EQ(dma.UsageOf(QuarantineOwnerOf(9)).allocations, 2u);
  EXPECT_EQ(dma.UsageOf(QuarantineOwnerOf(9)).bytes, 20480u);
  EXPECT_EQ(dma.UsageOf(kQuarantineOwner).allocations, 1u);
  auto none = dma.ReleaseQuarantinedOf(3);
  ASSERT_TRUE(none);
  EXPECT_EQ(*none, 0u);
  auto freed = dma.ReleaseQuarantinedOf(9);
  ASSERT_TRUE(freed);
  EXPECT_EQ(*freed, 2u);
  EXPECT_EQ(dma.UsageOf(QuarantineOwnerOf(9)).allocations, 0u);
  EXPECT_EQ(dma.UsageOf(1).allocations, 1u);  // another slot's memory stays
  auto released = dma.ReleaseQuarantined(rings_iova);
  ASSERT_TRUE(released && *released);
}

TEST_F(DmaTest, GroupOwnedMemorySurvivesItsAllocatorsDeathAndIsAdopted) {
  testing::Pipe done;
  pid_t child = testing::ForkChild([&] {
    RobustLock lock(s_->lock, nullptr);
    ArenaBackend backend(s_->arena);
    DmaAllocator dma(s_->table, lock, backend, 3);
    auto mine = dma.Allocate(4096, 4096, "private");
    auto ring = dma.Allocate(8192, 4096, "admin-queue", DmaOwner::kGroup);
    if (!mine || !ring) return 1;
    static_cast<unsigned char*>(ring->data())[10] = 0xA5;
    done.Signal();
    for (;;) pause();
  });
  ASSERT_TRUE(done.Wait());
  ::kill(child, SIGKILL);
  testing::WaitExit(child);
  RobustLock lock(s_->lock, nullptr);
  ArenaBackend backend(s_->arena);
  DmaAllocator dma(s_->table, lock, backend, 1);
  {
    auto g = lock.Lock();
    EXPECT_EQ(dma.FreeAllOwnedBy(3), 1u) << "reaping frees only the private allocation";
  }
  EXPECT_EQ(dma.UsageOf(kGroupOwner).allocations, 1u);
  uint64_t iova = 0;
  for (const DmaRecord& r : s_->table.records)
    if (r.owner_slot == kGroupOwner && r.state == static_cast<uint32_t>(DmaRecordState::kLive)) iova = r.iova;
  auto missing = dma.Adopt(iova + 4096);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ENOENT);
  auto adopted = dma.Adopt(iova);
  ASSERT_TRUE(adopted) << adopted.error().message;
  EXPECT_EQ(adopted->size(), 8192u);
  EXPECT_EQ(static_cast<unsigned char*>(adopted->data())[10], 0xA5);
  { DmaBuffer gone = std::move(*adopted); }
  EXPECT_EQ(dma.TotalUsage().allocations, 0u);
  EXPECT_EQ(s_->arena.frees, 2u);
}

// A holder that dies between recording intent and finishing leaves records
// the repair resolves conservatively: never a double free.
TEST_F(DmaTest, RepairLeaksRatherThanDoubleFrees) {
  RobustLock lock(s_->lock, nullptr);
  ArenaBackend backend(s_->arena);
  DmaAllocator dma(s_->table, lock, backend, 0);
  DmaRecord& allocating = s_->table.records[2];
  allocating.state = static_cast<uint32_t>(DmaRecordState::kAllocating);
  allocating.size = 1000;
  DmaRecord& freeing = s_->table.records[3];
  freeing.state = static_cast<uint32_t>(DmaRecordState::kFreeing);
  freeing.size = 2000;
  freeing.iova = 0x10000;
  {
    auto g = lock.Lock();
    dma.RepairAfterOwnerDeath();
  }
  EXPECT_EQ(allocating.state, static_cast<uint32_t>(DmaRecordState::kFree));
  EXPECT_EQ(freeing.state, static_cast<uint32_t>(DmaRecordState::kFree));
  EXPECT_EQ(s_->arena.frees, 0u);
  EXPECT_EQ(dma.LeakedBytes(), 3000u);
}

}  // namespace
}  // namespace nvmux::shm
