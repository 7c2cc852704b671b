// CONFORMANCE.md "vfio-user": the server side of the protocol, including
// malformed and hostile messages.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "test/conformance/harness.h"

namespace nvmux::conformance {
namespace {

using namespace nvmux::vfiouser;

class VfioUserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dev_ = std::make_unique<TestDevice>();
    dev_->Start();
  }
  Client& client() { return dev_->client(); }
  // Sends bytes on the current connection and expects an error reply with errno.
  void ExpectError(Command cmd, std::span<const uint8_t> payload, int error_no, std::span<const int> fds = {}) {
    auto reply = client().Call(cmd, payload, fds);
    ASSERT_FALSE(reply) << ToString(cmd);
    EXPECT_EQ(reply.error().code, error_no) << ToString(cmd) << ": " << reply.error().ToString();
    EXPECT_FALSE(client().broken());
  }
  std::unique_ptr<TestDevice> dev_;
};

TEST_F(VfioUserTest, VersionCapabilities) {
  // VERSION again on the negotiated connection renegotiates.
  std::vector<uint8_t> payload;
  AppendStruct(payload, VersionPayload{0, 1});
  std::string json = R"({"capabilities":{"max_msg_fds":4}})";
  payload.insert(payload.end(), json.begin(), json.end());
  payload.push_back(0);
  auto reply = client().Call(Command::kVersion, payload);
  ASSERT_TRUE(reply) << reply.error().ToString();
  auto v = ReadStruct<VersionPayload>(reply->payload);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->major, 0);
  EXPECT_EQ(v->minor, 1);
  std::string text(reinterpret_cast<const char*>(reply->payload.data()) + 4, reply->payload.size() - 4);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\0');
  auto caps = ParseCapabilities(std::string_view(text.data(), text.size() - 1));
  ASSERT_TRUE(caps) << text;
  EXPECT_GE(caps->max_msg_fds, 1u);
  EXPECT_GE(caps->max_data_xfer_size, 4096u);
  EXPECT_EQ(caps->pgsizes & 4096, 4096u);
  EXPECT_GE(caps->max_dma_maps, 1u);
}

TEST_F(VfioUserTest, VersionErrors) {
  std::vector<uint8_t> payload;
  AppendStruct(payload, VersionPayload{1, 0});
  ExpectError(Command::kVersion, payload, ENOTSUP);
  payload.clear();
  AppendStruct(payload, VersionPayload{0, 1});
  std::string unterminated = "{}";
  std::vector<uint8_t> p2 = payload;
  p2.insert(p2.end(), unterminated.begin(), unterminated.end());
  ExpectError(Command::kVersion, p2, EINVAL);
  std::vector<uint8_t> p3 = payload;
  std::string bad = "{\"capabilities\":{\"max_msg_fds\":\"x\"}}";
  p3.insert(p3.end(), bad.begin(), bad.end());
  p3.push_back(0);
  ExpectError(Command::kVersion, p3, EINVAL);
  ExpectError(Command::kVersion, std::span<const uint8_t>(payload.data(), 2), EINVAL);
}

TEST_F(VfioUserTest, CommandBeforeVersionIsRejected) {
  // A raw connection that skips VERSION.
  dev_->Reconnect();
  auto raw = Client::Connect(dev_->dir() + "/sock");
  ASSERT_TRUE(raw);
  // The server serves one client: the second is closed, so its call fails
  // with ENXIO rather than hanging.
  auto info = (*raw)->GetDeviceInfo();
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code, ENXIO);
  EXPECT_TRUE((*raw)->broken());
  // Take over: drop the harness client, then the raw one skips VERSION.
  raw->reset();
  auto harness_fd = client().socket_fd();
  ::shutdown(harness_fd, SHUT_RDWR);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto second = Client::Connect(dev_->dir() + "/sock");
  ASSERT_TRUE(second);
  auto early = (*second)->GetDeviceInfo();
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error().code, EINVAL);
  EXPECT_FALSE((*second)->broken());
  ASSERT_TRUE((*second)->Negotiate());
  EXPECT_TRUE((*second)->GetDeviceInfo());
  second->reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  dev_->Reconnect();
}

TEST_F(VfioUserTest, DeviceInfo) {
  auto info = client().GetDeviceInfo();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->num_regions, kPciNumRegions);
  EXPECT_EQ(info->num_irqs, kPciNumIrqs);
  EXPECT_EQ(info->flags & (kDeviceFlagPci | kDeviceFlagReset), kDeviceFlagPci | kDeviceFlagReset);
  std::vector<uint8_t> short_payload(8, 0);
  ExpectError(Command::kDeviceGetInfo, short_payload, EINVAL);
}

// An mmap-able region offering exactly one sparse area [offset, offset + size).
void ExpectOneMmapArea(const RegionDescription& r, uint64_t offset, uint64_t size) {
  EXPECT_NE(r.flags & kRegionFlagMmap, 0u) << "region " << r.index;
  ASSERT_EQ(r.sparse_areas.size(), 1u) << "region " << r.index;
  EXPECT_EQ(r.sparse_areas[0].offset, offset) << "region " << r.index;
  EXPECT_EQ(r.sparse_areas[0].size, size) << "region " << r.index;
  EXPECT_TRUE(r.fd.valid()) << "region " << r.index;
}

