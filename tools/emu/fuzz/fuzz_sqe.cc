// libFuzzer target: fuzzer-chosen submission-queue entries for an enabled
// nvmux-emu controller.
//
// Each input runs on a fresh Controller (so a crash reproduces from its
// input alone) driven in-process, without the socket: a memfd is DMA-mapped
// (read-write, plus a read-only window), the admin queue is enabled, one I/O
// queue pair (qid 1) is created, then the input is decoded as a sequence of
// records:
//
//   op & 7 = 0..2  an I/O SQE for SQ 1      [op][fixup][64 bytes]
//   op & 7 = 3     an admin SQE             [op][fixup][64 bytes]
//   op & 7 = 4     bytes into the data area [op][off lo][off hi][len][len bytes]
//   op & 7 = 5     a doorbell write         [op][index][value lo][value hi]
//                  (op & 0x10: by message, WriteDoorbell; else the page)
//   op & 7 = 6     a register write + read  [op][offset/4][8 value bytes]
//                  (op & 0x10: 8 bytes where aligned; else 4)
//   op & 7 = 7     ring every SQ and poll   [op]
//   op & 8         ring and poll after this record
//
// The fixup byte steers fields into places where the command gets past the
// first checks (PRPs into the data area, NSID 1, small transfers); with it 0
// the entry goes in untouched. After each poll the host drains the CQs it
// knows and moves their head doorbells. The input ends with a final ring and
// poll. The poller loop is bounded, so an input can never spin forever.
//
// Thread safety: libFuzzer calls LLVMFuzzerTestOneInput on one thread.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "nvmux/spec/nvme.h"
#include "shm/base/log.h"
#include "tools/emu/controller.h"
#include "tools/emu/options.h"

namespace {

using namespace nvmux;
using namespace nvmux::spec;

constexpr uint64_t kIova = 0x1'0000'0000ull;
constexpr uint64_t kDmaSize = 1ull << 20;        // read-write mapping at kIova
constexpr uint64_t kRoIova = 0x2'0000'0000ull;   // read-only window onto the data area
constexpr uint64_t kRoSize = 64ull << 10;
constexpr uint64_t kAsqOff = 0x0000;
constexpr uint64_t kAcqOff = 0x1000;
constexpr uint64_t kSq1Off = 0x2000;
constexpr uint64_t kCq1Off = 0x3000;
constexpr uint64_t kSpareOff = 0x4000;  // pages for queues the fuzzer creates
constexpr uint64_t kSpareSize = 0xC000;
constexpr uint64_t kDataOff = 0x10000;
constexpr uint64_t kDataSize = kDmaSize - kDataOff;
constexpr uint16_t kAdminEntries = 32;
constexpr uint16_t kIoEntries = 64;
constexpr int kMaxPolls = 512;

struct HostQueue {
  uint16_t qid = 0;
  uint16_t size = 0;
  uint64_t off = 0;    // within the memfd
  uint16_t tail = 0;   // SQ
  uint16_t head = 0;   // SQ: device head as last reported; CQ: next to read
  uint8_t phase = 1;   // CQ
};

// The process-wide pieces reused by every input: memfd and doorbell page.
struct Fixture {
  int fd = -1;
  uint8_t* mem = nullptr;
  uint32_t* doorbells = nullptr;

  Fixture() {
    SetLogLevel(LogLevel::kError);
    fd = ::memfd_create("nvmux-fuzz-dma", MFD_CLOEXEC);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(kDmaSize)) != 0) std::abort();
    void* p = ::mmap(nullptr, kDmaSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    void* d = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || d == MAP_FAILED) std::abort();
    mem = static_cast<uint8_t*>(p);
    doorbells = static_cast<uint32_t*>(d);
  }
};

Fixture& GetFixture() {
  static Fixture* f = new Fixture();  // lives for the process
  return *f;
}

