// The driver core bringing up the real nvmux-emu process: vfio-user
// transport (registers by message, doorbells mapped), admin queue rings in
// memory shared by fd, and the controller init state machine to ready.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include "libclient/core/admin_queue.h"
#include "libclient/core/controller_init.h"
#include "libclient/core/io_queue.h"
#include "libclient/core/queue_ring.h"
#include "libclient/vfiouser/vfio_user_registers.h"
#include "test/util/group_fixture.h"
#include "test/util/subprocess.h"

namespace nvmux {
namespace {

constexpr uint64_t kIova = 0x10000000;
constexpr size_t kDmaBytes = 1 << 20;

class ControllerBringupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nvmux-bringup-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    emu_ = test::StartEmu({NVMUX_EMU, "--socket", dir_, "--backing", "ram-lazy"}, dir_);
    ASSERT_TRUE(emu_);
    memfd_ = ::memfd_create("nvmux-dma", MFD_CLOEXEC);
    ASSERT_GE(memfd_, 0);
    ASSERT_EQ(::ftruncate(memfd_, kDmaBytes), 0);
    mem_ = static_cast<uint8_t*>(::mmap(nullptr, kDmaBytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_, 0));
    ASSERT_NE(mem_, MAP_FAILED);
  }
  void TearDown() override {
    doorbells_ = vfiouser::MappedArea();
    client_.reset();
    if (mem_ != MAP_FAILED && mem_ != nullptr) ::munmap(mem_, kDmaBytes);
    if (memfd_ >= 0) ::close(memfd_);
    if (emu_) {
      emu_->Kill(SIGTERM);
      auto st = emu_->Wait();
      EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0);
    }
    std::filesystem::remove_all(dir_);
  }
  void Connect() {
    auto client = vfiouser::Client::Connect(dir_);
    ASSERT_TRUE(client) << client.error().ToString();
    client_ = std::move(*client);
    ASSERT_TRUE(client_->Negotiate());
    auto bar0 = client_->GetRegionInfo(vfiouser::kPciBar0Region);
    ASSERT_TRUE(bar0) << bar0.error().ToString();
    ASSERT_FALSE(bar0->sparse_areas.empty());
    bar0_doorbell_offset_ = bar0->sparse_areas[0].offset;
    auto db = client_->MapSparseArea(*bar0, 0);
    ASSERT_TRUE(db) << db.error().ToString();
    doorbells_ = std::move(*db);
    ASSERT_TRUE(client_->DmaMap(memfd_, 0, kIova, kDmaBytes));
  }
  // Admin rings in the shared memory (SQ page, CQ page, then the identify
  // page) and the init machine over them, as a freshly started driver has.
  struct Admin {
    QueueRing ring;
    AdminQueue queue;
    Admin(spec::Sqe* sq, spec::Cqe* cq, uint32_t entries, Doorbells doorbells)
        : ring(sq, cq, entries, doorbells), queue(ring) {}
  };
  std::unique_ptr<Admin> MakeAdmin(uint16_t entries) {
    std::memset(mem_, 0, 3 * 4096);
    return std::make_unique<Admin>(reinterpret_cast<spec::Sqe*>(mem_), reinterpret_cast<spec::Cqe*>(mem_ + 4096),
                                   entries, Doorbells{Doorbell(0, false), Doorbell(0, true)});
  }
  ControllerInit MakeInit(RegisterIo& regs, Admin& admin, uint16_t entries, uint16_t io_queues) {
    InitOptions options;
    options.asq_iova = kIova;
    options.acq_iova = kIova + 4096;
    options.admin_entries = entries;
    options.io_queues = io_queues;
    return ControllerInit(regs, admin.queue, SystemClock::Get(), options, IdentifyBuffer{mem_ + 8192, kIova + 8192});
  }
  // Steps to a terminal state (5 s at most); returns the states entered.
  static std::vector<InitState> RunInit(ControllerInit& init) {
    std::vector<InitState> seen{init.state()};
    int64_t deadline = MonotonicNanos() + 5'000'000'000;
    while (init.state() != InitState::kReady && init.state() != InitState::kFailed && MonotonicNanos() < deadline)
      if (init.Step() != seen.back()) seen.push_back(init.state());
    return seen;
  }
  volatile uint32_t* Doorbell(uint16_t qid, bool cq) {
    uint32_t off = spec::DoorbellOffset(qid, cq) - static_cast<uint32_t>(bar0_doorbell_offset_);
    return reinterpret_cast<volatile uint32_t*>(doorbells_.data() + off);
  }

  std::string dir_;
  std::unique_ptr<test::Subprocess> emu_;
  int memfd_ = -1;
  uint8_t* mem_ = nullptr;
  std::unique_ptr<vfiouser::Client> client_;
  vfiouser::MappedArea doorbells_;
  uint64_t bar0_doorbell_offset_ = 0;
};