TEST_F(VfioUserTest, RegionInfo) {
  auto bar0 = client().GetRegionInfo(kPciBar0Region);
  ASSERT_TRUE(bar0);
  EXPECT_GE(bar0->size, 16384u);
  ExpectOneMmapArea(*bar0, 0x1000, 0x1000);
  auto config = client().GetRegionInfo(kPciConfigRegion);
  ASSERT_TRUE(config);
  EXPECT_GE(config->size, 256u);
  EXPECT_EQ(config->flags & kRegionFlagMmap, 0u);
  // The MSI-X table (BAR4) is mmap-able as a whole, so a host masks a
  // vector with a store; the PBA (BAR5) is read by messages only.
  auto table = client().GetRegionInfo(kPciBar4Region);
  ASSERT_TRUE(table);
  EXPECT_GT(table->size, 0u);
  ExpectOneMmapArea(*table, 0, table->size);
  auto pba = client().GetRegionInfo(kPciBar5Region);
  ASSERT_TRUE(pba);
  EXPECT_GT(pba->size, 0u);
  EXPECT_EQ(pba->flags & kRegionFlagMmap, 0u);
  for (uint32_t idx : {1u, 2u, 3u, kPciRomRegion, kPciVgaRegion}) {
    auto r = client().GetRegionInfo(idx);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->size, 0u) << idx;
  }
  std::vector<uint8_t> payload;
  RegionInfo bad;
  bad.index = 9;
  AppendStruct(payload, bad);
  ExpectError(Command::kDeviceGetRegionInfo, payload, EINVAL);
}

TEST_F(VfioUserTest, RegionInfoSmallArgszReportsNeededSize) {
  std::vector<uint8_t> payload;
  RegionInfo req;
  req.index = kPciBar0Region;
  AppendStruct(payload, req);
  auto reply = client().Call(Command::kDeviceGetRegionInfo, payload);
  ASSERT_TRUE(reply);
  auto info = ReadStruct<RegionInfo>(reply->payload);
  ASSERT_TRUE(info);
  EXPECT_GT(info->argsz, sizeof(RegionInfo));
  EXPECT_EQ(reply->payload.size(), sizeof(RegionInfo));
}

TEST_F(VfioUserTest, DoorbellPageIsSharedMemory) {
  auto bar0 = client().GetRegionInfo(kPciBar0Region);
  ASSERT_TRUE(bar0);
  auto area = client().MapSparseArea(*bar0, 0);
  ASSERT_TRUE(area);
  reinterpret_cast<volatile uint32_t*>(area->data())[0] = 0;
  ASSERT_TRUE(client().Write32(kPciBar0Region, 0x1000, 0));  // SQ 0 absent: not stored
  auto v = client().Read32(kPciBar0Region, 0x1000);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, 0u);
}

