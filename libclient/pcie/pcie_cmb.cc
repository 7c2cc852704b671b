#include "libclient/pcie/pcie_cmb.h"

#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "libclient/pcie/pci_sysfs.h"
#include "nvmux/spec/registers.h"
#include "shm/base/log.h"
#include "shm/base/unique_fd.h"

namespace nvmux::pcie {
namespace {

constexpr uint32_t kCmbmscCre = 1u << 0;   // capabilities registers enabled (CMBLOC/CMBSZ report)
constexpr uint32_t kCmbmscCmse = 1u << 1;  // memory space enabled at CBA
constexpr uint32_t kCmbszSqs = 1u << 0;
constexpr uint64_t kPage = 4096;

std::string Hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof(b), "0x%" PRIx64, v);
  return b;
}

}  // namespace

Result<uint64_t> BarBusAddress(const std::string& root, const std::string& bdf, uint32_t bar) {
  std::string path = root + "/" + bdf + "/resource";
  FILE* f = std::fopen(path.c_str(), "re");
  if (f == nullptr) return Fail(EIO, "pcie " + bdf + ": cannot read " + path + ": " + std::strerror(errno));
  unsigned long long start = 0, end = 0, flags = 0;
  bool found = false;
  for (uint32_t i = 0; i <= bar; ++i) found = std::fscanf(f, "%llx %llx %llx", &start, &end, &flags) == 3;
  std::fclose(f);
  if (!found || start == 0)
    return Fail(EIO, "pcie " + bdf + ": BAR" + std::to_string(bar) + " has no address in " + path);
  return static_cast<uint64_t>(start);
}

Result<CmbLocation> EnableCmb(RegisterIo& regs, const std::string& bdf, const std::string& root) {
  auto cap = regs.Read64(spec::kRegCap);
  if (!cap) return cap.error();
  const bool msc = spec::Cap{*cap}.cmbs() != 0;
  // CMBLOC and CMBSZ read 0 on a 1.4+ controller until CRE is set.
  if (msc) NVMUX_TRY(regs.Write32(spec::kRegCmbmsc, kCmbmscCre));
  auto loc = regs.Read32(spec::kRegCmbloc);
  if (!loc) return loc.error();
  auto sz = regs.Read32(spec::kRegCmbsz);
  if (!sz) return sz.error();
  if (*sz == 0) return Fail(ENOTSUP, "pcie " + bdf + " has no Controller Memory Buffer (CMBSZ is 0)");
  if ((*sz & kCmbszSqs) == 0)
    return Fail(ENOTSUP, "pcie " + bdf + ": its Controller Memory Buffer cannot hold submission queues "
                             "(CMBSZ.SQS = 0; CMBSZ " + Hex(*sz) + ")");
  uint32_t szu = (*sz >> 8) & 0xF;
  if (szu > 6) return Fail(ENOTSUP, "pcie " + bdf + ": CMBSZ.SZU " + std::to_string(szu) + " is reserved");
  uint64_t unit = kPage << (4 * szu);
  CmbLocation l;
  l.bar = *loc & 0x7;
  l.bar_offset = uint64_t{*loc >> 12} * unit;
  l.bytes = uint64_t{*sz >> 12} * unit;
  if (l.bar > 5 || l.bar == 1)  // BIR 1 would be BAR0's upper half (BAR0 is 64-bit)
    return Fail(ENOTSUP, "pcie " + bdf + ": CMBLOC.BIR " + std::to_string(l.bar) + " names no usable BAR");
  auto bus = BarBusAddress(root, bdf, l.bar);
  if (!bus) return bus.error();
  l.controller_address = *bus + l.bar_offset;
  if (msc) {
    // CBA's upper half first: the controller latches CMSE with the whole
    // register when the lower half is written.
    NVMUX_TRY(regs.Write32(spec::kRegCmbmsc + 4, static_cast<uint32_t>(l.controller_address >> 32)));
    NVMUX_TRY(regs.Write32(spec::kRegCmbmsc,
                           static_cast<uint32_t>(l.controller_address & ~(kPage - 1)) | kCmbmscCre | kCmbmscCmse));
    auto sts = regs.Read32(spec::kRegCmbsts);
    if (!sts) return sts.error();
    if ((*sts & 1u) != 0)
      return Fail(EIO, "pcie " + bdf + ": the controller refused " + Hex(l.controller_address) +
                           " as the CMB's base address (CMBSTS.CBAI)");
  }
  return l;
}

Result<BarWindow> BarWindow::Map(int device_fd, const std::string& bdf, uint32_t bar, uint64_t bar_offset,
                                 uint64_t bytes, std::atomic<bool>* lost) {
  const std::string what = "pcie " + bdf + ": BAR" + std::to_string(bar);
  int fd = device_fd;
  uint64_t file_offset = 0;
  UniqueFd sysfs;
  vfio_region_info info{};
  info.argsz = sizeof(info);
  info.index = VFIO_PCI_BAR0_REGION_INDEX + bar;
  if (fd >= 0 && ::ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &info) == 0) {
    if ((info.flags & VFIO_REGION_INFO_FLAG_MMAP) == 0 || info.size < bar_offset + bytes)
      return Fail(EIO, what + " (" + std::to_string(info.size) + " bytes) cannot be mapped through VFIO for the CMB");
    file_offset = info.offset;
  } else {
    std::string path = std::string(kSysfsPciDevices) + "/" + bdf + "/resource" + std::to_string(bar);
    sysfs = UniqueFd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!sysfs.valid())
      return Fail(errno == EACCES ? EACCES : EIO, what + ": cannot open " + path + ": " + std::strerror(errno));
    fd = sysfs.get();
  }
  uint64_t start = bar_offset & ~(kPage - 1);
  size_t map_bytes = static_cast<size_t>((bar_offset + bytes - start + kPage - 1) & ~(kPage - 1));
  void* map =
      ::mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(file_offset + start));
  if (map == MAP_FAILED)
    return Fail(EIO, what + ": mapping " + std::to_string(map_bytes) + " bytes for the CMB: " + std::strerror(errno));
  BarWindow w;
  w.map_ = map;
  w.map_bytes_ = map_bytes;
  w.cpu_ = static_cast<uint8_t*>(map) + (bar_offset - start);
  if (auto guard = BarGuard::Guard(map, map_bytes, lost); guard) w.guard_ = std::move(*guard);
  return w;
}

BarWindow& BarWindow::operator=(BarWindow&& o) noexcept {
  if (this != &o) {
    Reset();
    map_ = o.map_;
    map_bytes_ = o.map_bytes_;
    cpu_ = o.cpu_;
    guard_ = std::move(o.guard_);
    o.map_ = nullptr;
    o.cpu_ = nullptr;
    o.map_bytes_ = 0;
  }
  return *this;
}

void LogCmbMapFailure(const std::string& bdf, const std::string& why) {
  NVMUX_LOG(kWarning, "pcie %s: use_cmb_sqs: cannot map the group's CMB (%s); this process's SQs stay in host memory",
            bdf.c_str(), why.c_str());
}

void BarWindow::Reset() {
  guard_.Unguard();
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  cpu_ = nullptr;
  map_bytes_ = 0;
}

}  // namespace nvmux::pcie
