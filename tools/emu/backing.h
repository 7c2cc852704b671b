// Backing: where a namespace's blocks live.
//
// RamBacking keeps everything in an anonymous MAP_NORESERVE mapping (pages
// are committed when first written; Deallocate gives them back and they read
// as zeroes again). NullBacking stores nothing and reads zeroes.
// Offsets and lengths are bytes; callers check ranges (REQUIRES: offset +
// len <= size()).
//
// Errors: Read/Write return EIO when a fault was injected (SetFaults), which
// the I/O path turns into a media error status.
// Thread safety: none; the controller serialises all access.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

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

// Creates a backing of `size` bytes. ENOMEM if the address space is short.
[[nodiscard]] Result<std::unique_ptr<Backing>> MakeBacking(BackingKind kind, uint64_t size);

}  // namespace nvmux::emu