TEST_F(VfioUserTest, Bar0FileSharesTheDoorbellPage) {
  // SPDK hosts map <dir>/bar0 at 0x1000 instead of using the sparse area.
  UniqueFd named(::open((dev_->dir() + "/sock/bar0").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(named.valid()) << std::strerror(errno);
  void* by_name = ::mmap(nullptr, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED, named.get(), 0x1000);
  ASSERT_NE(by_name, MAP_FAILED);
  auto bar0 = client().GetRegionInfo(kPciBar0Region);
  ASSERT_TRUE(bar0);
  auto area = client().MapSparseArea(*bar0, 0);
  ASSERT_TRUE(area);
  static_cast<volatile uint32_t*>(by_name)[2 * 3] = 0x1234;  // SQ 3 tail slot
  EXPECT_EQ(reinterpret_cast<volatile uint32_t*>(area->data())[2 * 3], 0x1234u);
  static_cast<volatile uint32_t*>(by_name)[2 * 3] = 0;
  ::munmap(by_name, 0x1000);
}

// The message shapes SPDK's vfio-user host sends (lib/vfio_user/host).
TEST_F(VfioUserTest, SpdkHostMessageShapes) {
  dev_->Reconnect();
  // VERSION with no capabilities string at all.
  std::vector<uint8_t> version;
  AppendStruct(version, VersionPayload{0, 1});
  ASSERT_TRUE(client().Call(Command::kVersion, version));
  // REGION_INFO whose argsz and payload are a whole 4 KiB buffer minus the struct.
  std::vector<uint8_t> info(4096 - sizeof(RegionInfo), 0);
  RegionInfo req;
  req.argsz = static_cast<uint32_t>(info.size());
  req.index = kPciBar0Region;
  std::memcpy(info.data(), &req, sizeof(req));
  auto reply = client().Call(Command::kDeviceGetRegionInfo, info);
  ASSERT_TRUE(reply) << reply.error().ToString();
  auto got = ReadStruct<RegionInfo>(reply->payload);
  ASSERT_TRUE(got);
  EXPECT_NE(got->cap_offset, 0u);
  EXPECT_EQ(reply->fds.size(), 1u);
  // DMA_MAP and DMA_UNMAP, both carrying the memory's fd.
  UniqueFd fd(::memfd_create("spdk-like", MFD_CLOEXEC));
  ASSERT_EQ(::ftruncate(fd.get(), 2 << 20), 0);
  ASSERT_TRUE(client().DmaMap(fd.get(), 0, 0x7f00'0000'0000ull, 2 << 20));
  std::vector<uint8_t> unmap;
  DmaUnmapPayload u;
  u.address = 0x7f00'0000'0000ull;
  u.size = 2 << 20;
  AppendStruct(unmap, u);
  int fds[1] = {fd.get()};
  EXPECT_TRUE(client().Call(Command::kDmaUnmap, unmap, fds));
}

TEST_F(VfioUserTest, ConfigSpace) {
  auto bytes = client().ReadRegion(kPciConfigRegion, 0, 64);
  ASSERT_TRUE(bytes);
  const auto& c = *bytes;
  EXPECT_NE(c[0] | (c[1] << 8), 0xFFFF);
  EXPECT_EQ(c[0x09], 0x02);  // prog-if NVMe
  EXPECT_EQ(c[0x0A], 0x08);  // subclass NVM
  EXPECT_EQ(c[0x0B], 0x01);  // mass storage
  EXPECT_EQ(c[0x10] & 0x7, 0x4);  // BAR0: 64-bit memory
  // The host writes 0x404 to the command register (memory off, bus master, INTx disable).
  ASSERT_TRUE(client().WriteRegion(kPciConfigRegion, 4, std::vector<uint8_t>{0x04, 0x04}));
  auto cmd = client().ReadRegion(kPciConfigRegion, 4, 2);
  ASSERT_TRUE(cmd);
  EXPECT_EQ((*cmd)[0] | ((*cmd)[1] << 8), 0x404);
  // BAR0 sizing.
  ASSERT_TRUE(client().Write32(kPciConfigRegion, 0x10, 0xFFFFFFFF));
  auto size_mask = client().Read32(kPciConfigRegion, 0x10);
  ASSERT_TRUE(size_mask);
  EXPECT_EQ(*size_mask & ~0xFu, ~(16384u - 1) & ~0xFu);
  // Capabilities: MSI-X pointing at BAR4/BAR5.
  uint8_t cap = c[0x34];
  bool msix = false;
  for (int hops = 0; cap != 0 && hops < 16; ++hops) {
    auto hdr = client().ReadRegion(kPciConfigRegion, cap, 12);
    ASSERT_TRUE(hdr);
    if ((*hdr)[0] == 0x11) {
      msix = true;
      EXPECT_EQ((*hdr)[4] & 0x7, 4);
      EXPECT_EQ((*hdr)[8] & 0x7, 5);
    }
    cap = (*hdr)[1];
  }
  EXPECT_TRUE(msix);
  auto beyond = client().ReadRegion(kPciConfigRegion, 4095, 2);
  ASSERT_FALSE(beyond);
  EXPECT_EQ(beyond.error().code, EINVAL);
}

TEST_F(VfioUserTest, IrqInfoAndSetIrqsErrors) {
  auto msix = client().GetIrqInfo(kPciMsixIrq);
  ASSERT_TRUE(msix);
  EXPECT_GE(msix->count, 2u);
  EXPECT_NE(msix->flags & kIrqInfoEventfd, 0u);
  auto intx = client().GetIrqInfo(kPciIntxIrq);
  ASSERT_TRUE(intx);
  EXPECT_EQ(intx->count, 1u);
  // The error IRQ (QEMU wires it for AER recovery): one, never raised.
  auto err = client().GetIrqInfo(kPciErrIrq);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->count, 1u);
  EXPECT_NE(err->flags & kIrqInfoEventfd, 0u);
  auto req = client().GetIrqInfo(kPciReqIrq);
  ASSERT_TRUE(req);
  EXPECT_EQ(req->count, 0u);
  auto bad = client().GetIrqInfo(7);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, EINVAL);
  UniqueFd efd(::eventfd(0, EFD_CLOEXEC));
  int fds[1] = {efd.get()};
  // fd count must match count; vectors must exist; one data and one action flag.
  Status s = client().SetIrqs(kPciMsixIrq, kIrqSetDataEventfd | kIrqSetActionTrigger, 0, 2, fds);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, EINVAL);
  s = client().SetIrqs(kPciMsixIrq, kIrqSetDataEventfd | kIrqSetActionTrigger, msix->count, 1, fds);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, EINVAL);
  s = client().SetIrqs(kPciMsixIrq, kIrqSetDataEventfd | kIrqSetDataBool | kIrqSetActionTrigger, 0, 1, fds);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, EINVAL);
  EXPECT_TRUE(client().SetIrqs(kPciMsixIrq, kIrqSetDataEventfd | kIrqSetActionTrigger, 0, 1, fds));
  EXPECT_TRUE(client().SetIrqs(kPciMsixIrq, kIrqSetDataNone | kIrqSetActionTrigger, 0, 0));
  EXPECT_TRUE(client().SetIrqs(kPciIntxIrq, kIrqSetDataEventfd | kIrqSetActionTrigger, 0, 1, fds));
  EXPECT_TRUE(client().SetIrqs(kPciErrIrq, kIrqSetDataEventfd | kIrqSetActionTrigger, 0, 1, fds));
}

// QEMU sends the MSI-X vectors it has no eventfd for as DATA_EVENTFD with
// count N and no fds (its -1 entries): those vectors are de-assigned.
TEST_F(VfioUserTest, SetIrqsEventfdWithoutFdsClearsVectors) {
  UniqueFd a(::eventfd(0, EFD_CLOEXEC)), b(::eventfd(0, EFD_CLOEXEC));
  int fds[2] = {a.get(), b.get()};
  ASSERT_TRUE(client().SetIrqs(kPciMsixIrq, kIrqSetDataEventfd | kIrqSetActionTrigger, 0, 2, fds));
  EXPECT_EQ(dev_->emulator().controller().client_state().msix_fds, 2u);
  ASSERT_TRUE(client().SetIrqs(kPciMsixIrq, kIrqSetDataEventfd | kIrqSetActionTrigger, 1, 3, {}));
  EXPECT_EQ(dev_->emulator().controller().client_state().msix_fds, 1u);
  Status s = client().SetIrqs(kPciMsixIrq, kIrqSetDataEventfd | kIrqSetActionTrigger, 0, 1000000, {});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, EINVAL);
  dev_->Reconnect();
  EXPECT_EQ(dev_->emulator().controller().client_state().msix_fds, 0u);
}

