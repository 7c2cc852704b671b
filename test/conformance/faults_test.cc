// Fault injection through the control socket against the in-process
// emulator (tools/emu/faults.h, control_socket.h), surprise removal, block
// corruption and the file backing.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "test/conformance/control_client.h"
#include "test/conformance/harness.h"

namespace nvmux::conformance {
namespace {

using namespace nvmux::spec;
using std::chrono::milliseconds;

constexpr uint32_t kBlock = 512;

class FaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    emu::EmulatorOptions options;
    options.namespaces.push_back({16ull << 20, kBlock, 0, false});
    StartWith(std::move(options));
  }
  void StartWith(emu::EmulatorOptions options) {
    dev_ = std::make_unique<TestDevice>(std::move(options));
    dev_->Start();
    ASSERT_TRUE(dev_->Enable());
    dev_->CreateIoQueuePair(1, 64);
    control_ = std::make_unique<ControlClient>(dev_->socket_dir());
    ASSERT_TRUE(control_->connected()) << "no control socket in " << dev_->socket_dir();
  }
  std::string Control(const std::string& line) { return control_->Send(line); }
  Sqe ReadCmd(uint64_t lba, const DmaMemory::Buffer& buf) {
    Sqe r = IoCmd(nvm::kRead, 1, lba, 1);
    r.prp1 = buf.iova;
    r.cid = dev_->NextCid();
    return r;
  }
  Sqe WriteCmd(uint64_t lba, const DmaMemory::Buffer& buf) {
    Sqe w = IoCmd(nvm::kWrite, 1, lba, 1);
    w.prp1 = buf.iova;
    w.cid = dev_->NextCid();
    return w;
  }
  DmaMemory::Buffer Pattern(uint8_t seed) {
    DmaMemory::Buffer b = dev_->mem().Alloc(kBlock);
    for (uint32_t i = 0; i < kBlock; ++i) b.ptr[i] = static_cast<uint8_t>(seed + i * 7);
    return b;
  }

  std::unique_ptr<TestDevice> dev_;
  std::unique_ptr<ControlClient> control_;
};

TEST_F(FaultsTest, FailReachesTheCompletionThenStops) {
  DmaMemory::Buffer data = Pattern(1);
  ASSERT_TRUE(IsSuccess(dev_->Io(1, WriteCmd(3, data))));
  const std::string reply = Control("fail opc=0x02 count=2 sct=2 sc=0x81 dnr=1");
  ASSERT_TRUE(StartsWith(reply, "ok fail opc=0x02 queue=io count=2 sct=2 sc=0x81 dnr=1")) << reply;
  DmaMemory::Buffer in = dev_->mem().Alloc(kBlock);
  EXPECT_TRUE(HasStatus(dev_->Io(1, ReadCmd(3, in)), sct::kMediaError, 0x81, true));
  // Other opcodes are untouched.
  EXPECT_TRUE(IsSuccess(dev_->Io(1, WriteCmd(4, data))));
  EXPECT_TRUE(HasStatus(dev_->Io(1, ReadCmd(3, in)), sct::kMediaError, 0x81, true));
  // Count used up: the next read works and returns the data.
  EXPECT_TRUE(IsSuccess(dev_->Io(1, ReadCmd(3, in))));
  EXPECT_EQ(std::memcmp(in.ptr, data.ptr, kBlock), 0);
  const std::string status = Control("status");
  EXPECT_TRUE(StartsWith(status, "ok removed=0")) << status;
  EXPECT_NE(status.find("failed=2"), std::string::npos) << status;
  EXPECT_NE(status.find("rules=0"), std::string::npos) << status;
}

TEST_F(FaultsTest, FailOnTheAdminQueueOnly) {
  ASSERT_TRUE(StartsWith(Control("fail opc=0x06 queue=admin sct=0 sc=0x04"), "ok")) << "";
  DmaMemory::Buffer page = dev_->mem().Alloc(4096);
  Sqe id = AdminCmd(admin::kIdentify);
  id.prp1 = page.iova;
  id.cdw10 = 1;  // controller
  EXPECT_TRUE(HasStatus(dev_->Admin(id), sct::kGeneric, 0x04, false));
  EXPECT_TRUE(IsSuccess(dev_->Admin(id)));
  // An I/O-queue rule does not fire on the admin queue (Get Log Page is 0x02 too).
  ASSERT_TRUE(StartsWith(Control("fail opc=0x02 sct=2 sc=0x81"), "ok"));
  Sqe log = AdminCmd(admin::kGetLogPage, 0xFFFFFFFF);
  log.prp1 = page.iova;
  log.cdw10 = lid::kSmartHealth | ((512u / 4 - 1) << 16);
  EXPECT_TRUE(IsSuccess(dev_->Admin(log)));
  DmaMemory::Buffer in = dev_->mem().Alloc(kBlock);
  EXPECT_TRUE(HasStatus(dev_->Io(1, ReadCmd(0, in)), sct::kMediaError, 0x81));
}