// Reads bytes from the input; short reads give zeroes.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  uint8_t U8() { return pos_ < size_ ? data_[pos_++] : 0; }
  void Bytes(void* out, size_t n) {
    auto* o = static_cast<uint8_t*>(out);
    for (size_t i = 0; i < n; ++i) o[i] = U8();
  }
  size_t Take(size_t n) {  // how many of n bytes remain; advances over them
    size_t got = n < size_ - pos_ ? n : size_ - pos_;
    pos_ += got;
    return got;
  }
  const uint8_t* here() const { return data_ + pos_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

class Session {
 public:
  Session(Fixture& f, emu::Controller& ctrl) : f_(f), ctrl_(ctrl) {}

  bool Setup() {
    std::memset(f_.mem, 0, kDmaSize);
    std::memset(f_.doorbells, 0, 4096);
    if (Status s = ctrl_.MapDma(f_.fd, 0, kIova, kDmaSize, true, true); !s) {
      return Fail("DMA map", s.error().ToString());
    }
    if (Status s = ctrl_.MapDma(f_.fd, kDataOff, kRoIova, kRoSize, true, false); !s) {
      return Fail("read-only DMA map", s.error().ToString());
    }
    asq_ = {0, kAdminEntries, kAsqOff};
    acq_ = {0, kAdminEntries, kAcqOff};
    Aqa aqa;
    aqa.set_asqs(kAdminEntries - 1).set_acqs(kAdminEntries - 1);
    Cc cc;
    cc.set_en(1).set_iosqes(6).set_iocqes(4);
    if (!ctrl_.WriteRegister(kRegAqa, 4, aqa.raw) || !ctrl_.WriteRegister(kRegAsq, 8, kIova + kAsqOff) ||
        !ctrl_.WriteRegister(kRegAcq, 8, kIova + kAcqOff) || !ctrl_.WriteRegister(kRegCc, 4, cc.raw)) {
      return Fail("register write");
    }
    if (!Ready()) return Fail("enable");
    Sqe cq;
    cq.opc = admin::kCreateIoCq;
    cq.prp1 = kIova + kCq1Off;
    cq.cdw10 = 1u | (uint32_t{kIoEntries - 1} << 16);
    cq.cdw11 = 1;  // physically contiguous, no interrupts
    Sqe sq;
    sq.opc = admin::kCreateIoSq;
    sq.prp1 = kIova + kSq1Off;
    sq.cdw10 = 1u | (uint32_t{kIoEntries - 1} << 16);
    sq.cdw11 = 1u | (1u << 16);
    cq.cid = 0xFFF0;
    sq.cid = 0xFFF1;
    Submit(asq_, cq);
    RingAndPoll();
    Submit(asq_, sq);
    RingAndPoll();
    sq1_ = {1, kIoEntries, kSq1Off};
    cq1_ = {1, kIoEntries, kCq1Off};
    // Both creations completed, successfully.
    for (uint16_t i = 0; i < 2; ++i) {
      Cqe cqe;
      std::memcpy(&cqe, Ptr(kAcqOff + i * sizeof(Cqe)), sizeof(cqe));
      if (acq_.head != 2 || (cqe.status >> 1) != 0) return Fail("I/O queue creation");
    }
    return Ready() || Fail("I/O queue creation (CFS)");
  }

  void Run(Input& in) {
    while (!in.empty() && Ready()) {
      const uint8_t op = in.U8();
      switch (op & 7) {
        case 0:
        case 1:
        case 2:
        case 3: {
          const uint8_t fixup = in.U8();
          Sqe sqe;
          in.Bytes(&sqe, sizeof(sqe));
          FixUp(sqe, fixup, (op & 7) == 3);
          Submit((op & 7) == 3 ? asq_ : sq1_, sqe);
          break;
        }
        case 4: {
          uint64_t off = in.U8();
          off |= uint64_t{in.U8()} << 8;
          off = (off * 16) % kDataSize;
          size_t len = in.U8();
          const uint8_t* src = in.here();
          len = in.Take(len);
          if (off + len > kDataSize) len = kDataSize - off;
          std::memcpy(f_.mem + kDataOff + off, src, len);
          break;
        }
        case 5: {
          const uint32_t index = in.U8();
          uint32_t value = in.U8();
          value |= uint32_t{in.U8()} << 8;
          if ((op & 0x10) != 0) {
            ctrl_.WriteDoorbell(kDoorbellBase + index * 4, value);  // the trapped path
          } else {
            std::atomic_ref<uint32_t>(f_.doorbells[index]).store(value, std::memory_order_release);
          }
          break;
        }
        case 6: {
          const uint32_t offset = uint32_t{in.U8()} * 4 % kDoorbellBase;
          uint64_t value = 0;
          in.Bytes(&value, sizeof(value));
          const uint32_t size = (op & 0x10) != 0 && offset % 8 == 0 ? 8 : 4;
          (void)ctrl_.WriteRegister(offset, size, value);
          (void)ctrl_.ReadRegister(offset, size);
          break;
        }
        case 7:
          RingAndPoll();
          break;
      }
      if ((op & 8) != 0) RingAndPoll();
    }
    RingAndPoll();
  }

 private:
  uint8_t* Ptr(uint64_t off) { return f_.mem + off; }

  static bool Fail(const char* what, const std::string& detail = "") {
    std::fprintf(stderr, "fuzz_sqe: set-up failed: %s%s%s\n", what, detail.empty() ? "" : ": ", detail.c_str());
    return false;
  }

  // CSTS.RDY = 1 and CFS = 0 (Running() is only refreshed by Poll()).
  bool Ready() {
    auto csts = ctrl_.ReadRegister(kRegCsts, 4);
    return csts && Csts{static_cast<uint32_t>(*csts)}.rdy() != 0 && Csts{static_cast<uint32_t>(*csts)}.cfs() == 0;
  }

  void FixUp(Sqe& sqe, uint8_t fixup, bool is_admin) {
    if ((fixup & 0x01) != 0) sqe.prp1 = kIova + kDataOff + sqe.prp1 % kDataSize;
    if ((fixup & 0x02) != 0) sqe.prp2 = kIova + kDataOff + (sqe.prp2 % kDataSize & ~0xFFFull);
    if ((fixup & 0x04) != 0) sqe.mptr = kIova + kDataOff + sqe.mptr % kDataSize;
    if ((fixup & 0x08) != 0) sqe.nsid = 1;
    if ((fixup & 0x10) != 0) sqe.cdw12 = (sqe.cdw12 & ~0xFFFFu) | (sqe.cdw12 & 0x3F);
    if ((fixup & 0x20) != 0 && is_admin) sqe.prp1 = kIova + kSpareOff + (sqe.prp1 % kSpareSize & ~0xFFFull);
    if ((fixup & 0x20) != 0 && !is_admin) sqe.prp1 = kRoIova + sqe.prp1 % kRoSize;
    if ((fixup & 0x40) != 0) sqe.flags = 0;
    if ((fixup & 0x80) != 0) {
      sqe.cdw10 %= 4096;
      sqe.cdw11 = 0;
    }
  }

  bool Full(const HostQueue& sq) const { return static_cast<uint16_t>((sq.tail + 1) % sq.size) == sq.head; }

  void Submit(HostQueue& sq, const Sqe& sqe) {
    if (Full(sq)) RingAndPoll();
    if (Full(sq)) return;  // the device is not consuming: drop it
    std::memcpy(Ptr(sq.off + uint64_t{sq.tail} * sizeof(Sqe)), &sqe, sizeof(Sqe));
    sq.tail = static_cast<uint16_t>((sq.tail + 1) % sq.size);
  }

  void Ring(const HostQueue& sq) {
    std::atomic_ref<uint32_t>(f_.doorbells[2u * sq.qid]).store(sq.tail, std::memory_order_release);
  }

  void RingAndPoll() {
    Ring(asq_);
    if (sq1_.size != 0) Ring(sq1_);
    for (int i = 0; i < kMaxPolls && ctrl_.Poll(); ++i) {
      Drain(acq_, asq_);
      if (cq1_.size != 0) Drain(cq1_, sq1_);
    }
    Drain(acq_, asq_);
    if (cq1_.size != 0) Drain(cq1_, sq1_);
  }

  // Consumes posted completions and moves the CQ head doorbell.
  void Drain(HostQueue& cq, HostQueue& sq) {
    bool moved = false;
    for (int n = 0; n < cq.size; ++n) {
      uint8_t* slot = Ptr(cq.off + uint64_t{cq.head} * sizeof(Cqe));
      const uint16_t status = std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(slot + offsetof(Cqe, status)))
                                  .load(std::memory_order_acquire);
      if ((status & 1) != cq.phase) break;
      Cqe cqe;
      std::memcpy(&cqe, slot, sizeof(cqe));
      if (cqe.sqid == sq.qid && cqe.sqhd < sq.size) sq.head = cqe.sqhd;
      if (++cq.head == cq.size) {
        cq.head = 0;
        cq.phase ^= 1;
      }
      moved = true;
    }
    if (moved) std::atomic_ref<uint32_t>(f_.doorbells[2u * cq.qid + 1]).store(cq.head, std::memory_order_release);
  }

  Fixture& f_;
  emu::Controller& ctrl_;
  HostQueue asq_, acq_, sq1_, cq1_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Fixture& f = GetFixture();
  emu::EmulatorOptions options;
  options.socket_dir = "/nonexistent";  // Validate() wants one; no socket is made
  // Two small namespaces: 512-byte blocks, and 4 KiB blocks with separate
  // metadata; the fuzzer can create more with Namespace Management.
  options.namespaces.push_back({4ull << 20, 512, 0, false});
  options.namespaces.push_back({4ull << 20, 4096, 16, false});
  options.io_queues = 8;
  auto ctrl = emu::Controller::Create(options, f.doorbells);
  if (!ctrl) {
    std::fprintf(stderr, "fuzz_sqe: %s\n", ctrl.error().ToString().c_str());
    std::abort();
  }
  Session session(f, **ctrl);
  if (!session.Setup()) std::abort();  // the fixed preamble must always work
  Input in(data, size);
  session.Run(in);
  return 0;
}