TEST_F(VfioUserTest, DmaMapErrors) {
  UniqueFd fd(::memfd_create("dma", MFD_CLOEXEC));
  ASSERT_EQ(::ftruncate(fd.get(), 1 << 20), 0);
  const uint64_t base = 0x40'0000'0000ull;
  ASSERT_TRUE(client().DmaMap(fd.get(), 0, base, 1 << 20));
  // Overlap (the harness maps DmaMemory at kIova as well).
  Status s = client().DmaMap(fd.get(), 0, base + 4096, 4096);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, EEXIST);
  s = client().DmaMap(fd.get(), 0, base - 4096, 8192);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, EEXIST);
  // Beyond the end of the file; unaligned; zero size.
  for (auto [off, iova, size, expect] :
       {std::tuple<uint64_t, uint64_t, uint64_t, int>{1 << 20, base + (2 << 20), 4096, EINVAL},
        {0, base + (2 << 20) + 12, 4096, EINVAL},
        {0, base + (2 << 20), 0, EINVAL}}) {
    s = client().DmaMap(fd.get(), off, iova, size);
    ASSERT_FALSE(s) << iova;
    EXPECT_EQ(s.error().code, expect);
  }
  // Unmap must name an existing mapping exactly.
  s = client().DmaUnmap(base, 4096);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ENOENT);
  EXPECT_TRUE(client().DmaUnmap(base, 1 << 20));
  s = client().DmaUnmap(base, 1 << 20);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ENOENT);
  // After the unmap the range is free again.
  EXPECT_TRUE(client().DmaMap(fd.get(), 0, base + 4096, 4096));
}

// A client that serves memory it did not share: answers the server's
// DMA_READ / DMA_WRITE requests on the test client's connection from a
// buffer standing for the fd-less region [base, base + size), on a thread,
// until destroyed. The test makes no Call() on the connection meanwhile
// (the harness rings doorbells through the mmapped page). Modes other than
// kServe answer wrongly, to check the server's handling of bad replies.
class FdlessHost {
 public:
  enum class Mode { kServe, kSilent, kErrorReply, kShortRead, kWrongAddress, kWrongCommand };
  FdlessHost(Client& client, uint64_t base, size_t size, Mode mode = Mode::kServe)
      : client_(client), base_(base), memory_(size, 0), mode_(mode), stop_(::eventfd(0, EFD_CLOEXEC)) {
    thread_ = std::thread([this] { Serve(); });
  }
  ~FdlessHost() {
    uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof(one));
    thread_.join();
  }
  void Fill(uint64_t iova, std::span<const uint8_t> bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::memcpy(memory_.data() + (iova - base_), bytes.data(), bytes.size());
  }
  std::vector<uint8_t> Bytes(uint64_t iova, size_t n) {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::vector<uint8_t>(memory_.begin() + static_cast<ptrdiff_t>(iova - base_),
                                memory_.begin() + static_cast<ptrdiff_t>(iova - base_ + n));
  }
  int reads() const { return reads_.load(); }
  int writes() const { return writes_.load(); }
  // Requests that were not well-formed or fell outside the region.
  int bad_requests() const { return bad_.load(); }

 private:
  void Serve() {
    for (;;) {
      auto msg = client_.ReceiveRequest(100, stop_.get());
      if (!msg) {
        if (msg.error().code == ETIMEDOUT) continue;
        return;  // stopping (ECANCELED) or the connection went
      }
      const auto cmd = static_cast<Command>(msg->header.cmd);
      auto rw = ReadStruct<DmaRw>(msg->payload);
      const bool is_read = cmd == Command::kDmaRead, is_write = cmd == Command::kDmaWrite;
      if (!rw || (!is_read && !is_write) || rw->address < base_ || rw->count > memory_.size() ||
          rw->address - base_ > memory_.size() - rw->count ||
          msg->payload.size() != sizeof(DmaRw) + (is_write ? rw->count : 0)) {
        ++bad_;
        (void)client_.SendReply(msg->header, {}, EINVAL);
        continue;
      }
      (is_read ? reads_ : writes_)++;
      const size_t off = static_cast<size_t>(rw->address - base_), n = static_cast<size_t>(rw->count);
      std::vector<uint8_t> reply;
      AppendStruct(reply, *rw);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (is_write && mode_ == Mode::kServe) {
          std::memcpy(memory_.data() + off, msg->payload.data() + sizeof(DmaRw), n);
        }
        if (is_read) reply.insert(reply.end(), memory_.begin() + static_cast<ptrdiff_t>(off),
                                  memory_.begin() + static_cast<ptrdiff_t>(off + n));
      }
      Header answered = msg->header;
      switch (mode_) {
        case Mode::kServe: break;
        case Mode::kSilent: continue;
        case Mode::kErrorReply: (void)client_.SendReply(answered, {}, EFAULT); continue;
        case Mode::kShortRead: reply.resize(reply.size() - 1); break;
        case Mode::kWrongAddress: std::memcpy(reply.data(), &(rw->address += 4096), 8); break;
        case Mode::kWrongCommand:
          answered.cmd = static_cast<uint16_t>(is_read ? Command::kDmaWrite : Command::kDmaRead);
          break;
      }
      (void)client_.SendReply(answered, reply);
    }
  }

  Client& client_;
  const uint64_t base_;
  std::mutex mutex_;
  std::vector<uint8_t> memory_;
  const Mode mode_;
  UniqueFd stop_;
  std::atomic<int> reads_{0}, writes_{0}, bad_{0};
  std::thread thread_;
};

constexpr uint64_t kRom = 0x50'0000'0000ull;

