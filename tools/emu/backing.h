// Backing: where a namespace's blocks live.
//
// RamBacking keeps everything in anonymous memory. kRam allocates and
// populates it when created: hugepages (2 MiB, MAP_HUGETLB | MAP_POPULATE)
// when the pool has them to spare, else populated 4 KiB pages (a warning
// says so), so no command ever waits for a page fault; Zero clears in
// place. kRamLazy is a MAP_NORESERVE mapping: pages are committed when
// first touched; Zero gives whole pages back (they read as zeroes again). NullBacking stores nothing and reads zeroes. FileBacking
// keeps the blocks in a regular file (pread/pwrite; created, or extended with
// a sparse tail, to the namespace size; never truncated; Zero punches holes;
// Flush is fdatasync), so data outlives the emulator.
// Offsets and lengths are bytes; callers check ranges (REQUIRES: offset +
// len <= size()).
//
// Errors: Read/Write return EIO when a fault was injected (SetFaults), and a
// file backing the errno of a failed pread/pwrite/fdatasync; the I/O path
// turns any of them into a media error status.
// Thread safety: none; the controller serialises all access.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "shm/base/result.h"
#include "tools/emu/options.h"

namespace nvmux::emu {

class Backing {
 public:
  virtual ~Backing() = default;
  uint64_t size() const { return size_; }

  [[nodiscard]] virtual Status Read(uint64_t offset, std::span<uint8_t> out) = 0;
  [[nodiscard]] virtual Status Write(uint64_t offset, std::span<const uint8_t> data) = 0;
  // Makes [offset, offset + len) read as zeroes.
  [[nodiscard]] virtual Status Zero(uint64_t offset, uint64_t len) = 0;
  [[nodiscard]] virtual Status Flush() { return Ok(); }
  // False for the null backing, which forgets what is written.
  virtual bool stores_data() const { return true; }
  // The bytes [offset, offset + len) in memory, for copying straight
  // between the backing and the host's DMA memory; null when the backing is
  // not memory or a fault is injected for that direction (use Read/Write).
  virtual uint8_t* Direct(uint64_t offset, uint64_t len, bool for_write) {
    (void)offset, (void)len, (void)for_write;
    return nullptr;
  }
  // One line for the start-up log: kind, memory, how it was set up.
  virtual std::string Describe() const = 0;

  // Fault injection for tests: makes later reads / writes fail with EIO.
  void SetFaults(bool fail_reads, bool fail_writes) {
    fail_reads_ = fail_reads;
    fail_writes_ = fail_writes;
  }

 protected:
  explicit Backing(uint64_t size) : size_(size) {}
  bool fail_reads_ = false;
  bool fail_writes_ = false;

 private:
  uint64_t size_;
};

// Creates a backing of `size` bytes for namespace nsid (which names the file
// of a kFile backing, see BackingPath). kRam populates its memory here (about
// 0.1 s per GiB with hugepages, more with 4 KiB pages; see README), and
// falls back to a lazy mapping with a warning when populating could exhaust
// memory (more than half of MemAvailable). Errors: ENOMEM if the address space is
// short; for files, the errno of open/fstat/ftruncate, or EINVAL if the path
// is not a regular file, each with a message naming the path.
[[nodiscard]] Result<std::unique_ptr<Backing>> MakeBacking(const BackingSpec& spec, uint32_t nsid, uint64_t size);

}  // namespace nvmux::emu
