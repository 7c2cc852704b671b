#include "libclient/pcie/pcie_transport.h"

#include <fcntl.h>
#include <linux/vfio.h>
#include <rte_eal.h>
#include <rte_vfio.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "nvmux/spec/registers.h"
#include "shm/base/log.h"

namespace nvmux::pcie {
namespace {

constexpr uint32_t kPciCommand = 0x04;
constexpr uint16_t kCommandMemory = 0x2, kCommandBusMaster = 0x4, kCommandIntxDisable = 0x400;

Error Gone(const std::string& what) { return Fail(ENXIO, what + ": the device is gone (surprise removal?)"); }

// BAR0's region info with its capability chain.
struct RegionInfo {
  uint64_t size = 0, offset = 0;
  uint32_t flags = 0;
  std::vector<std::pair<uint64_t, uint64_t>> sparse;  // mmap-able (offset, size); empty: all of it
};

Result<RegionInfo> GetRegionInfo(int fd, uint32_t index, const std::string& bdf) {
  std::vector<uint8_t> buf(sizeof(vfio_region_info));
  for (int pass = 0; pass < 2; ++pass) {
    auto* info = reinterpret_cast<vfio_region_info*>(buf.data());
    std::memset(buf.data(), 0, buf.size());
    info->argsz = static_cast<uint32_t>(buf.size());
    info->index = index;
    if (::ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, info) != 0)
      return Fail(EIO, "VFIO: region " + std::to_string(index) + " of " + bdf + ": " + std::strerror(errno));
    if (info->argsz > buf.size()) {  // the capability chain did not fit: again, with room
      buf.resize(info->argsz);
      continue;
    }
    RegionInfo r{info->size, info->offset, info->flags, {}};
    if ((info->flags & VFIO_REGION_INFO_FLAG_CAPS) != 0) {
      bool msix_mappable = false;
      std::vector<std::pair<uint64_t, uint64_t>> sparse;
      for (uint32_t off = info->cap_offset; off != 0 && off + sizeof(vfio_info_cap_header) <= buf.size();) {
        auto* h = reinterpret_cast<vfio_info_cap_header*>(buf.data() + off);
        if (h->id == VFIO_REGION_INFO_CAP_MSIX_MAPPABLE) msix_mappable = true;
        if (h->id == VFIO_REGION_INFO_CAP_SPARSE_MMAP) {
          auto* s = reinterpret_cast<vfio_region_info_cap_sparse_mmap*>(h);
          for (uint32_t i = 0; i < s->nr_areas; ++i) sparse.emplace_back(s->areas[i].offset, s->areas[i].size);
        }
        off = h->next;
      }
      if (!msix_mappable) r.sparse = std::move(sparse);
    }
    return r;
  }
  return Fail(EIO, "VFIO: region info of " + bdf + " keeps growing");
}

}  // namespace

Result<uint32_t> MmioRegisters::Read32(uint32_t offset) {
  uint32_t v = *reinterpret_cast<volatile uint32_t*>(bar_ + offset);
  if (v == 0xFFFFFFFFu && gone_()) return Gone("register read at BAR0+" + std::to_string(offset));
  return v;
}

Result<uint64_t> MmioRegisters::Read64(uint32_t offset) {
  auto lo = Read32(offset);
  if (!lo) return lo.error();
  auto hi = Read32(offset + 4);
  if (!hi) return hi.error();
  return static_cast<uint64_t>(*hi) << 32 | *lo;
}

Status MmioRegisters::Write32(uint32_t offset, uint32_t value) {
  *reinterpret_cast<volatile uint32_t*>(bar_ + offset) = value;
  return Ok();
}

Status MmioRegisters::Write64(uint32_t offset, uint64_t value) {
  NVMUX_TRY(Write32(offset, static_cast<uint32_t>(value)));
  return Write32(offset + 4, static_cast<uint32_t>(value >> 32));
}

uint64_t PcieTransport::spec_doorbell_base() { return spec::kDoorbellBase; }