TEST_F(FaultsTest, DelayHoldsCompletions) {
  ASSERT_TRUE(StartsWith(Control("delay us=300000 opc=0x02 count=1"), "ok delay us=300000")) << "";
  DmaMemory::Buffer in = dev_->mem().Alloc(kBlock);
  const auto start = std::chrono::steady_clock::now();
  dev_->Submit(dev_->sq(1), ReadCmd(0, in));
  EXPECT_FALSE(dev_->WaitCqe(dev_->cq(1), milliseconds(100))) << "completed before the delay";
  auto cqe = dev_->WaitCqe(dev_->cq(1), milliseconds(3000));
  EXPECT_TRUE(IsSuccess(cqe));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(300));
  // count=1: the next read is not delayed.
  const auto again = std::chrono::steady_clock::now();
  EXPECT_TRUE(IsSuccess(dev_->Io(1, ReadCmd(0, in))));
  EXPECT_LT(std::chrono::steady_clock::now() - again, milliseconds(250));
}

TEST_F(FaultsTest, DroppedCommandNeverCompletesOthersDo) {
  ASSERT_TRUE(StartsWith(Control("drop opc=0x02 count=1"), "ok drop opc=0x02 queue=io count=1"));
  DmaMemory::Buffer in = dev_->mem().Alloc(kBlock);
  DmaMemory::Buffer data = Pattern(9);
  const Sqe dropped = ReadCmd(7, in);
  dev_->Submit(dev_->sq(1), dropped);
  EXPECT_FALSE(dev_->WaitCqe(dev_->cq(1), milliseconds(300))) << "a dropped command completed";
  const Sqe write = WriteCmd(7, data);
  dev_->Submit(dev_->sq(1), write);
  auto w = dev_->WaitCqe(dev_->cq(1));
  ASSERT_TRUE(IsSuccess(w));
  EXPECT_EQ(w->cid, write.cid);
  auto r = dev_->Io(1, ReadCmd(7, in));
  ASSERT_TRUE(IsSuccess(r));
  EXPECT_NE(r->cid, dropped.cid);
  EXPECT_EQ(std::memcmp(in.ptr, data.ptr, kBlock), 0);
  EXPECT_FALSE(dev_->WaitCqe(dev_->cq(1), milliseconds(100))) << "the dropped command turned up late";
  EXPECT_NE(Control("status").find("dropped=1"), std::string::npos);
}

TEST_F(FaultsTest, ClearRemovesRules) {
  ASSERT_TRUE(StartsWith(Control("fail opc=0x02 count=100 sct=2 sc=0x81"), "ok"));
  ASSERT_TRUE(StartsWith(Control("delay us=1000000"), "ok"));
  EXPECT_NE(Control("status").find("rules=2"), std::string::npos);
  EXPECT_EQ(Control("clear"), "ok cleared");
  DmaMemory::Buffer in = dev_->mem().Alloc(kBlock);
  EXPECT_TRUE(IsSuccess(dev_->Io(1, ReadCmd(0, in))));
  EXPECT_NE(Control("status").find("rules=0"), std::string::npos);
}