// The spec's fd-less DMA regions (QEMU maps its BIOS ROM so): accepted,
// checked and unmapped like any other.
TEST_F(VfioUserTest, FdlessDmaRegions) {
  const uint64_t rom = kRom;
  ASSERT_TRUE(client().DmaMap(-1, 0, rom, 64 << 10, kDmaFlagRead));
  EXPECT_EQ(dev_->emulator().controller().client_state().fdless_maps, 1u);
  // Same checks as with an fd: overlap, alignment, size.
  UniqueFd fd(::memfd_create("dma", MFD_CLOEXEC));
  ASSERT_EQ(::ftruncate(fd.get(), 1 << 20), 0);
  for (auto [iova, size, expect] : {std::tuple<uint64_t, uint64_t, int>{rom + 4096, 4096, EEXIST},
                                    {rom + (1 << 20) + 12, 4096, EINVAL},
                                    {rom + (1 << 20), 0, EINVAL}}) {
    Status s = client().DmaMap(-1, 0, iova, size);
    ASSERT_FALSE(s) << iova;
    EXPECT_EQ(s.error().code, expect) << iova;
  }
  Status s = client().DmaMap(fd.get(), 0, rom - 4096, 8192);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, EEXIST);
  // The region is read-only for the device: a Read into it is refused
  // without any message (Data Transfer Error), as for shared memory.
  ASSERT_TRUE(dev_->Enable());
  dev_->CreateIoQueuePair(1, 16);
  spec::Sqe read = IoCmd(spec::nvm::kRead, 1, 0, 1);
  read.prp1 = rom;
  EXPECT_TRUE(HasStatus(dev_->Io(1, read), spec::sct::kGeneric, spec::sc::kDataTransferError));
  EXPECT_TRUE(IsSuccess(dev_->Io(1, IoCmd(spec::nvm::kFlush, 1, 0, 1))));
  // Unmap names it exactly, once.
  s = client().DmaUnmap(rom, 4096);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ENOENT);
  EXPECT_TRUE(client().DmaUnmap(rom, 64 << 10));
  s = client().DmaUnmap(rom, 64 << 10);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ENOENT);
  EXPECT_EQ(dev_->emulator().controller().client_state().fdless_maps, 0u);
  // A disconnect forgets fd-less regions too.
  ASSERT_TRUE(client().DmaMap(-1, 0, rom, 4096));
  dev_->Reconnect();
  EXPECT_EQ(dev_->emulator().controller().client_state().fdless_maps, 0u);
  EXPECT_TRUE(client().DmaMap(-1, 0, rom, 4096));
}

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 9));
  return v;
}

// Command data in an fd-less region moves by DMA_READ (host -> device) and
// DMA_WRITE (device -> host), answered by the client; PRP lists there are
// fetched too.
TEST_F(VfioUserTest, FdlessDataServedByDmaReadWrite) {
  ASSERT_TRUE(client().DmaMap(-1, 0, kRom, 64 << 10, kDmaFlagRead | kDmaFlagWrite));
  ASSERT_TRUE(dev_->Enable());
  dev_->CreateIoQueuePair(1, 16);
  DmaMemory::Buffer shared = dev_->mem().Alloc(16 << 10);
  FdlessHost host(client(), kRom, 64 << 10);
  // Write 1 block from the region, read it back into shared memory.
  const std::vector<uint8_t> one = Pattern(512, 3);
  host.Fill(kRom + 0x100, one);
  spec::Sqe write = IoCmd(spec::nvm::kWrite, 1, 10, 1);
  write.prp1 = kRom + 0x100;
  EXPECT_TRUE(IsSuccess(dev_->Io(1, write)));
  EXPECT_GE(host.reads(), 1);
  spec::Sqe check = IoCmd(spec::nvm::kRead, 1, 10, 1);
  check.prp1 = shared.iova;
  ASSERT_TRUE(IsSuccess(dev_->Io(1, check)));
  EXPECT_EQ(std::memcmp(shared.ptr, one.data(), one.size()), 0) << "the bytes the client served were stored";

  // 12 KiB (24 blocks) whose PRP list lies in the region, data pages in
  // the region (two) and in shared memory (one).
  const std::vector<uint8_t> big = Pattern(12 << 10, 11);
  host.Fill(kRom + 0x2000, std::span(big).subspan(0, 4096));
  host.Fill(kRom + 0x5000, std::span(big).subspan(4096, 4096));
  std::memcpy(shared.ptr + 0x1000, big.data() + 8192, 4096);
  const uint64_t list[2] = {kRom + 0x5000, shared.iova + 0x1000};
  host.Fill(kRom + 0x8000, std::span(reinterpret_cast<const uint8_t*>(list), sizeof(list)));
  write = IoCmd(spec::nvm::kWrite, 1, 100, 24);
  write.prp1 = kRom + 0x2000;
  write.prp2 = kRom + 0x8000;
  EXPECT_TRUE(IsSuccess(dev_->Io(1, write)));
  std::memset(shared.ptr, 0, 16 << 10);
  check = IoCmd(spec::nvm::kRead, 1, 100, 24);
  check.prp1 = shared.iova;
  check.prp2 = shared.iova + 0x1000;
  // Three pages of shared memory: a PRP list there.
  DmaMemory::Buffer lst = dev_->mem().Alloc(4096);
  const uint64_t list2[2] = {shared.iova + 0x1000, shared.iova + 0x2000};
  std::memcpy(lst.ptr, list2, sizeof(list2));
  check.prp2 = lst.iova;
  ASSERT_TRUE(IsSuccess(dev_->Io(1, check)));
  EXPECT_EQ(std::memcmp(shared.ptr, big.data(), big.size()), 0);

  // Read into the region: arrives by DMA_WRITE, with the right bytes.
  spec::Sqe read = IoCmd(spec::nvm::kRead, 1, 100, 24);
  read.prp1 = kRom + 0x2000;
  read.prp2 = kRom + 0x8000;  // the same list: pages kRom+0x5000 and shared+0x1000
  std::memset(shared.ptr + 0x1000, 0, 4096);
  host.Fill(kRom + 0x2000, std::vector<uint8_t>(4096, 0));
  host.Fill(kRom + 0x5000, std::vector<uint8_t>(4096, 0));
  EXPECT_TRUE(IsSuccess(dev_->Io(1, read)));
  EXPECT_GE(host.writes(), 2);
  EXPECT_EQ(host.Bytes(kRom + 0x2000, 4096), std::vector<uint8_t>(big.begin(), big.begin() + 4096));
  EXPECT_EQ(host.Bytes(kRom + 0x5000, 4096), std::vector<uint8_t>(big.begin() + 4096, big.begin() + 8192));
  EXPECT_EQ(std::memcmp(shared.ptr + 0x1000, big.data() + 8192, 4096), 0);

  // Identify Controller into the region, as into shared memory.
  spec::Sqe identify = AdminCmd(spec::admin::kIdentify);
  identify.cdw10 = spec::cns::kController;
  identify.prp1 = shared.iova;
  ASSERT_TRUE(IsSuccess(dev_->Admin(identify)));
  const std::vector<uint8_t> expected(shared.ptr, shared.ptr + 4096);
  identify.prp1 = kRom + 0xA000;
  ASSERT_TRUE(IsSuccess(dev_->Admin(identify)));
  EXPECT_EQ(host.Bytes(kRom + 0xA000, 4096), expected);

  // Compare reads its data by DMA_READ too.
  spec::Sqe compare = IoCmd(spec::nvm::kCompare, 1, 10, 1);
  host.Fill(kRom + 0xC000, one);
  compare.prp1 = kRom + 0xC000;
  EXPECT_TRUE(IsSuccess(dev_->Io(1, compare)));
  host.Fill(kRom + 0xC000, Pattern(512, 99));
  EXPECT_TRUE(HasStatus(dev_->Io(1, compare), spec::sct::kMediaError, spec::sc::kCompareFailure));
  EXPECT_EQ(host.bad_requests(), 0);
}