TEST_F(ControllerBringupTest, InitStateMachineBringsNvmuxEmuToReady) {
  Connect();
  vfiouser::VfioUserRegisters regs(*client_);
  ASSERT_TRUE(regs.EnableBusMaster());
  auto admin = MakeAdmin(32);
  ControllerInit init = MakeInit(regs, *admin, 32, 8);
  RunInit(init);
  ASSERT_EQ(init.state(), InitState::kReady) << ToString(init.state()) << ": " << init.error().message;
  const ControllerData& d = init.data();
  EXPECT_EQ(d.vs.raw, spec::kVersion1_4);
  EXPECT_EQ(d.ctrlr.sqes, 0x66);
  EXPECT_EQ(d.ctrlr.cqes, 0x44);
  EXPECT_GE(d.io_sq_granted, 1);
  EXPECT_LE(d.io_sq_granted, 8);
  ASSERT_EQ(d.active_nsids, std::vector<uint32_t>{1});
  // The default namespace: 1 GiB of 512-byte blocks.
  EXPECT_EQ(d.namespaces[0].nsze, (1ull << 30) / 512);
  EXPECT_GE(admin->ring.doorbell_writes(), 8u);  // 4 commands: SQ tail + CQ head each
  EXPECT_EQ(admin->queue.outstanding(), 0u);
}

TEST_F(ControllerBringupTest, ReinitialisingAnEnabledControllerDisablesItFirst) {
  Connect();
  vfiouser::VfioUserRegisters regs(*client_);
  ASSERT_TRUE(regs.EnableBusMaster());
  for (int pass = 0; pass < 2; ++pass) {
    auto admin = MakeAdmin(16);  // fresh rings, as a restarted driver would have
    ControllerInit init = MakeInit(regs, *admin, 16, 64);
    std::vector<InitState> seen = RunInit(init);
    ASSERT_EQ(init.state(), InitState::kReady) << "pass " << pass << ": " << init.error().message;
    EXPECT_EQ(seen[1], pass == 0 ? InitState::kWaitDisabled : InitState::kDisable) << "pass " << pass;
  }
}

// Waits for one admin command's completion (the test's own small helper).
spec::Cqe RunAdmin(AdminQueue& admin, const spec::Sqe& cmd) {
  std::optional<spec::Cqe> done;
  EXPECT_TRUE(admin.Submit(cmd, [&](const spec::Cqe& c) { done = c; }));
  int64_t deadline = MonotonicNanos() + 2'000'000'000;
  while (!done && MonotonicNanos() < deadline) EXPECT_TRUE(admin.Poll());
  EXPECT_TRUE(done.has_value());
  return done.value_or(spec::Cqe{});
}

