#include "tools/emu/backing.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <cstring>
#include <vector>

#include "shm/base/clock.h"
#include "shm/base/log.h"
#include "shm/base/unique_fd.h"

namespace nvmux::emu {
namespace {

enum class RamMode { kLazy, kPopulated4k, kHugepages };

class RamBacking final : public Backing {
 public:
  RamBacking(uint8_t* base, uint64_t size, uint64_t mapped, RamMode mode, std::string how)
      : Backing(size), base_(base), mapped_(mapped), mode_(mode), how_(std::move(how)) {}
  ~RamBacking() override { ::munmap(base_, mapped_); }

  uint8_t* Direct(uint64_t offset, uint64_t, bool for_write) override {
    if (for_write ? fail_writes_ : fail_reads_) return nullptr;
    return base_ + offset;
  }
  std::string Describe() const override { return how_; }

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
    if (mode_ != RamMode::kLazy) {
      // Populated memory stays populated: cleared in place, so the next
      // access costs no page fault (and hugepages cannot be split anyway).
      std::memset(base_ + offset, 0, len);
      return Ok();
    }
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
  uint64_t mapped_;
  RamMode mode_;
  std::string how_;
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
  std::string Describe() const override { return "null backing (writes dropped, reads return zeroes)"; }
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
  std::string Describe() const override { return "file " + path_ + " (pread/pwrite)"; }

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

constexpr uint64_t kHugepageSize = 2ull << 20;
// Hugepages left in the pool for DPDK processes (nvmuxd, the tools, SPDK):
// a namespace takes hugepages only if at least this many stay free.
constexpr uint64_t kHugepagesKeptFree = 512;

std::optional<uint64_t> ReadNumber(const char* path) {
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  char buf[64] = {};
  ssize_t n = ::read(fd.get(), buf, sizeof(buf) - 1);
  if (n <= 0) return std::nullopt;
  return std::strtoull(buf, nullptr, 10);
}

// 2 MiB hugepages free and not promised to a mapping.
uint64_t SpareHugepages() {
  const std::optional<uint64_t> free_pages = ReadNumber("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
  const std::optional<uint64_t> reserved = ReadNumber("/sys/kernel/mm/hugepages/hugepages-2048kB/resv_hugepages");
  if (!free_pages) return 0;
  const uint64_t resv = reserved.value_or(0);
  return *free_pages > resv ? *free_pages - resv : 0;
}

// MemAvailable from /proc/meminfo, in bytes.
std::optional<uint64_t> MemAvailable() {
  UniqueFd fd(::open("/proc/meminfo", O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  char buf[4096] = {};
  ssize_t n = ::read(fd.get(), buf, sizeof(buf) - 1);
  if (n <= 0) return std::nullopt;
  const char* at = std::strstr(buf, "MemAvailable:");
  if (at == nullptr) return std::nullopt;
  return std::strtoull(at + std::strlen("MemAvailable:"), nullptr, 10) * 1024;
}

std::string Mib(uint64_t bytes) { return std::to_string((bytes + (1u << 20) - 1) >> 20) + " MiB"; }

std::string Seconds(int64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3f s", static_cast<double>(ns) / 1e9);
  return buf;
}

Result<std::unique_ptr<Backing>> MakeLazyRamBacking(uint64_t size, const std::string& why) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return ErrnoError("RAM backing of " + std::to_string(size) + " bytes");
  return std::unique_ptr<Backing>(new RamBacking(static_cast<uint8_t*>(p), size, size, RamMode::kLazy,
                                                 "RAM " + Mib(size) + ", lazy (" + why +
                                                     "): pages are committed on first touch"));
}

Result<std::unique_ptr<Backing>> MakePopulatedRamBacking(uint32_t nsid, uint64_t size) {
  const int64_t start = MonotonicNanos();
  const uint64_t rounded = (size + kHugepageSize - 1) / kHugepageSize * kHugepageSize;
  const uint64_t pages = rounded / kHugepageSize;
  const uint64_t spare = SpareHugepages();
  std::string huge_why;
  if (spare >= pages + kHugepagesKeptFree) {
    void* p = ::mmap(nullptr, rounded, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
    if (p != MAP_FAILED) {
      return std::unique_ptr<Backing>(new RamBacking(
          static_cast<uint8_t*>(p), size, rounded, RamMode::kHugepages,
          "RAM " + Mib(rounded) + " in " + std::to_string(pages) + " hugepages of 2 MiB, populated in " +
              Seconds(MonotonicNanos() - start)));
    }
    huge_why = std::string("mmap of hugepages failed: ") + std::strerror(errno);
  } else {
    huge_why = std::to_string(spare) + " spare 2 MiB hugepages, " + std::to_string(pages) + " needed plus " +
               std::to_string(kHugepagesKeptFree) + " kept free for DPDK processes";
  }
  const std::optional<uint64_t> avail = MemAvailable();
  if (avail && size > *avail / 2) {
    NVMUX_LOG(kWarning,
              "nvmux-emu: namespace %u: not populating %s of RAM (MemAvailable %s): lazy RAM backing, whose "
              "first touch of each page costs a page fault",
              nsid, Mib(size).c_str(), Mib(*avail).c_str());
    return MakeLazyRamBacking(size, "too large to populate");
  }
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) return ErrnoError("RAM backing of " + std::to_string(size) + " bytes");
  const int64_t took = MonotonicNanos() - start;
  NVMUX_LOG(kWarning, "nvmux-emu: namespace %u: no hugepages (%s); RAM backing in populated 4 KiB pages (%s in %s)",
            nsid, huge_why.c_str(), Mib(size).c_str(), Seconds(took).c_str());
  return std::unique_ptr<Backing>(new RamBacking(static_cast<uint8_t*>(p), size, size, RamMode::kPopulated4k,
                                                 "RAM " + Mib(size) + " in 4 KiB pages, populated in " +
                                                     Seconds(took) + " (no hugepages: " + huge_why + ")"));
}

}  // namespace

Result<std::unique_ptr<Backing>> MakeBacking(const BackingSpec& spec, uint32_t nsid, uint64_t size) {
  switch (spec.kind) {
    case BackingKind::kRam:
      return MakePopulatedRamBacking(nsid, size);
    case BackingKind::kRamLazy:
      return MakeLazyRamBacking(size, "--backing ram-lazy");
    case BackingKind::kNull:
      return std::unique_ptr<Backing>(new NullBacking(size));
    case BackingKind::kFile:
      return MakeFileBacking(BackingPath(spec, nsid), size);
  }
  return Fail(EINVAL, "unknown backing kind");
}

}  // namespace nvmux::emu