// A client that never answers: the command completes with Data Transfer
// Error after the server's reply timeout, and the emulator keeps serving
// (registers by message while it waited, the connection, other commands).
TEST_F(VfioUserTest, FdlessDmaWithoutReplyFailsTheCommand) {
  ASSERT_TRUE(client().DmaMap(-1, 0, kRom, 64 << 10, kDmaFlagRead | kDmaFlagWrite));
  ASSERT_TRUE(dev_->Enable());
  dev_->CreateIoQueuePair(1, 16);
  auto& io_sq = dev_->sq(1);
  auto& io_cq = dev_->cq(1);
  {
    FdlessHost host(client(), kRom, 64 << 10, FdlessHost::Mode::kSilent);
    spec::Sqe write = IoCmd(spec::nvm::kWrite, 1, 0, 1);
    write.cid = 0x77;
    write.prp1 = kRom;
    dev_->Submit(io_sq, write);
    auto cqe = dev_->WaitCqe(io_cq, std::chrono::milliseconds(emu::Server::kDmaReplyTimeoutMs * 4));
    ASSERT_TRUE(HasStatus(cqe, spec::sct::kGeneric, spec::sc::kDataTransferError));
    EXPECT_EQ(cqe->cid, 0x77);
    EXPECT_EQ(host.reads(), 1);
  }
  EXPECT_TRUE(client().GetDeviceInfo());
  EXPECT_EQ(dev_->Csts().cfs(), 0);
  DmaMemory::Buffer shared = dev_->mem().Alloc(4096);
  spec::Sqe read = IoCmd(spec::nvm::kRead, 1, 0, 1);
  read.prp1 = shared.iova;
  EXPECT_TRUE(IsSuccess(dev_->Io(1, read)));
}

// While the poller waits for a DMA_READ reply, register accesses by
// message are still answered (no deadlock on the controller lock).
TEST_F(VfioUserTest, FdlessDmaWaitDoesNotBlockRegisterAccess) {
  ASSERT_TRUE(client().DmaMap(-1, 0, kRom, 64 << 10, kDmaFlagRead | kDmaFlagWrite));
  ASSERT_TRUE(dev_->Enable());
  dev_->CreateIoQueuePair(1, 16);
  // Serve by hand: submit, take the DMA_READ, then read CSTS and write
  // INTMS by message before answering it.
  spec::Sqe write = IoCmd(spec::nvm::kWrite, 1, 0, 1);
  write.prp1 = kRom;
  dev_->Submit(dev_->sq(1), write);
  auto request = client().ReceiveRequest(5000);
  ASSERT_TRUE(request) << request.error().ToString();
  ASSERT_EQ(request->header.cmd, static_cast<uint16_t>(Command::kDmaRead));
  EXPECT_EQ(dev_->Csts().rdy(), 1);
  dev_->SetReg32(spec::kRegIntms, 1);
  dev_->SetReg32(spec::kRegIntmc, 1);
  auto rw = ReadStruct<DmaRw>(request->payload);
  ASSERT_TRUE(rw);
  EXPECT_EQ(rw->address, kRom);
  EXPECT_EQ(rw->count, 512u);
  std::vector<uint8_t> reply;
  AppendStruct(reply, *rw);
  const std::vector<uint8_t> data = Pattern(512, 5);
  reply.insert(reply.end(), data.begin(), data.end());
  ASSERT_TRUE(client().SendReply(request->header, reply));
  EXPECT_TRUE(IsSuccess(dev_->WaitCqe(dev_->cq(1))));
}