Result<std::unique_ptr<PcieTransport>> PcieTransport::Open(const std::string& bdf) {
  auto f = ReadPciFunction(kSysfsPciDevices, bdf);
  if (!f) return f.error();
  auto access = CheckDrivable(*f);
  if (!access) return access.error();
  if (*access == Access::kUio) return OpenUio(bdf);
  if (f->iommu_group < 0)
    return Fail(ENOTSUP, "NVMe controller " + bdf + " is bound to vfio-pci but has no IOMMU group: enable the "
                             "IOMMU (intel_iommu=on / amd_iommu=on)");
  // No-IOMMU vfio: the group's node is /dev/vfio/noiommu-N and the device
  // needs physical addresses, which nvmux does not use.
  std::string group_dev = "/dev/vfio/" + std::to_string(f->iommu_group);
  if (::access(group_dev.c_str(), F_OK) != 0 &&
      ::access(("/dev/vfio/noiommu-" + std::to_string(f->iommu_group)).c_str(), F_OK) == 0)
    return Fail(ENOTSUP, "NVMe controller " + bdf + " is in vfio's no-IOMMU mode (/dev/vfio/noiommu-" +
                             std::to_string(f->iommu_group) + "), which needs IOVA = physical addresses; nvmux "
                             "needs an IOMMU (intel_iommu=on / amd_iommu=on)");
  if (rte_vfio_is_enabled("vfio_pci") == 0)
    return Fail(ENOTSUP, "pcie " + bdf + ": DPDK found no VFIO when this process started (was vfio-pci "
                             "loaded after it? restart it)");
  // A group's node opens once at a time: a held one means another process
  // (another nvmux group, a VM, another driver) owns the controller. DPDK
  // would only log a failure; ask first for a clear error.
  {
    int probe = ::open(group_dev.c_str(), O_RDWR | O_CLOEXEC);
    if (probe < 0 && errno == EBUSY)
      return Fail(EBUSY, "NVMe controller " + bdf + " is in use by another process (its VFIO group " +
                             group_dev + " is open elsewhere: another nvmux group or program; `fuser " +
                             group_dev + "` names it)");
    if (probe < 0)
      return Fail(errno == EACCES || errno == EPERM ? EACCES : EIO,
                  "NVMe controller " + bdf + ": cannot open " + group_dev + ": " + std::strerror(errno));
    ::close(probe);
  }
  std::unique_ptr<PcieTransport> t(new PcieTransport(bdf));
  vfio_device_info info{};
  info.argsz = sizeof(info);
  int fd = -1;
  int rc = rte_vfio_setup_device(kSysfsPciDevices, bdf.c_str(), &fd, &info);
  if (rc != 0 || fd < 0) {
    // The usual reason behind DPDK's "DMA remapping failed" in a VM: an
    // IOMMU too narrow for virtual addresses as IOVAs (QEMU 7.2's default).
    std::string why = "; run with -v/NVMUX_LOG=debug for DPDK's reason";
    // nvmux's DMA memory lives from --base-virtaddr 0x200000000000 (2^45) up.
    if (auto width = IommuAddressWidth(kSysfsPciDevices, bdf); width && *width < 46)
      why = "; the IOMMU translates only " + std::to_string(*width) + "-bit addresses (VT-d MGAW) and nvmux maps "
            "its memory at its virtual addresses, from 0x200000000000 (46 bits) up: give the IOMMU 48 bits (QEMU: "
            "-device intel-iommu,aw-bits=48)";
    return Fail(EIO, "pcie " + bdf + ": DPDK could not set the device up through VFIO (rc " + std::to_string(rc) +
                         why + ")");
  }
  t->device_fd_ = fd;
  t->config_fd_ = fd;
  if (info.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX)
    return Fail(EIO, "pcie " + bdf + ": VFIO reports " + std::to_string(info.num_regions) + " regions");
  auto config = GetRegionInfo(fd, VFIO_PCI_CONFIG_REGION_INDEX, bdf);
  if (!config) return config.error();
  t->config_file_offset_ = config->offset;
  auto bar0 = GetRegionInfo(fd, VFIO_PCI_BAR0_REGION_INDEX, bdf);
  if (!bar0) return bar0.error();
  if (bar0->size < spec::kDoorbellBase + 0x1000 || (bar0->flags & VFIO_REGION_INFO_FLAG_MMAP) == 0)
    return Fail(EIO, "pcie " + bdf + ": BAR0 (" + std::to_string(bar0->size) +
                         " bytes) is too small or cannot be mapped");
  // Map from offset 0 up to the end of the mmap-able area that starts there
  // (the MSI-X table, when the kernel keeps it from us, lies past the doorbells).
  uint64_t bytes = bar0->size;
  if (!bar0->sparse.empty()) {
    bytes = 0;
    for (auto [off, size] : bar0->sparse)
      if (off == 0) bytes = size;
  }
  if (bytes < spec::kDoorbellBase + 0x1000)
    return Fail(EIO, "pcie " + bdf + ": the kernel lets only " + std::to_string(bytes) +
                         " bytes of BAR0 be mapped from its start; the registers and doorbells need " +
                         std::to_string(spec::kDoorbellBase + 0x1000));
  void* bar = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(bar0->offset));
  if (bar == MAP_FAILED)
    return Fail(EIO, "pcie " + bdf + ": mapping BAR0 (" + std::to_string(bytes) + " bytes): " + std::strerror(errno));
  t->bar0_file_offset_ = bar0->offset;
  t->MapRegisters(bar, bytes);
  t->WatchRequests();
  NVMUX_LOG(kInfo, "pcie %s: VFIO group %d, BAR0 %lu bytes (%zu mapped)", bdf.c_str(), f->iommu_group,
            static_cast<unsigned long>(bar0->size), bytes);
  return t;
}

