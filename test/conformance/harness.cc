#include "test/conformance/harness.h"

#include <ftw.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>

#include "tools/emu/pci_config.h"

namespace nvmux::conformance {

using namespace nvmux::spec;
using vfiouser::kPciBar0Region;
using vfiouser::kPciConfigRegion;

TempDir::TempDir() {
  char tmpl[] = "/tmp/nvmux-conf-XXXXXX";
  char* p = ::mkdtemp(tmpl);
  if (p == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    return;
  }
  path_ = p;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  ::nftw(
      path_.c_str(), [](const char* fpath, const struct stat*, int, struct FTW*) { return ::remove(fpath); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

DmaMemory::DmaMemory() {
  fd_.Reset(::memfd_create("nvmux-conf-dma", MFD_CLOEXEC));
  if (!fd_.valid() || ::ftruncate(fd_.get(), kSize) != 0) {
    ADD_FAILURE() << "memfd: " << std::strerror(errno);
    return;
  }
  void* p = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
  if (p == MAP_FAILED) {
    ADD_FAILURE() << "mmap: " << std::strerror(errno);
    return;
  }
  base_ = static_cast<uint8_t*>(p);
}

DmaMemory::~DmaMemory() {
  if (base_ != nullptr) ::munmap(base_, kSize);
}

DmaMemory::Buffer DmaMemory::Alloc(uint64_t size, uint64_t align) {
  uint64_t at = (next_ + align - 1) & ~(align - 1);
  if (at + size > kSize) {
    ADD_FAILURE() << "test DMA memory exhausted";
    return {};
  }
  next_ = at + size;
  std::memset(base_ + at, 0, size);
  return {kIova + at, base_ + at, size};
}

TestDevice::TestDevice(emu::EmulatorOptions options) : options_(std::move(options)) {
  options_.socket_dir = dir_.path() + "/sock";
}

TestDevice::~TestDevice() {
  doorbells_ = vfiouser::MappedArea();
  client_.reset();
  emu_.reset();
}

void TestDevice::Start() {
  auto emu = emu::Emulator::Create(options_);
  ASSERT_TRUE(emu) << emu.error().ToString();
  emu_ = std::move(*emu);
  ASSERT_TRUE(emu_->Start());
  Reconnect();
}

void TestDevice::Attach(const std::string& socket_dir) {
  options_.socket_dir = socket_dir;
  Reconnect();
}

void TestDevice::Reconnect() {
  doorbells_ = vfiouser::MappedArea();
  client_.reset();
  auto client = vfiouser::Client::Connect(options_.socket_dir);
  ASSERT_TRUE(client) << client.error().ToString();
  client_ = std::move(*client);
  auto caps = client_->Negotiate();
  ASSERT_TRUE(caps) << caps.error().ToString();
  auto bar0 = client_->GetRegionInfo(kPciBar0Region);
  ASSERT_TRUE(bar0) << bar0.error().ToString();
  ASSERT_EQ(bar0->sparse_areas.size(), 1u);
  auto db = client_->MapSparseArea(*bar0, 0);
  ASSERT_TRUE(db) << db.error().ToString();
  doorbells_ = std::move(*db);
  Status mapped = client_->DmaMap(mem_.fd(), 0, DmaMemory::kIova, DmaMemory::kSize);
  ASSERT_TRUE(mapped) << mapped.error().ToString();
}

uint32_t TestDevice::Reg32(uint32_t offset) {
  auto v = client_->Read32(kPciBar0Region, offset);
  EXPECT_TRUE(v) << v.error().ToString();
  return v ? *v : 0xFFFFFFFF;
}

uint64_t TestDevice::Reg64(uint32_t offset) {
  auto v = client_->Read64(kPciBar0Region, offset);
  EXPECT_TRUE(v) << v.error().ToString();
  return v ? *v : ~0ull;
}

void TestDevice::SetReg32(uint32_t offset, uint32_t value) {
  Status s = client_->Write32(kPciBar0Region, offset, value);
  EXPECT_TRUE(s) << s.error().ToString();
}

void TestDevice::SetMsixEnable(bool enable) {
  constexpr uint32_t kMessageControlHigh = emu::PciConfig::kMsixCapOffset + 3;
  const uint8_t byte[1] = {static_cast<uint8_t>(enable ? 0x80 : 0x00)};
  Status s = client_->WriteRegion(kPciConfigRegion, kMessageControlHigh, byte);
  EXPECT_TRUE(s) << s.error().ToString();
}

void TestDevice::SetReg64(uint32_t offset, uint64_t value) {
  Status s = client_->Write64(kPciBar0Region, offset, value);
  EXPECT_TRUE(s) << s.error().ToString();
}

bool TestDevice::WaitReady(bool ready, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  do {
    spec::Csts csts = Csts();
    if ((csts.rdy() != 0) == ready) return true;
    if (csts.cfs() != 0) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  } while (std::chrono::steady_clock::now() < deadline);
  return false;
}

bool TestDevice::Enable(uint16_t asq_entries, uint16_t acq_entries, std::optional<uint32_t> cc) {
  QueueState asq;
  asq.qid = 0;
  asq.size = asq_entries;
  asq.mem = mem_.Alloc(uint64_t{asq_entries} * sizeof(Sqe));
  QueueState acq;
  acq.qid = 0;
  acq.size = acq_entries;
  acq.mem = mem_.Alloc(uint64_t{acq_entries} * sizeof(Cqe));
  sqs_[0] = asq;
  cqs_[0] = acq;
  Aqa aqa;
  aqa.set_asqs(static_cast<uint16_t>(asq_entries - 1)).set_acqs(static_cast<uint16_t>(acq_entries - 1));
  SetReg32(kRegAqa, aqa.raw);
  SetReg64(kRegAsq, asq.mem.iova);
  SetReg64(kRegAcq, acq.mem.iova);
  Cc value;
  value.set_en(1).set_iosqes(6).set_iocqes(4);
  SetReg32(kRegCc, cc.value_or(value.raw));
  return WaitReady(true);
}

void TestDevice::Disable() {
  Cc cc{Reg32(kRegCc)};
  cc.set_en(0);
  SetReg32(kRegCc, cc.raw);
  EXPECT_TRUE(WaitReady(false));
  sqs_.clear();
  cqs_.clear();
}

void TestDevice::WriteDoorbell(uint32_t index, uint32_t value) {
  std::atomic_ref<uint32_t>(reinterpret_cast<uint32_t*>(doorbells_.data())[index])
      .store(value, std::memory_order_release);
}

void TestDevice::RingSq(QueueState& sq) { WriteDoorbell(2u * sq.qid, sq.tail); }
void TestDevice::RingCq(QueueState& cq) { WriteDoorbell(2u * cq.qid + 1, cq.head); }

void TestDevice::Submit(QueueState& sq, const Sqe& sqe, bool ring) {
  std::memcpy(sq.mem.ptr + uint64_t{sq.tail} * sizeof(Sqe), &sqe, sizeof(Sqe));
  sq.tail = static_cast<uint16_t>((sq.tail + 1) % sq.size);
  if (ring) RingSq(sq);
}

std::optional<Cqe> TestDevice::WaitCqe(QueueState& cq, std::chrono::milliseconds timeout, bool ring) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  uint8_t* slot = cq.mem.ptr + uint64_t{cq.head} * sizeof(Cqe);
  for (;;) {
    uint16_t status = std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(slot + offsetof(Cqe, status)))
                          .load(std::memory_order_acquire);
    if ((status & 1) == cq.phase) break;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  Cqe cqe;
  std::memcpy(&cqe, slot, sizeof(cqe));
  if (++cq.head == cq.size) {
    cq.head = 0;
    cq.phase ^= 1;
  }
  if (ring) RingCq(cq);
  return cqe;
}

std::optional<Cqe> TestDevice::Admin(Sqe sqe) {
  if (sqe.cid == 0) sqe.cid = NextCid();
  Submit(sqs_.at(0), sqe);
  auto cqe = WaitCqe(cqs_.at(0));
  if (cqe) {
    EXPECT_EQ(cqe->cid, sqe.cid);
  }
  return cqe;
}

std::optional<Cqe> TestDevice::Io(uint16_t qid, Sqe sqe) {
  if (sqe.cid == 0) sqe.cid = NextCid();
  QueueState& sq = sqs_.at(qid);
  Submit(sq, sqe);
  auto cqe = WaitCqe(cqs_.at(qid));
  if (cqe) {
    EXPECT_EQ(cqe->cid, sqe.cid);
  }
  return cqe;
}

void TestDevice::CreateIoQueuePair(uint16_t qid, uint16_t entries) {
  QueueState cq;
  cq.qid = qid;
  cq.size = entries;
  cq.mem = mem_.Alloc(uint64_t{entries} * sizeof(Cqe));
  ASSERT_TRUE(IsSuccess(Admin(CreateCq(qid, entries, cq.mem.iova))));
  cqs_[qid] = cq;
  QueueState sq;
  sq.qid = qid;
  sq.size = entries;
  sq.mem = mem_.Alloc(uint64_t{entries} * sizeof(Sqe));
  ASSERT_TRUE(IsSuccess(Admin(CreateSq(qid, entries, sq.mem.iova, qid))));
  sqs_[qid] = sq;
}

Sqe AdminCmd(uint8_t opc, uint32_t nsid) {
  Sqe sqe;
  sqe.opc = opc;
  sqe.nsid = nsid;
  return sqe;
}

Sqe IoCmd(uint8_t opc, uint32_t nsid, uint64_t slba, uint32_t nlb) {
  Sqe sqe;
  sqe.opc = opc;
  sqe.nsid = nsid;
  sqe.cdw10 = static_cast<uint32_t>(slba);
  sqe.cdw11 = static_cast<uint32_t>(slba >> 32);
  sqe.cdw12 = (nlb - 1) & 0xFFFF;
  return sqe;
}

Sqe CreateCq(uint16_t qid, uint16_t entries, uint64_t prp1, bool pc, bool ien, uint16_t iv) {
  Sqe sqe = AdminCmd(admin::kCreateIoCq);
  sqe.prp1 = prp1;
  sqe.cdw10 = qid | (static_cast<uint32_t>(entries - 1) << 16);
  sqe.cdw11 = (pc ? 1u : 0u) | (ien ? 2u : 0u) | (static_cast<uint32_t>(iv) << 16);
  return sqe;
}

Sqe CreateSq(uint16_t qid, uint16_t entries, uint64_t prp1, uint16_t cqid, bool pc) {
  Sqe sqe = AdminCmd(admin::kCreateIoSq);
  sqe.prp1 = prp1;
  sqe.cdw10 = qid | (static_cast<uint32_t>(entries - 1) << 16);
  sqe.cdw11 = (pc ? 1u : 0u) | (static_cast<uint32_t>(cqid) << 16);
  return sqe;
}

std::string StatusString(const Cqe& cqe) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%x/%02x%s", cqe.sct(), cqe.sc(), cqe.dnr() ? " +D" : "");
  return buf;
}

::testing::AssertionResult HasStatus(const std::optional<Cqe>& cqe, uint8_t sct, uint8_t sc,
                                     std::optional<bool> dnr) {
  if (!cqe) return ::testing::AssertionFailure() << "no completion within the deadline";
  if (cqe->sct() != sct || cqe->sc() != sc || (dnr && cqe->dnr() != *dnr)) {
    char want[32];
    std::snprintf(want, sizeof(want), "%x/%02x%s", sct, sc, dnr ? (*dnr ? " +D" : " (no D)") : "");
    return ::testing::AssertionFailure() << "status " << StatusString(*cqe) << ", expected " << want;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult IsSuccess(const std::optional<Cqe>& cqe) { return HasStatus(cqe, 0, 0); }

}  // namespace nvmux::conformance