// Malformed replies (error flag, short data, wrong address, wrong command)
// fail the command with Data Transfer Error; the server does not crash or
// drop the client.
TEST_F(VfioUserTest, FdlessDmaBadRepliesFailTheCommand) {
  ASSERT_TRUE(client().DmaMap(-1, 0, kRom, 64 << 10, kDmaFlagRead | kDmaFlagWrite));
  ASSERT_TRUE(dev_->Enable());
  dev_->CreateIoQueuePair(1, 16);
  for (auto mode : {FdlessHost::Mode::kErrorReply, FdlessHost::Mode::kShortRead, FdlessHost::Mode::kWrongAddress,
                    FdlessHost::Mode::kWrongCommand}) {
    FdlessHost host(client(), kRom, 64 << 10, mode);
    for (uint8_t opc : {spec::nvm::kWrite, spec::nvm::kRead}) {
      spec::Sqe sqe = IoCmd(opc, 1, 0, 1);
      sqe.prp1 = kRom + 0x1000;
      // Within the reply timeout: the bad reply is refused at once.
      dev_->Submit(dev_->sq(1), sqe);
      auto cqe = dev_->WaitCqe(dev_->cq(1), std::chrono::milliseconds(emu::Server::kDmaReplyTimeoutMs * 4));
      EXPECT_TRUE(HasStatus(cqe, spec::sct::kGeneric, spec::sc::kDataTransferError))
          << static_cast<int>(mode) << " opc " << int{opc};
    }
    // One request each way was sent (and answered wrongly), no retry.
    EXPECT_EQ(host.reads(), 1) << static_cast<int>(mode);
    EXPECT_EQ(host.writes(), 1) << static_cast<int>(mode);
  }
  EXPECT_TRUE(client().GetDeviceInfo());
  EXPECT_FALSE(client().broken());
  EXPECT_EQ(dev_->Csts().cfs(), 0);
  // A reply to nothing we asked is still an error reply.
  std::vector<uint8_t> rw(16, 0);
  auto stray = client().Call(Command::kDmaRead, rw, {}, kFlagTypeReply);
  ASSERT_FALSE(stray);
  EXPECT_EQ(stray.error().code, EINVAL);
  EXPECT_TRUE(client().GetDeviceInfo());
}

// Queues in an fd-less region stay refused: CSTS.CFS.
TEST_F(VfioUserTest, FdlessQueuesAreFatal) {
  ASSERT_TRUE(client().DmaMap(-1, 0, kRom, 64 << 10, kDmaFlagRead | kDmaFlagWrite));
  ASSERT_TRUE(dev_->Enable());
  EXPECT_TRUE(IsSuccess(dev_->Admin(CreateCq(1, 16, kRom))));
  EXPECT_TRUE(IsSuccess(dev_->Admin(CreateSq(1, 16, kRom + 0x1000, 1))));
  dev_->WriteDoorbell(2, 1);  // SQ 1 tail: the entry lies in the region
  bool cfs = false;
  for (int i = 0; i < 2000 && !cfs; ++i) {
    cfs = dev_->Csts().cfs() != 0;
    if (!cfs) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(cfs);
}

// QEMU's client asks for region info with argsz = sizeof(RegionInfo) first
// and refuses a reply whose CAPS flag points outside what it sent.
TEST_F(VfioUserTest, RegionInfoShortArgszHasNoCapsOutsideIt) {
  for (uint32_t idx = 0; idx < kPciNumRegions; ++idx) {
    std::vector<uint8_t> payload;
    RegionInfo req;
    req.index = idx;
    AppendStruct(payload, req);
    auto reply = client().Call(Command::kDeviceGetRegionInfo, payload);
    ASSERT_TRUE(reply) << idx;
    auto info = ReadStruct<RegionInfo>(reply->payload);
    ASSERT_TRUE(info) << idx;
    if ((info->flags & kRegionFlagCaps) != 0) {
      EXPECT_GE(info->cap_offset, sizeof(RegionInfo)) << idx;
      EXPECT_LE(info->cap_offset, req.argsz) << idx;
    }
  }
}

TEST_F(VfioUserTest, MalformedRequestsGetErrorReplies) {
  const std::vector<uint8_t> tiny(3, 0);
  for (Command cmd : {Command::kDmaMap, Command::kDmaUnmap, Command::kDeviceGetInfo, Command::kDeviceGetRegionInfo,
                      Command::kDeviceGetIrqInfo, Command::kDeviceSetIrqs, Command::kRegionRead,
                      Command::kRegionWrite}) {
    ExpectError(cmd, tiny, EINVAL);
  }
  // REGION_WRITE whose count disagrees with the payload.
  std::vector<uint8_t> w;
  AppendStruct(w, RegionAccess{0x14, kPciBar0Region, 8});
  w.resize(w.size() + 4);
  ExpectError(Command::kRegionWrite, w, EINVAL);
  // Reads past a region's end, into absent regions, oversize counts.
  std::vector<uint8_t> r;
  AppendStruct(r, RegionAccess{16380, kPciBar0Region, 8});
  ExpectError(Command::kRegionRead, r, EINVAL);
  r.clear();
  AppendStruct(r, RegionAccess{0, 2, 4});
  ExpectError(Command::kRegionRead, r, EINVAL);
  r.clear();
  AppendStruct(r, RegionAccess{0, 200, 4});
  ExpectError(Command::kRegionRead, r, EINVAL);
  r.clear();
  AppendStruct(r, RegionAccess{0, kPciConfigRegion, 0});
  ExpectError(Command::kRegionRead, r, EINVAL);
  r.clear();
  AppendStruct(r, RegionAccess{~0ull - 2, kPciConfigRegion, 4});
  ExpectError(Command::kRegionRead, r, EINVAL);
  // Unsupported and unknown commands.
  ExpectError(Command::kDmaRead, tiny, ENOTSUP);
  ExpectError(Command::kDirtyPages, tiny, ENOTSUP);
  ExpectError(static_cast<Command>(99), tiny, ENOSYS);
  // A "reply" sent as a request.
  auto reply = client().Call(Command::kDeviceGetInfo, std::vector<uint8_t>(16, 0), {}, kFlagTypeReply);
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code, EINVAL);
  // Still serving.
  EXPECT_TRUE(client().GetDeviceInfo());
}

