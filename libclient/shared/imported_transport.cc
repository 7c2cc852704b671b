#include "libclient/shared/imported_transport.h"

#include <sys/mman.h>

#include <atomic>

#include "nvmux/spec/registers.h"
#include "shm/base/format.h"
#include "shm/base/log.h"

namespace nvmux {
namespace {

uint32_t Load(uint32_t& v) { return std::atomic_ref<uint32_t>(v).load(std::memory_order_acquire); }

}  // namespace

Result<uint32_t> SharedRegisters::Read32(uint32_t offset) {
  switch (offset) {
    case spec::kRegCap: return static_cast<uint32_t>(c_.cap);
    case spec::kRegCap + 4: return static_cast<uint32_t>(c_.cap >> 32);
    case spec::kRegVs: return c_.vs;
    case spec::kRegCsts: return Load(c_.csts);
    default:
      return Fail(ENOTSUP, "register " + Hex(offset) + " is not readable from a secondary (the primary publishes "
                           "CAP, VS and CSTS)");
  }
}

Result<uint64_t> SharedRegisters::Read64(uint32_t offset) {
  if (offset == spec::kRegCap) return c_.cap;
  return Fail(ENOTSUP, "register " + Hex(offset) + " is not readable from a secondary");
}

Status SharedRegisters::Write32(uint32_t offset, uint32_t) {
  return Fail(ENOTSUP, "register " + Hex(offset) + ": a secondary does not write controller registers");
}

Status SharedRegisters::Write64(uint32_t offset, uint64_t) {
  return Fail(ENOTSUP, "register " + Hex(offset) + ": a secondary does not write controller registers");
}

Result<std::unique_ptr<ImportedTransport>> ImportedTransport::Create(SharedController& c, SharedFds fds,
                                                                     std::unique_ptr<RegisterIo> device_registers) {
  std::unique_ptr<ImportedTransport> t(new ImportedTransport(c, std::move(fds)));
  t->device_registers_ = std::move(device_registers);
  void* p = ::mmap(nullptr, t->fds_.doorbell_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, t->fds_.doorbells.get(),
                   static_cast<off_t>(t->fds_.doorbell_file_offset));
  if (p == MAP_FAILED) return ErrnoError("mapping the doorbells the primary passed");
  t->map_ = static_cast<uint8_t*>(p);
  t->map_bytes_ = t->fds_.doorbell_bytes;
  // A pcie controller's doorbells are its BAR: a surprise removal must not
  // kill the processes of the group (bar_guard.h).
  if (auto guard = BarGuard::Guard(p, t->map_bytes_, &t->lost_); guard) t->guard_ = std::move(*guard);
  if (t->fds_.msix.valid()) {
    auto msix = vfiouser::MsixMapping::FromFd(std::move(t->fds_.msix), t->fds_.msix_area);
    if (msix)
      t->msix_ = std::move(*msix);
    else
      NVMUX_LOG(kDebug, "the MSI-X table the primary passed is not mapped (%s): hybrid queue pairs leave their "
                "vector unmasked", msix.error().message.c_str());
  }
  return t;
}

ImportedTransport::~ImportedTransport() {
  cmb_mapping_.reset();
  guard_.Unguard();
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
}

Doorbells ImportedTransport::QueueDoorbells(uint16_t qid, uint32_t dstrd) {
  auto at = [&](bool cq) {
    uint64_t off = spec::DoorbellOffset(qid, cq, dstrd) - c_.doorbell_offset;
    return reinterpret_cast<volatile uint32_t*>(map_ + off);
  };
  return Doorbells{at(false), at(true)};
}

bool ImportedTransport::Lost() const {
  return lost_.load(std::memory_order_acquire) || Load(c_.removed) != 0 || Load(c_.failed) != 0;
}

}  // namespace nvmux
