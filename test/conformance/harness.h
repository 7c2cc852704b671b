// Conformance test harness: an in-process nvmux-emu on a private socket
// directory, driven through the raw vfio-user client with DMA memory from a
// memfd, plus helpers to enable the controller, build queues and submit raw
// commands.
//
// Every helper returns a Result/Status or fails the running test with a
// message; nothing waits without a deadline. The directory, socket and
// threads are removed when the TestDevice is destroyed, pass or fail.
//
// Thread safety: one test thread per TestDevice.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "libclient/vfiouser/client.h"
#include "nvmux/spec/nvme.h"
#include "shm/base/result.h"
#include "shm/base/unique_fd.h"
#include "tools/emu/emulator.h"

namespace nvmux::conformance {

// A mkdtemp directory under /tmp, removed recursively on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Memory the device may DMA to: a memfd mapped locally, handed to the
// server with DMA_MAP at kIova. A bump allocator hands out page-aligned
// pieces.
class DmaMemory {
 public:
  static constexpr uint64_t kIova = 0x1'0000'0000ull;
  static constexpr uint64_t kSize = 32ull << 20;

  DmaMemory();
  ~DmaMemory();
  int fd() const { return fd_.get(); }
  struct Buffer {
    uint64_t iova = 0;
    uint8_t* ptr = nullptr;
    uint64_t size = 0;
  };
  // REQUIRES: align is a power of two. Fails the test when exhausted.
  Buffer Alloc(uint64_t size, uint64_t align = 4096);
  void Reset() { next_ = 0; }
  uint8_t* Ptr(uint64_t iova) const { return base_ + (iova - kIova); }

 private:
  UniqueFd fd_;
  uint8_t* base_ = nullptr;
  uint64_t next_ = 0;
};

struct QueueState {
  uint16_t qid = 0;
  uint16_t size = 0;
  DmaMemory::Buffer mem;
  uint16_t tail = 0;   // SQ: next slot to fill
  uint16_t head = 0;   // CQ: next slot to read
  uint8_t phase = 1;   // CQ: expected phase
};

class TestDevice {
 public:
  explicit TestDevice(emu::EmulatorOptions options = {});
  ~TestDevice();

  // Creates and starts the emulator, connects, negotiates, maps the doorbell
  // page and the DMA memory. Fails the test on error.
  void Start();
  // Instead of Start: connects to a server already listening in socket_dir
  // (e.g. the real executable); emulator() must not be used then.
  void Attach(const std::string& socket_dir);
  // Drops the client and connects a new one (negotiate + maps).
  void Reconnect();

  vfiouser::Client& client() { return *client_; }
  emu::Emulator& emulator() { return *emu_; }
  DmaMemory& mem() { return mem_; }
  const std::string& dir() const { return dir_.path(); }
  // The emulator's socket directory (cntrl, bar0, control).
  const std::string& socket_dir() const { return options_.socket_dir; }

  uint32_t Reg32(uint32_t offset);
  uint64_t Reg64(uint32_t offset);
  void SetReg32(uint32_t offset, uint32_t value);
  void SetReg64(uint32_t offset, uint64_t value);
  // MSI-X Enable in the MSI-X capability's Message Control (config space):
  // the emulator sends no vector's message while it is clear.
  void SetMsixEnable(bool enable);
  spec::Csts Csts() { return spec::Csts{Reg32(spec::kRegCsts)}; }
  // Waits for CSTS.RDY == ready; false on timeout.
  bool WaitReady(bool ready, std::chrono::milliseconds timeout = std::chrono::seconds(2));

  // Programs AQA/ASQ/ACQ, writes CC (EN=1, IOSQES=6, IOCQES=4 unless cc
  // given) and waits for RDY. Returns CSTS.RDY.
  bool Enable(uint16_t asq_entries = 32, uint16_t acq_entries = 32, std::optional<uint32_t> cc = {});
  void Disable();

  // Doorbells through the mmapped page.
  void RingSq(QueueState& sq);
  void RingCq(QueueState& cq);
  void WriteDoorbell(uint32_t index, uint32_t value);

  // Places sqe in sq (cid filled in if 0 is passed as cid? no: caller's cid
  // is kept) and rings the doorbell.
  void Submit(QueueState& sq, const spec::Sqe& sqe, bool ring = true);
  // Next completion of cq within timeout; nullopt on timeout. Advances the
  // head and rings the CQ doorbell unless ring is false.
  std::optional<spec::Cqe> WaitCqe(QueueState& cq, std::chrono::milliseconds timeout = std::chrono::seconds(2),
                                   bool ring = true);
  // Submit + wait on the admin queue / I/O queue pair qid.
  std::optional<spec::Cqe> Admin(spec::Sqe sqe);
  std::optional<spec::Cqe> Io(uint16_t qid, spec::Sqe sqe);

  // Sets Number of Queues and creates I/O CQ qid and SQ qid of `entries`.
  void CreateIoQueuePair(uint16_t qid, uint16_t entries = 64);
  QueueState& sq(uint16_t qid) { return sqs_.at(qid); }
  QueueState& cq(uint16_t qid) { return cqs_.at(qid); }
  // Registers an SQ/CQ state the test created by hand.
  void TrackSq(const QueueState& q) { sqs_[q.qid] = q; }
  void TrackCq(const QueueState& q) { cqs_[q.qid] = q; }

  uint16_t NextCid() { return next_cid_++; }

 private:
  emu::EmulatorOptions options_;
  TempDir dir_;
  std::unique_ptr<emu::Emulator> emu_;
  std::unique_ptr<vfiouser::Client> client_;
  vfiouser::MappedArea doorbells_;
  DmaMemory mem_;
  std::map<uint16_t, QueueState> sqs_;
  std::map<uint16_t, QueueState> cqs_;
  uint16_t next_cid_ = 1;
};

// Command builders.
spec::Sqe AdminCmd(uint8_t opc, uint32_t nsid = 0);
spec::Sqe IoCmd(uint8_t opc, uint32_t nsid, uint64_t slba, uint32_t nlb_1based);
spec::Sqe CreateCq(uint16_t qid, uint16_t entries, uint64_t prp1, bool pc = true, bool ien = false, uint16_t iv = 0);
spec::Sqe CreateSq(uint16_t qid, uint16_t entries, uint64_t prp1, uint16_t cqid, bool pc = true);

// Status matchers: "SCT/SC" and DNR.
std::string StatusString(const spec::Cqe& cqe);
::testing::AssertionResult HasStatus(const std::optional<spec::Cqe>& cqe, uint8_t sct, uint8_t sc,
                                     std::optional<bool> dnr = std::nullopt);
::testing::AssertionResult IsSuccess(const std::optional<spec::Cqe>& cqe);

}  // namespace nvmux::conformance
