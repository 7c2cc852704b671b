// The Controller Memory Buffer of a PCIe NVMe controller, for submission
// queues in device memory (SPDK's use_cmb_sqs; NVMe base spec 1.4+
// "Controller Memory Buffer": CAP.CMBS, CMBLOC, CMBSZ, CMBMSC, CMBSTS).
//
// A 1.4+ controller with CAP.CMBS reports CMBLOC/CMBSZ only once the host
// sets CMBMSC.CRE, and treats command addresses as CMB references only
// after CMBMSC.CMSE with a controller base address (CBA); QEMU's hw/nvme
// (7.2+, unless legacy-cmb=on) behaves so. nvmux gives as CBA the BAR's bus
// address plus CMBLOC's offset, which is also what an older controller
// (CAP.CMBS = 0, CMBLOC/CMBSZ valid from reset) compares against.
//
// Thread safety: none (called by the process that owns the device, before
// the controller is enabled; mappings are read-only afterwards).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "libclient/core/bar_guard.h"
#include "libclient/core/register_io.h"
#include "libclient/core/transport.h"

namespace nvmux::pcie {

// Where the CMB is (not mapped yet).
struct CmbLocation {
  uint32_t bar = 0;
  uint64_t bar_offset = 0;
  uint64_t bytes = 0;
  uint64_t controller_address = 0;
};

// Enables the CMB of the controller at `bdf` through `regs` (CMBMSC when
// CAP.CMBS) and says where it is. Errors: ENOTSUP naming why it cannot hold
// SQs (no CMB: CMBSZ 0; CMBSZ.SQS 0; a BAR not memory), EIO (CMBSTS.CBAI:
// the controller refused the base address; register failures; sysfs).
// `root`: the sysfs PCI devices directory (tests give a fake one).
[[nodiscard]] Result<CmbLocation> EnableCmb(RegisterIo& regs, const std::string& bdf,
                                            const std::string& root = "/sys/bus/pci/devices");

// The bus address of BAR `bar` of `bdf` (<root>/<bdf>/resource). Errors: EIO.
[[nodiscard]] Result<uint64_t> BarBusAddress(const std::string& root, const std::string& bdf, uint32_t bar);

// A mapping of [bar_offset, bar_offset + bytes) of BAR `bar`, guarded
// against surprise removal (bar_guard.h: a fault sets `*lost`).
// Ownership: owns the mapping (and the sysfs fd it opened).
class BarWindow {
 public:
  // `device_fd`: a VFIO device fd (the BAR's region is found with
  // VFIO_DEVICE_GET_REGION_INFO), or -1 / a non-VFIO fd: sysfs's
  // resource<bar> of `bdf` is opened (uio_pci_generic). Errors: EIO naming
  // the BAR and device, EACCES (sysfs needs root).
  [[nodiscard]] static Result<BarWindow> Map(int device_fd, const std::string& bdf, uint32_t bar,
                                             uint64_t bar_offset, uint64_t bytes, std::atomic<bool>* lost);
  BarWindow() = default;
  BarWindow(BarWindow&& o) noexcept { *this = std::move(o); }
  BarWindow& operator=(BarWindow&& o) noexcept;
  BarWindow(const BarWindow&) = delete;
  BarWindow& operator=(const BarWindow&) = delete;
  ~BarWindow() { Reset(); }
  uint8_t* cpu() const { return cpu_; }
  bool mapped() const { return cpu_ != nullptr; }

 private:
  void Reset();
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  uint8_t* cpu_ = nullptr;
  BarGuard guard_;
};

// A group process's mapping of the CMB its primary published (c.cmb_*), for
// its own SQs: maps it through `bar_fd` (the BAR fd the primary passed) and
// hands it to `set` (ImportedTransport::SetCmb). On failure logs why and
// leaves SQs in host memory (use_cmb_sqs is not strict).
void LogCmbMapFailure(const std::string& bdf, const std::string& why);
template <typename Imported, typename Entry>
void MapPublishedCmb(Imported& t, const Entry& c, const std::string& bdf) {
  if (c.cmb_bytes == 0) return;
  auto w = BarWindow::Map(t.bar_fd(), bdf, c.cmb_bar, c.cmb_bar_offset, c.cmb_bytes, t.lost_flag());
  if (!w) {
    LogCmbMapFailure(bdf, w.error().message);
    return;
  }
  auto keep = std::make_shared<BarWindow>(std::move(*w));
  t.SetCmb(Transport::CmbWindow{keep->cpu(), c.cmb_controller_address, c.cmb_bytes, c.cmb_bar, c.cmb_bar_offset},
           keep);
}
// The CMB as a Transport::CmbWindow once mapped.
inline Transport::CmbWindow MakeWindow(const CmbLocation& l, const BarWindow& w) {
  return Transport::CmbWindow{w.cpu(), l.controller_address, l.bytes, l.bar, l.bar_offset};
}

}  // namespace nvmux::pcie