void PcieTransport::WatchRequests() {
  UniqueFd efd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!efd.valid()) return;
  alignas(vfio_irq_set) uint8_t buf[sizeof(vfio_irq_set) + sizeof(int32_t)] = {};
  auto* set = reinterpret_cast<vfio_irq_set*>(buf);
  set->argsz = sizeof(buf);
  set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
  set->index = VFIO_PCI_REQ_IRQ_INDEX;
  set->start = 0;
  set->count = 1;
  int32_t fd = efd.get();
  std::memcpy(set->data, &fd, sizeof(fd));
  if (::ioctl(device_fd_, VFIO_DEVICE_SET_IRQS, set) != 0) {
    NVMUX_LOG(kInfo, "pcie %s: no VFIO device-request notification (%s): a hot removal waits for this process "
              "to close the device", bdf_.c_str(), std::strerror(errno));
    return;
  }
  request_fd_ = std::move(efd);
}

void PcieTransport::MapRegisters(void* bar, size_t bytes) {
  bar_ = bar;
  bar_bytes_ = bytes;
  auto guard = BarGuard::Guard(bar, bytes, &bar_faulted_);
  if (guard)
    guard_ = std::move(*guard);
  else
    NVMUX_LOG(kWarning, "pcie %s: %s; a surprise removal will kill this process", bdf_.c_str(),
              guard.error().message.c_str());
  registers_ = std::make_unique<MmioRegisters>(static_cast<volatile uint8_t*>(bar), [this] { return Lost(); });
}