TEST_F(FaultsTest, CfsIsVisibleInCstsAndResetClearsIt) {
  EXPECT_EQ(dev_->Csts().cfs(), 0u);
  EXPECT_EQ(Control("cfs"), "ok cfs set");
  EXPECT_EQ(dev_->Csts().cfs(), 1u);
  // The host's recovery: CC.EN=0 clears CFS.
  dev_->Disable();
  EXPECT_EQ(dev_->Csts().cfs(), 0u);
  ASSERT_TRUE(dev_->Enable());
  // Deferred: after_ms counts from the command.
  ASSERT_TRUE(StartsWith(Control("cfs after_ms=100"), "ok cfs after_ms=100"));
  EXPECT_EQ(dev_->Csts().cfs(), 0u);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (dev_->Csts().cfs() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(dev_->Csts().cfs(), 1u);
}

TEST_F(FaultsTest, BadCommandsNameTheValue) {
  struct Case {
    std::string line;
    std::string needle;
  };
  for (const Case& c : std::vector<Case>{
           {"fail opc=0x2g", "opc=0x2g"},
           {"fail opc=300", "opc=300"},
           {"fail sct=9 sc=1", "sct=9"},
           {"fail sct=0 sc=0", "success"},
           {"fail queue=both", "queue=both"},
           {"fail count=0", "count=0"},
           {"delay opc=2", "us="},
           {"drop color=red", "color"},
           {"explode", "explode"},
           {"", "empty"},
           {"corrupt", "lba"},
           {"corrupt lba=99999999999", "lba=99999999999"},
           {"corrupt lba=0 ns=5", "namespace 5"},
       }) {
    const std::string reply = Control(c.line);
    EXPECT_TRUE(StartsWith(reply, "error ")) << c.line << " -> " << reply;
    EXPECT_NE(reply.find(c.needle), std::string::npos) << c.line << " -> " << reply;
  }
  // The connection survives errors.
  EXPECT_TRUE(StartsWith(Control("status"), "ok"));
}

TEST_F(FaultsTest, CorruptFlipsStoredData) {
  DmaMemory::Buffer data = Pattern(42);
  ASSERT_TRUE(IsSuccess(dev_->Io(1, WriteCmd(11, data))));
  EXPECT_EQ(Control("corrupt lba=11 ns=1"), "ok corrupted ns=1 lba=11");
  DmaMemory::Buffer in = dev_->mem().Alloc(kBlock);
  ASSERT_TRUE(IsSuccess(dev_->Io(1, ReadCmd(11, in))));
  EXPECT_NE(std::memcmp(in.ptr, data.ptr, kBlock), 0) << "corruption not visible to a read";
  for (uint32_t i = 0; i < kBlock; ++i) ASSERT_EQ(in.ptr[i], static_cast<uint8_t>(~data.ptr[i])) << i;
  // Neighbours untouched.
  ASSERT_TRUE(IsSuccess(dev_->Io(1, ReadCmd(12, in))));
  for (uint32_t i = 0; i < kBlock; ++i) ASSERT_EQ(in.ptr[i], 0) << i;
}

TEST_F(FaultsTest, SurpriseRemoval) {
  // A command in flight (its completion held by a delay) when the device goes.
  ASSERT_TRUE(StartsWith(Control("delay us=150000 count=1"), "ok"));
  DmaMemory::Buffer pending = dev_->mem().Alloc(kBlock);
  dev_->Submit(dev_->sq(1), ReadCmd(0, pending));
  std::this_thread::sleep_for(milliseconds(20));  // fetched by now
  EXPECT_EQ(Control("remove"), "ok removed");
  EXPECT_FALSE(dev_->WaitCqe(dev_->cq(1), milliseconds(400))) << "a command completed after removal";
  // Registers read all-ones.
  auto csts = dev_->emulator().controller().ReadRegister(kRegCsts, 4);
  ASSERT_TRUE(csts);
  EXPECT_EQ(*csts, 0xFFFFFFFFu);
  auto cap = dev_->emulator().controller().ReadRegister(kRegCap, 8);
  ASSERT_TRUE(cap);
  EXPECT_EQ(*cap, ~0ull);
  // The doorbell page (shared with the client, also <dir>/bar0) reads all-ones.
  {
    int fd = ::open((dev_->socket_dir() + "/bar0").c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    std::vector<uint8_t> page(4096);
    ASSERT_EQ(::pread(fd, page.data(), page.size(), kDoorbellBase), 4096);
    ::close(fd);
    for (size_t i = 0; i < page.size(); ++i) ASSERT_EQ(page[i], 0xFF) << i;
  }
  // The client's connection is gone: an error (not a hang, not success).
  const auto start = std::chrono::steady_clock::now();
  auto r = dev_->client().Read32(vfiouser::kPciBar0Region, kRegCsts);
  ASSERT_FALSE(r) << "register read succeeded after removal";
  EXPECT_TRUE(r.error().code == ENXIO || r.error().code == EPROTO) << r.error().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  // New connections are refused.
  auto again = vfiouser::Client::Connect(dev_->socket_dir());
  if (again) {
    EXPECT_FALSE((*again)->Negotiate()) << "a new client was served after removal";
  }
  // Commands submitted after removal never complete either.
  DmaMemory::Buffer in = dev_->mem().Alloc(kBlock);
  dev_->Submit(dev_->sq(1), ReadCmd(0, in));
  EXPECT_FALSE(dev_->WaitCqe(dev_->cq(1), milliseconds(200)));
  // The emulator itself is still there to be asked.
  const std::string status = Control("status");
  EXPECT_TRUE(StartsWith(status, "ok removed=1 csts=0xffffffff")) << status;
  // Stop is clean and removes the socket files.
  const std::string sock = dev_->socket_dir();
  dev_->emulator().Stop();
  dev_.reset();
  struct stat st{};
  EXPECT_NE(::lstat((sock + "/cntrl").c_str(), &st), 0);
  EXPECT_NE(::lstat((sock + "/control").c_str(), &st), 0);
}

TEST_F(FaultsTest, ControlSocketServesSeveralClients) {
  ControlClient second(dev_->socket_dir());
  ASSERT_TRUE(second.connected());
  EXPECT_TRUE(StartsWith(second.Send("status"), "ok"));
  EXPECT_TRUE(StartsWith(Control("status"), "ok"));
  EXPECT_TRUE(StartsWith(second.Send("  clear  "), "ok"));
}

TEST(FileBackingTest, DataPersistsAcrossRestart) {
  TempDir files;
  const std::string path = files.path() + "/ns.img";
  emu::EmulatorOptions options;
  options.namespaces.push_back({1ull << 20, kBlock, 0, false});
  options.backing = emu::BackingSpec(emu::BackingKind::kFile, path);
  std::vector<uint8_t> written(kBlock);
  {
    TestDevice dev(options);
    dev.Start();
    ASSERT_TRUE(dev.Enable());
    dev.CreateIoQueuePair(1, 16);
    DmaMemory::Buffer buf = dev.mem().Alloc(kBlock);
    for (uint32_t i = 0; i < kBlock; ++i) buf.ptr[i] = static_cast<uint8_t>(i * 13 + 5);
    std::memcpy(written.data(), buf.ptr, kBlock);
    Sqe w = IoCmd(nvm::kWrite, 1, 100, 1);
    w.prp1 = buf.iova;
    ASSERT_TRUE(IsSuccess(dev.Io(1, w)));
    ASSERT_TRUE(IsSuccess(dev.Io(1, IoCmd(nvm::kFlush, 1, 0, 1))));
  }
  struct stat st{};
  ASSERT_EQ(::stat(path.c_str(), &st), 0) << "backing file missing";
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 1ull << 20) << "file sized to the namespace";
  {
    TestDevice dev(options);
    dev.Start();
    ASSERT_TRUE(dev.Enable());
    dev.CreateIoQueuePair(1, 16);
    DmaMemory::Buffer buf = dev.mem().Alloc(kBlock);
    Sqe r = IoCmd(nvm::kRead, 1, 100, 1);
    r.prp1 = buf.iova;
    ASSERT_TRUE(IsSuccess(dev.Io(1, r)));
    EXPECT_EQ(std::memcmp(buf.ptr, written.data(), kBlock), 0) << "data lost across the restart";
    // Corruption through the control socket reaches the file too.
    ControlClient control(dev.socket_dir());
    EXPECT_EQ(control.Send("corrupt lba=100"), "ok corrupted ns=1 lba=100");
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> on_disk(kBlock);
  EXPECT_EQ(::pread(fd, on_disk.data(), kBlock, 100 * kBlock), static_cast<ssize_t>(kBlock));
  ::close(fd);
  EXPECT_EQ(on_disk[0], static_cast<uint8_t>(~written[0]));
}

TEST(FileBackingTest, UnusablePathIsAClearError) {
  TempDir files;
  emu::EmulatorOptions options;
  options.socket_dir = files.path() + "/sock";
  options.namespaces.push_back({1ull << 20, kBlock, 0, false});
  options.backing = emu::BackingSpec(emu::BackingKind::kFile, files.path() + "/no/such/dir/ns.img");
  auto emu = emu::Emulator::Create(options);
  ASSERT_FALSE(emu);
  EXPECT_NE(emu.error().message.find("no/such/dir/ns.img"), std::string::npos) << emu.error().ToString();
  // A directory is not a regular file.
  options.backing = emu::BackingSpec(emu::BackingKind::kFile, files.path());
  auto dir = emu::Emulator::Create(options);
  ASSERT_FALSE(dir);
  EXPECT_NE(dir.error().ToString().find(files.path()), std::string::npos) << dir.error().ToString();
}

}  // namespace
}  // namespace nvmux::conformance