TEST_F(VfioUserTest, OversizedMessageIsRefusedAndStreamContinues) {
  std::vector<uint8_t> huge(kMaxMessageSize + 1024, 0);
  auto reply = client().Call(Command::kRegionWrite, huge);
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code, E2BIG);
  EXPECT_FALSE(client().broken());
  EXPECT_TRUE(client().GetDeviceInfo());
}

TEST_F(VfioUserTest, TooManyFdsAreRefusedAndClosed) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd rd(pipe_fds[0]), wr(pipe_fds[1]);
  std::vector<int> fds(12, wr.get());
  std::vector<uint8_t> payload;
  AppendStruct(payload, DmaMapPayload{});
  ExpectError(Command::kDmaMap, payload, EINVAL, fds);
  // Fds passed to a command that takes none are closed too.
  std::vector<uint8_t> info(16, 0);
  reinterpret_cast<uint32_t*>(info.data())[0] = 16;
  int one[1] = {wr.get()};
  ASSERT_TRUE(client().Call(Command::kDeviceGetInfo, info, one));
  wr.Reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  char c;
  EXPECT_EQ(::read(rd.get(), &c, 1), 0) << "the server kept a copy of the fd";
}

TEST_F(VfioUserTest, NoReplyFlag) {
  std::vector<uint8_t> payload;
  AppendStruct(payload, RegionAccess{spec::kRegAqa, kPciBar0Region, 4});
  uint32_t v = 0x00070007;
  payload.insert(payload.end(), reinterpret_cast<uint8_t*>(&v), reinterpret_cast<uint8_t*>(&v) + 4);
  Header h;
  h.cmd = static_cast<uint16_t>(Command::kRegionWrite);
  h.flags = kFlagNoReply;
  ASSERT_TRUE(SendMessage(client().socket_fd(), h, payload));
  auto aqa = client().Read32(kPciBar0Region, spec::kRegAqa);
  ASSERT_TRUE(aqa) << aqa.error().ToString();
  EXPECT_EQ(*aqa, 0x00070007u);
}

TEST_F(VfioUserTest, SizeBelowHeaderDropsOnlyThatClient) {
  Header h;
  h.cmd = static_cast<uint16_t>(Command::kDeviceGetInfo);
  h.msg_size = 4;
  auto reply = client().CallRaw(h, {});
  ASSERT_FALSE(reply);
  dev_->Reconnect();
  EXPECT_TRUE(client().GetDeviceInfo());
}

TEST_F(VfioUserTest, RandomGarbageNeverKillsTheServer) {
  std::mt19937 rng(1234);
  for (int round = 0; round < 40; ++round) {
    dev_->Reconnect();
    std::vector<uint8_t> junk(16 + rng() % 200);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    Header h;
    std::memcpy(&h, junk.data(), sizeof(h));
    h.msg_size = static_cast<uint32_t>(junk.size());  // framing intact, contents random
    h.cmd = static_cast<uint16_t>(1 + rng() % 14);
    h.flags = 0;
    if (h.cmd == static_cast<uint16_t>(Command::kDeviceReset) || h.cmd == static_cast<uint16_t>(Command::kVersion)) {
      continue;
    }
    (void)client().CallRaw(h, std::span<const uint8_t>(junk.data() + 16, junk.size() - 16));
  }
  // Raw unframed garbage: the server may drop that connection, nothing more.
  for (int round = 0; round < 10; ++round) {
    dev_->Reconnect();
    std::vector<uint8_t> junk(1 + rng() % 64);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    (void)::send(client().socket_fd(), junk.data(), junk.size(), MSG_NOSIGNAL);
  }
  dev_->Reconnect();
  EXPECT_TRUE(client().GetDeviceInfo());
  EXPECT_EQ(dev_->Reg32(spec::kRegVs), 0x00010400u);
}

TEST_F(VfioUserTest, DisconnectDropsDmaButKeepsControllerState) {
  ASSERT_TRUE(dev_->Enable());
  dev_->CreateIoQueuePair(1, 16);
  dev_->Reconnect();  // drops the maps, then maps DmaMemory again (would be EEXIST otherwise)
  EXPECT_EQ(dev_->Csts().rdy(), 1);
  // Queues survived: the admin queue still answers.
  EXPECT_TRUE(IsSuccess(dev_->Admin(AdminCmd(spec::admin::kKeepAlive))));
  spec::Sqe del = AdminCmd(spec::admin::kDeleteIoSq);
  del.cdw10 = 1;
  EXPECT_TRUE(IsSuccess(dev_->Admin(del)));
}

TEST_F(VfioUserTest, VanishedServerGivesEnxioNotAHang) {
  dev_->emulator().Stop();
  auto start = std::chrono::steady_clock::now();
  auto info = client().GetDeviceInfo();
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code, ENXIO);
  EXPECT_TRUE(client().broken());
  auto again = client().Read32(kPciBar0Region, 0);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ENXIO);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST_F(VfioUserTest, ConnectWithoutServer) {
  TempDir empty;
  auto c = Client::Connect(empty.path());
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ENOENT);
}

}  // namespace
}  // namespace nvmux::conformance
