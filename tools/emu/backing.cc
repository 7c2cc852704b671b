#include "tools/emu/backing.h"

#include <sys/mman.h>

#include <cstring>

namespace nvmux::emu {
namespace {

class RamBacking final : public Backing {
 public:
  RamBacking(uint8_t* base, uint64_t size) : Backing(size), base_(base) {}
  ~RamBacking() override { ::munmap(base_, size()); }

  Status Read(uint64_t offset, std::span<uint8_t> out) override {
    if (fail_reads_) return Fail(EIO, "injected read fault");
    std::memcpy(out.data(), base_ + offset, out.size());
    return Ok();
  }
  Status Write(uint64_t offset, std::span<const uint8_t> data) override {
    if (fail_writes_) return Fail(EIO, "injected write fault");
    std::memcpy(base_ + offset, data.data(), data.size());
    return Ok();
  }
  Status Zero(uint64_t offset, uint64_t len) override {
    if (fail_writes_) return Fail(EIO, "injected write fault");
    // Whole pages go back to the kernel (and read as zeroes); edges are cleared.
    const uint64_t page = 4096;
    uint64_t first = (offset + page - 1) / page * page;
    uint64_t last = (offset + len) / page * page;
    if (last > first) {
      std::memset(base_ + offset, 0, first - offset);
      if (::madvise(base_ + first, last - first, MADV_DONTNEED) != 0) {
        std::memset(base_ + first, 0, last - first);
      }
      std::memset(base_ + last, 0, offset + len - last);
    } else {
      std::memset(base_ + offset, 0, len);
    }
    return Ok();
  }

 private:
  uint8_t* base_;
};

class NullBacking final : public Backing {
 public:
  explicit NullBacking(uint64_t size) : Backing(size) {}
  Status Read(uint64_t, std::span<uint8_t> out) override {
    if (fail_reads_) return Fail(EIO, "injected read fault");
    std::memset(out.data(), 0, out.size());
    return Ok();
  }
  Status Write(uint64_t, std::span<const uint8_t>) override {
    if (fail_writes_) return Fail(EIO, "injected write fault");
    return Ok();
  }
  Status Zero(uint64_t, uint64_t) override {
    if (fail_writes_) return Fail(EIO, "injected write fault");
    return Ok();
  }
};

}  // namespace

Result<std::unique_ptr<Backing>> MakeBacking(BackingKind kind, uint64_t size) {
  switch (kind) {
    case BackingKind::kRam: {
      void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
      if (p == MAP_FAILED) return ErrnoError("RAM backing of " + std::to_string(size) + " bytes");
      return std::unique_ptr<Backing>(new RamBacking(static_cast<uint8_t*>(p), size));
    }
    case BackingKind::kNull:
      return std::unique_ptr<Backing>(new NullBacking(size));
  }
  return Fail(EINVAL, "unknown backing kind");
}

}  // namespace nvmux::emu
