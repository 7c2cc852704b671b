#include "tools/emu/backing.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "shm/base/unique_fd.h"

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
  bool stores_data() const override { return false; }
};

class FileBacking final : public Backing {
 public:
  FileBacking(UniqueFd fd, std::string path, uint64_t size)
      : Backing(size), fd_(std::move(fd)), path_(std::move(path)) {}

  Status Read(uint64_t offset, std::span<uint8_t> out) override {
    if (fail_reads_) return Fail(EIO, "injected read fault");
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::pread(fd_.get(), out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError("pread '" + path_ + "'");
      if (n == 0) {  // beyond the end of a file someone shortened: zeroes
        std::memset(out.data() + done, 0, out.size() - done);
        break;
      }
      done += static_cast<size_t>(n);
    }
    return Ok();
  }
  Status Write(uint64_t offset, std::span<const uint8_t> data) override {
    if (fail_writes_) return Fail(EIO, "injected write fault");
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::pwrite(fd_.get(), data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return ErrnoError("pwrite '" + path_ + "'");
      done += static_cast<size_t>(n);
    }
    return Ok();
  }
  Status Zero(uint64_t offset, uint64_t len) override {
    if (fail_writes_) return Fail(EIO, "injected write fault");
    if (len == 0) return Ok();
    if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                    static_cast<off_t>(len)) == 0) {
      return Ok();
    }
    // No hole punching on this file system: write zeroes.
    std::vector<uint8_t> zeroes(static_cast<size_t>(std::min<uint64_t>(len, 1u << 20)), 0);
    for (uint64_t at = 0; at < len; at += zeroes.size()) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(zeroes.size(), len - at));
      NVMUX_TRY(Write(offset + at, std::span<const uint8_t>(zeroes.data(), n)));
    }
    return Ok();
  }
  Status Flush() override {
    if (::fdatasync(fd_.get()) != 0) return ErrnoError("fdatasync '" + path_ + "'");
    return Ok();
  }

 private:
  UniqueFd fd_;
  std::string path_;
};

Result<std::unique_ptr<Backing>> MakeFileBacking(const std::string& path, uint64_t size) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoError("--backing file:" + path + ": cannot open or create it");
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("--backing file:" + path + ": fstat");
  if (!S_ISREG(st.st_mode)) return Fail(EINVAL, "--backing file:" + path + ": is not a regular file");
  if (static_cast<uint64_t>(st.st_size) < size && ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return ErrnoError("--backing file:" + path + ": cannot extend it to " + std::to_string(size) + " bytes");
  }
  return std::unique_ptr<Backing>(new FileBacking(std::move(fd), path, size));
}

}  // namespace

Result<std::unique_ptr<Backing>> MakeBacking(const BackingSpec& spec, uint32_t nsid, uint64_t size) {
  switch (spec.kind) {
    case BackingKind::kRam: {
      void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
      if (p == MAP_FAILED) return ErrnoError("RAM backing of " + std::to_string(size) + " bytes");
      return std::unique_ptr<Backing>(new RamBacking(static_cast<uint8_t*>(p), size));
    }
    case BackingKind::kNull:
      return std::unique_ptr<Backing>(new NullBacking(size));
    case BackingKind::kFile:
      return MakeFileBacking(BackingPath(spec, nsid), size);
  }
  return Fail(EINVAL, "unknown backing kind");
}

}  // namespace nvmux::emu