Result<std::unique_ptr<PcieTransport>> PcieTransport::OpenUio(const std::string& bdf) {
  if (rte_eal_iova_mode() != RTE_IOVA_PA)
    return Fail(ENOTSUP, "NVMe controller " + bdf + " is bound to uio_pci_generic, which needs IOVA = physical "
                             "addresses, but this process's DPDK environment started with IOVA = VA (was the "
                             "controller bound after it started? restart it, or set NVMUX_IOVA_MODE=pa)");
  std::unique_ptr<PcieTransport> t(new PcieTransport(bdf));
  t->uio_ = true;
  std::string dir = std::string(kSysfsPciDevices) + "/" + bdf;
  t->uio_resource_ = UniqueFd(::open((dir + "/resource0").c_str(), O_RDWR | O_CLOEXEC));
  if (!t->uio_resource_.valid())
    return Fail(errno == EACCES ? EACCES : EIO, "pcie " + bdf + ": cannot open " + dir + "/resource0: " +
                                                    std::strerror(errno) + " (uio needs root)");
  // One process at a time: uio itself does not keep a second one out.
  if (::flock(t->uio_resource_.get(), LOCK_EX | LOCK_NB) != 0)
    return Fail(EBUSY, "NVMe controller " + bdf + " is in use by another process (another holds " + dir +
                           "/resource0: another nvmux group or program)");
  t->uio_config_ = UniqueFd(::open((dir + "/config").c_str(), O_RDWR | O_CLOEXEC));
  if (!t->uio_config_.valid())
    return Fail(EIO, "pcie " + bdf + ": cannot open " + dir + "/config: " + std::strerror(errno));
  t->device_fd_ = t->uio_resource_.get();
  t->config_fd_ = t->uio_config_.get();
  struct stat st{};
  if (::fstat(t->device_fd_, &st) != 0 || static_cast<uint64_t>(st.st_size) < spec::kDoorbellBase + 0x1000)
    return Fail(EIO, "pcie " + bdf + ": BAR0 (" + std::to_string(st.st_size) + " bytes) is too small");
  size_t bytes = static_cast<size_t>(st.st_size);
  void* bar = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, t->device_fd_, 0);
  if (bar == MAP_FAILED)
    return Fail(EIO, "pcie " + bdf + ": mapping " + dir + "/resource0: " + std::strerror(errno));
  t->MapRegisters(bar, bytes);
  NVMUX_LOG(kInfo, "pcie %s: uio_pci_generic, BAR0 %zu bytes, IOVA = PA", bdf.c_str(), bytes);
  return t;
}

PcieTransport::~PcieTransport() {
  cmb_map_ = BarWindow();  // before the VFIO device is released
  guard_.Unguard();
  if (bar_ != nullptr) ::munmap(bar_, bar_bytes_);
  if (!uio_ && device_fd_ >= 0 && rte_vfio_release_device(kSysfsPciDevices, bdf_.c_str(), device_fd_) != 0)
    NVMUX_LOG(kWarning, "pcie %s: DPDK could not release the VFIO device", bdf_.c_str());
}

Result<uint16_t> PcieTransport::ReadConfig16(uint32_t offset) const {
  uint16_t v = 0;
  if (::pread(config_fd_, &v, sizeof(v), static_cast<off_t>(config_file_offset_ + offset)) != sizeof(v))
    return Fail(EIO, "pcie " + bdf_ + ": reading config space at " + std::to_string(offset) + ": " +
                         std::strerror(errno));
  return v;
}

Status PcieTransport::WriteConfig16(uint32_t offset, uint16_t value) {
  if (::pwrite(config_fd_, &value, sizeof(value), static_cast<off_t>(config_file_offset_ + offset)) != sizeof(value))
    return Fail(EIO, "pcie " + bdf_ + ": writing config space at " + std::to_string(offset) + ": " +
                         std::strerror(errno));
  return Ok();
}

Status PcieTransport::PrepareDevice() {
  auto cmd = ReadConfig16(kPciCommand);
  if (!cmd) return cmd.error();
  if (*cmd == 0xFFFF) return Gone("pcie " + bdf_);
  uint16_t want = *cmd | kCommandMemory | kCommandBusMaster | kCommandIntxDisable;
  if (want != *cmd) NVMUX_TRY(WriteConfig16(kPciCommand, want));
  bus_master_set_.store(true, std::memory_order_relaxed);
  return Ok();
}

Status PcieTransport::EnableCmb() {
  auto l = pcie::EnableCmb(*registers_, bdf_);
  if (!l) return l.error();
  if (!cmb_map_.mapped() || l->bar != cmb_.bar || l->bar_offset != cmb_.bar_offset || l->bytes != cmb_.bytes) {
    auto w = BarWindow::Map(uio_ ? -1 : device_fd_, bdf_, l->bar, l->bar_offset, l->bytes, &bar_faulted_);
    if (!w) return w.error();
    cmb_map_ = std::move(*w);
  }
  cmb_ = *l;
  NVMUX_LOG(kInfo, "pcie %s: CMB of %lu KiB in BAR%u at offset %lu, controller address 0x%lx: SQs may live there",
            bdf_.c_str(), static_cast<unsigned long>(cmb_.bytes >> 10), cmb_.bar,
            static_cast<unsigned long>(cmb_.bar_offset), static_cast<unsigned long>(cmb_.controller_address));
  return Ok();
}

