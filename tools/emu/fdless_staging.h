// Command data in fd-less DMA regions, reached with VFIO_USER_DMA_READ /
// VFIO_USER_DMA_WRITE messages instead of shared memory.
//
// The controller runs a command under its mutex, but the client's reply to
// a DMA_READ arrives on the socket thread, which needs that mutex for every
// register write: waiting for a reply under the mutex could deadlock. So a
// command is never waited for in place. Instead, the mapping code (PRP and
// SGL walks, through DmaSpace::staging()) records what it could not reach:
//  * host -> device bytes (write data, PRP list pages, SGL segments) that
//    have not been fetched yet become "missing"; the command is parked
//    (its SQ entry is fetched again later) without side effects;
//  * device -> host bytes go to local staging buffers that the command
//    fills; its completion waits until they were written back.
// Controller::Poll then releases the mutex, lets a DmaMessenger exchange the
// messages (bounded waits), takes the mutex again, and runs the parked
// command again with the fetched bytes (a PRP list fetched in one round may
// point to more fd-less pages: another round), or posts the held completion
// (Data Transfer Error if a write-back failed). A fetch that failed makes
// the range fail like unmapped memory: Data Transfer Error.
//
// Fd-mapped memory keeps its fast path: nothing here runs unless a
// translation through shared memory failed.
//
// Thread safety: none; FdlessStaging is used under the controller mutex.
// DmaMessenger is called by the poller thread without the controller mutex.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "tools/emu/dma_space.h"
#include "tools/emu/prp.h"

namespace nvmux::emu {

// The transport's side: moves bytes between the device and client memory
// that the device cannot map. Both return false on any failure (no client,
// the client answered with an error, a malformed reply, no reply within
// the transport's timeout); they never block without bound.
class DmaMessenger {
 public:
  virtual ~DmaMessenger() = default;
  [[nodiscard]] virtual bool DmaRead(uint64_t iova, std::span<uint8_t> out) = 0;
  [[nodiscard]] virtual bool DmaWrite(uint64_t iova, std::span<const uint8_t> data) = 0;
};

class FdlessStaging {
 public:
  struct Range {
    uint64_t iova = 0;
    std::vector<uint8_t> bytes;
    bool failed = false;  // the fetch failed: the range is unreachable
  };

  // Nothing recorded (the usual state between commands).
  bool idle() const { return missing_.empty() && writes_.empty() && fetched_.empty(); }
  // The current command needs bytes not fetched yet: it must be parked.
  bool pending() const { return !missing_.empty(); }
  bool has_writes() const { return !writes_.empty(); }

  // The slow path of AddDmaRange: adds [iova, iova + len) to out if every
  // byte is mapped (with or without an fd) with the access; fd-less pieces
  // are staging buffers (device_writes) or fetched bytes. A piece not
  // fetched yet is recorded as missing and not added (the command is
  // parked, so out is never used). false: unmapped, no access, or a fetch
  // of it failed.
  bool Add(const DmaSpace& dma, uint64_t iova, uint64_t len, bool device_writes, HostBuffer& out);
  // A descriptor list (PRP list page, SGL segment) of len bytes at iova in
  // fd-less memory: its fetched bytes, or nullptr (recorded as missing if
  // the range is mapped readable and not yet tried).
  const uint8_t* List(const DmaSpace& dma, uint64_t iova, uint64_t len);

  // For the messenger round: the ranges to fetch / to write back (moved out).
  std::vector<Range> TakeMissing() { return std::exchange(missing_, {}); }
  std::vector<Range> TakeWrites() { return std::exchange(writes_, {}); }
  // Fetched (or failed) ranges, kept until EndCommand.
  void PutFetched(std::vector<Range> ranges);
  // A parked command gives up its staged writes (it runs again).
  void DropWrites() { writes_.clear(); }
  // The command finished: forget everything.
  void EndCommand() {
    missing_.clear();
    writes_.clear();
    fetched_.clear();
  }

 private:
  // The fetched range holding [iova, iova + len), or null.
  const Range* Fetched(uint64_t iova, uint64_t len) const;
  void Missing(uint64_t iova, uint64_t len);

  std::vector<Range> missing_;
  std::vector<Range> writes_;
  std::vector<Range> fetched_;
};

}  // namespace nvmux::emu
