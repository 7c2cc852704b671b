// PcieTransport: an NVMe controller on the PCI bus.
//
// Bound to vfio-pci, it is driven through DPDK's VFIO support
// (rte_vfio_setup_device): DPDK opens the
// device's IOMMU group, attaches it to its default container and maps every
// hugepage segment of the group's memory for the device (IOVA = VA), and
// keeps doing so as memory is added or freed (its memory-event hook). This
// transport maps BAR0 (registers and doorbells, stride from CAP.DSTRD), sets
// Memory Space and Bus Master Enable in the command register, and notices a
// vanished device (a register reading all ones while config space does too).
//
// Bound to uio_pci_generic (no IOMMU translation: the process runs with
// IOVA = PA, chosen at EAL start, shm/eal.h), BAR0 is mapped from sysfs's
// resource0 and config space is sysfs's config file; an exclusive flock on
// resource0 keeps a second process (of this or another group) off it.
//
// Not supported (each a clear error at Open): vfio's no-IOMMU mode (Debian's
// kernels lack it; untested); a process whose EAL started before the
// controller was bound (VFIO not found, or IOVA = VA with uio).
//
// Thread safety: as Transport. Ownership: owns the BAR mapping and the VFIO
// device (released to DPDK on destruction; DPDK keeps the container).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "libclient/core/bar_guard.h"
#include "libclient/core/transport.h"
#include "libclient/pcie/pcie_cmb.h"
#include "libclient/pcie/pci_sysfs.h"
#include "shm/base/unique_fd.h"

namespace nvmux::pcie {

// BAR0 below the doorbells, by 32-bit MMIO (64-bit registers as two 32-bit
// accesses, low half first, as the NVMe specification allows).
class MmioRegisters final : public RegisterIo {
 public:
  // `gone` is asked when a read returns all ones (a vanished device reads so).
  MmioRegisters(volatile uint8_t* bar, std::function<bool()> gone) : bar_(bar), gone_(std::move(gone)) {}
  Result<uint32_t> Read32(uint32_t offset) override;
  Result<uint64_t> Read64(uint32_t offset) override;
  Status Write32(uint32_t offset, uint32_t value) override;
  Status Write64(uint32_t offset, uint64_t value) override;

 private:
  volatile uint8_t* bar_;
  std::function<bool()> gone_;
};

// The registers of a controller adopted from a dead primary: BAR0's first
// page mapped from the taken BAR fd, config space (for the vanished-device
// check) through the taken config fd.
// Ownership: owns both fds and the mapping.
class AdoptedPcieRegisters final : public RegisterIo {
 public:
  // `bar_fd` maps BAR0 at `bar0_file_offset`. Errors: EIO from mmap.
  [[nodiscard]] static Result<std::unique_ptr<AdoptedPcieRegisters>> Create(UniqueFd bar_fd, uint64_t bar0_file_offset,
                                                                           UniqueFd config_fd);
  ~AdoptedPcieRegisters() override;
  Result<uint32_t> Read32(uint32_t offset) override { return mmio_->Read32(offset); }
  Result<uint64_t> Read64(uint32_t offset) override { return mmio_->Read64(offset); }
  Status Write32(uint32_t offset, uint32_t value) override { return mmio_->Write32(offset, value); }
  Status Write64(uint32_t offset, uint64_t value) override { return mmio_->Write64(offset, value); }

 private:
  AdoptedPcieRegisters() = default;
  bool Gone() const;
  UniqueFd bar_fd_, config_fd_;
  uint64_t config_offset_ = 0;
  void* page_ = nullptr;
  std::atomic<bool> lost_{false};  // set by the SIGBUS guard
  BarGuard guard_;
  std::unique_ptr<MmioRegisters> mmio_;
};

class PcieTransport final : public Transport {
 public:
  // `bdf`: a normalised address (TransportId's traddr). REQUIRES: EAL is up.
  // Errors: ENODEV (no such function / not NVMe), EBUSY (kernel driver, or the
  // IOMMU group is held by another process), ENXIO (no driver), ENOTSUP
  // (uio_pci_generic, no-IOMMU vfio, EAL without VFIO), EIO (VFIO failures).
  [[nodiscard]] static Result<std::unique_ptr<PcieTransport>> Open(const std::string& bdf);
  ~PcieTransport() override;

  const char* name() const override { return "PCIE"; }
  RegisterIo& registers() override { return *registers_; }
  [[nodiscard]] Status PrepareDevice() override;
  Doorbells QueueDoorbells(uint16_t qid, uint32_t dstrd) override;
  bool Lost() const override;
  // CMBMSC enabled, the CMB's BAR mapped (pcie_cmb.h).
  [[nodiscard]] Status EnableCmb() override;
  std::optional<CmbWindow> Cmb() const override {
    return cmb_map_.mapped() ? std::optional<CmbWindow>(MakeWindow(cmb_, cmb_map_)) : std::nullopt;
  }
  // What other processes of the group take: the fd that maps BAR0 (vfio:
  // the device fd; uio: sysfs resource0) for the doorbells, and as the
  // "connection" the fd that reaches config space (vfio: the device fd
  // again, whose holders keep the IOMMU group, its container and DMA maps
  // alive; uio: sysfs config). A primary that takes the group over adopts
  // both (AdoptedPcieRegisters).
  std::optional<Exported> Export() const override {
    return Exported{device_fd_, bar0_file_offset_ + spec_doorbell_base(), spec_doorbell_base(),
                    bar_bytes_ - spec_doorbell_base(), config_fd_, -1};
  }

 private:
  explicit PcieTransport(std::string bdf) : bdf_(std::move(bdf)) {}
  static uint64_t spec_doorbell_base();
  // Config space through the VFIO config region. Errors: EIO naming the device.
  Result<uint16_t> ReadConfig16(uint32_t offset) const;
  Status WriteConfig16(uint32_t offset, uint16_t value);

  // The uio_pci_generic half of Open: sysfs resource0 and config.
  [[nodiscard]] static Result<std::unique_ptr<PcieTransport>> OpenUio(const std::string& bdf);
  void MapRegisters(void* bar, size_t bytes);
  void WatchRequests();  // vfio: arms request_fd_

  std::string bdf_;
  int device_fd_ = -1;  // vfio: owned by DPDK's VFIO bookkeeping (released, not closed); uio: resource0
  int config_fd_ = -1;  // vfio: device_fd_ (at config_file_offset_); uio: sysfs config
  bool uio_ = false;
  UniqueFd uio_resource_, uio_config_;
  // vfio: the device-request eventfd. The kernel signals it when it wants
  // the device back (hot removal) and waits until every fd of the device is
  // closed; Lost() reads it, so the application's remove path releases it.
  UniqueFd request_fd_;
  uint64_t bar0_file_offset_ = 0;
  uint64_t config_file_offset_ = 0;
  void* bar_ = nullptr;
  size_t bar_bytes_ = 0;  // bytes of BAR0 mapped from offset 0
  mutable std::atomic<bool> lost_{false};
  std::atomic<bool> bar_faulted_{false};
  std::atomic<bool> bus_master_set_{false};  // PrepareDevice turned Bus Master Enable on  // set by guard_'s SIGBUS handler
  mutable std::atomic<bool> fault_logged_{false};
  BarGuard guard_;  // SIGBUS on bar_ (surprise removal) -> placeholder, bar_faulted_
  std::unique_ptr<MmioRegisters> registers_;
  CmbLocation cmb_;
  BarWindow cmb_map_;  // guarded like BAR0 (a fault sets bar_faulted_)
};

}  // namespace nvmux::pcie