TEST_F(ControllerBringupTest, IoQueueWritesAndReadsBackThroughPrps) {
  Connect();
  vfiouser::VfioUserRegisters regs(*client_);
  ASSERT_TRUE(regs.EnableBusMaster());
  auto admin_side = MakeAdmin(32);
  AdminQueue& admin = admin_side->queue;
  ControllerInit init = MakeInit(regs, *admin_side, 32, 4);
  RunInit(init);
  ASSERT_EQ(init.state(), InitState::kReady) << init.error().message;

  // Memory: I/O SQ at 12 KiB, CQ at 16 KiB, 63 PRP pages from 20 KiB, data from 512 KiB.
  constexpr uint32_t kEntries = 64;
  const uint64_t sq_off = 12288, cq_off = 16384, prp_off = 20480, wr_off = 512 * 1024, rd_off = 640 * 1024;
  auto create = CreateIoQueueCommands(1, kEntries, kIova + sq_off, kIova + cq_off);
  spec::Cqe c = RunAdmin(admin, create.create_cq);
  ASSERT_EQ(c.status >> 1, 0) << "Create I/O CQ status " << (c.status >> 1);
  c = RunAdmin(admin, create.create_sq);
  ASSERT_EQ(c.status >> 1, 0) << "Create I/O SQ status " << (c.status >> 1);

  QueueRing ring(reinterpret_cast<spec::Sqe*>(mem_ + sq_off), reinterpret_cast<spec::Cqe*>(mem_ + cq_off), kEntries,
                 Doorbells{Doorbell(1, false), Doorbell(1, true)});
  IoQueue io(1, ring, TrackerMemory{reinterpret_cast<uint64_t*>(mem_ + prp_off), kIova + prp_off, kEntries - 1});
  auto wait_all = [&] {
    int64_t deadline = MonotonicNanos() + 2'000'000'000;
    while (io.outstanding() > 0 && MonotonicNanos() < deadline) ASSERT_TRUE(io.Poll());
    ASSERT_EQ(io.outstanding(), 0u);
  };
  for (uint32_t bytes : {512u, 4096u, 8192u, 65536u}) {  // one page, two pages, a PRP list
    for (uint32_t i = 0; i < bytes; ++i) mem_[wr_off + i] = static_cast<uint8_t>(i * 7 + bytes);
    std::memset(mem_ + rd_off, 0, bytes);
    IovaSegment wr{kIova + wr_off, bytes}, rd{kIova + rd_off, bytes};
    uint16_t wst = 0xFFFF, rst = 0xFFFF;
    ASSERT_TRUE(io.Write(1, 1000, bytes / 512, {&wr, 1}, [&](const spec::Cqe& cqe) { wst = cqe.status >> 1; }));
    wait_all();
    ASSERT_TRUE(io.Read(1, 1000, bytes / 512, {&rd, 1}, [&](const spec::Cqe& cqe) { rst = cqe.status >> 1; }));
    wait_all();
    EXPECT_EQ(wst, 0);
    EXPECT_EQ(rst, 0);
    EXPECT_EQ(std::memcmp(mem_ + wr_off, mem_ + rd_off, bytes), 0) << bytes << " bytes differ after read-back";
  }
  // Past the end of the 1 GiB namespace: LBA Out of Range (0/80) reaches the callback.
  IovaSegment one{kIova + rd_off, 512};
  uint16_t status = 0;
  ASSERT_TRUE(io.Read(1, (1ull << 30) / 512, 1, {&one, 1}, [&](const spec::Cqe& cqe) { status = cqe.status >> 1; }));
  wait_all();
  EXPECT_EQ(status & 0xFF, 0x80);
  EXPECT_EQ((status >> 8) & 0x7, 0);
  // Malformed requests are refused before they reach the device.
  auto zero = io.Read(1, 0, 0, {&one, 1}, [](const spec::Cqe&) {});
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code, EINVAL);

  auto del = DeleteIoQueueCommands(1);
  EXPECT_EQ(RunAdmin(admin, del.delete_sq).status >> 1, 0);
  EXPECT_EQ(RunAdmin(admin, del.delete_cq).status >> 1, 0);
}

}  // namespace
}  // namespace nvmux
