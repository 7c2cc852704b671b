// PCI functions as Linux's sysfs shows them (/sys/bus/pci/devices/<bdf>):
// which NVMe controllers exist, which kernel driver each is bound to, and
// whether nvmux can drive it. The pcie transport reads these facts before it
// asks DPDK's VFIO support for the device, so every refusal names the
// controller, its driver and what to run (scripts/setup.sh config).
//
// Why sysfs and not DPDK's PCI bus for this: see ARCHITECTURE.md, "The pcie
// transport" (Debian's DPDK installs no PCI driver SDK header, so a program
// cannot register a PCI driver with DPDK's bus).
//
// The sysfs root is a parameter so the unit tests run on a fake tree.
// Thread safety: stateless functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shm/base/result.h"

namespace nvmux::pcie {

inline constexpr const char* kSysfsPciDevices = "/sys/bus/pci/devices";
inline constexpr uint32_t kNvmeClassCode = 0x010802;  // mass storage / NVM / NVMe

struct PciFunction {
  std::string bdf;         // "0000:04:00.0"
  uint32_t class_code = 0; // 24 bits
  uint16_t vendor = 0;
  uint16_t device = 0;
  std::string driver;      // bound kernel driver ("nvme", "vfio-pci", ...); empty: none
  int iommu_group = -1;    // -1: the function has no IOMMU group (no IOMMU, or no vfio noiommu)
};

// The function at `bdf` (normalised DDDD:BB:DD.F). Errors: ENODEV naming the
// address when sysfs has no such function.
[[nodiscard]] Result<PciFunction> ReadPciFunction(const std::string& root, const std::string& bdf);

// Every function of class NVMe under `root`, sorted by address.
std::vector<PciFunction> ListNvmeFunctions(const std::string& root);

// How nvmux reaches a function bound to `driver`.
enum class Access { kVfio, kUio };

// Ok with the access method when nvmux can drive `f`, else an error naming
// the address and driver and what to do: ENODEV (not an NVMe controller),
// EBUSY (bound to the kernel's nvme driver, or to a driver nvmux does not
// use), ENXIO (bound to no driver). uio_pci_generic is recognised
// (kUio); whether the process can use it is the transport's decision.
[[nodiscard]] Result<Access> CheckDrivable(const PciFunction& f);

// The input address width of the Intel VT-d IOMMU that translates the DMA of
// `bdf` (CAP.MGAW + 1, from <root>/<bdf>/iommu/intel-iommu/cap); nullopt when
// the function has no IOMMU, it is not Intel's, or the attribute is unreadable.
// nvmux uses virtual addresses (from 2^45 up) as IOVAs, which a 39-bit IOMMU
// cannot translate (QEMU 7.2's intel-iommu default; aw-bits=48 fixes it).
std::optional<unsigned> IommuAddressWidth(const std::string& root, const std::string& bdf);

// SPDK's PCI_ALLOWED: addresses separated by spaces or commas ("04:00.0
// 0000:05:00.0"), normalised. Empty text: no list (every controller).
// Errors: EINVAL naming the entry that is not a PCI address and `source`
// (where the list came from).
[[nodiscard]] Result<std::vector<std::string>> ParseAllowList(const std::string& text,
                                                              const std::string& source = "PCI_ALLOWED");

// What a probe with no traddr enumerates: the addresses of the NVMe
// controllers under `root` bound to vfio-pci or uio_pci_generic, sorted,
// limited to `allowed` (normalised addresses) unless it is empty.
std::vector<std::string> UserspaceNvmeAddresses(const std::string& root, const std::vector<std::string>& allowed);

}  // namespace nvmux::pcie