Doorbells PcieTransport::QueueDoorbells(uint16_t qid, uint32_t dstrd) {
  auto at = [&](bool cq) {
    return reinterpret_cast<volatile uint32_t*>(static_cast<uint8_t*>(bar_) + spec::DoorbellOffset(qid, cq, dstrd));
  };
  return Doorbells{at(false), at(true)};
}

Result<std::unique_ptr<AdoptedPcieRegisters>> AdoptedPcieRegisters::Create(UniqueFd bar_fd, uint64_t bar0_file_offset,
                                                                            UniqueFd config_fd) {
  std::unique_ptr<AdoptedPcieRegisters> r(new AdoptedPcieRegisters());
  r->bar_fd_ = std::move(bar_fd);
  r->config_fd_ = std::move(config_fd);
  // A VFIO device fd tells where config space is; sysfs's config file starts there.
  vfio_region_info info{};
  info.argsz = sizeof(info);
  info.index = VFIO_PCI_CONFIG_REGION_INDEX;
  if (::ioctl(r->config_fd_.get(), VFIO_DEVICE_GET_REGION_INFO, &info) == 0) r->config_offset_ = info.offset;
  r->page_ = ::mmap(nullptr, spec::kDoorbellBase, PROT_READ | PROT_WRITE, MAP_SHARED, r->bar_fd_.get(),
                    static_cast<off_t>(bar0_file_offset));
  if (r->page_ == MAP_FAILED) {
    r->page_ = nullptr;
    return Fail(EIO, std::string("mapping the adopted controller's registers: ") + std::strerror(errno));
  }
  if (auto guard = BarGuard::Guard(r->page_, spec::kDoorbellBase, &r->lost_); guard) r->guard_ = std::move(*guard);
  AdoptedPcieRegisters* self = r.get();
  r->mmio_ = std::make_unique<MmioRegisters>(static_cast<volatile uint8_t*>(r->page_), [self] { return self->Gone(); });
  return r;
}

AdoptedPcieRegisters::~AdoptedPcieRegisters() {
  guard_.Unguard();
  if (page_ != nullptr) ::munmap(page_, spec::kDoorbellBase);
}

bool AdoptedPcieRegisters::Gone() const {
  if (lost_.load(std::memory_order_acquire)) return true;
  uint16_t vendor = 0;
  return ::pread(config_fd_.get(), &vendor, sizeof(vendor), static_cast<off_t>(config_offset_)) != sizeof(vendor) ||
         vendor == 0xFFFF;
}

bool PcieTransport::Lost() const {
  if (request_fd_.valid() && !lost_.load(std::memory_order_relaxed)) {
    uint64_t n = 0;
    if (::read(request_fd_.get(), &n, sizeof(n)) == sizeof(n)) {
      NVMUX_LOG(kError, "pcie %s: the kernel asks for the device back (hot removal): treating it as gone; the "
                "removal completes once the controller is detached", bdf_.c_str());
      lost_.store(true, std::memory_order_relaxed);
    }
  }
  if (bar_faulted_.load(std::memory_order_acquire)) {
    if (!fault_logged_.exchange(true))
      NVMUX_LOG(kError, "pcie %s: BAR0 vanished under its mapping (SIGBUS caught, a placeholder page mapped): the "
                "device was removed", bdf_.c_str());
    lost_.store(true, std::memory_order_relaxed);
  }
  if (lost_.load(std::memory_order_relaxed)) return true;
  // The vendor id reads all ones (or the read fails) once the function is
  // gone. Before that, a kernel removing it switches off memory decoding
  // (BAR reads then return all ones) or bus mastering (QEMU's controller
  // then fails its next queue fetch with CSTS.CFS): a loss as well, not a
  // fault of the controller. (Bus mastering counts once PrepareDevice set it.)
  auto vendor = ReadConfig16(0);
  auto command = ReadConfig16(kPciCommand);
  uint16_t need = kCommandMemory | (bus_master_set_.load(std::memory_order_relaxed) ? kCommandBusMaster : 0);
  if (vendor && *vendor != 0xFFFF && command && (*command & need) == need) return false;
  lost_.store(true, std::memory_order_relaxed);
  return true;
}

}  // namespace nvmux::pcie
