// EAL: DPDK's environment abstraction layer, brought up once per process.
//
// Every process of a group passes --file-prefix=nvmux<N>, --iova-mode=va (pa
// when a controller bound to uio_pci_generic needs it),
// --base-virtaddr=0x200000000000 (so shared memory maps at the same address
// everywhere), --no-telemetry, --single-file-segments (one hugepage file per
// memseg list, so a vfio-user device can take contiguous pages as one DMA
// region) and --no-pci (unless it drives PCIe devices); memory is dynamic.
// A secondary never passes -m, --no-huge, --in-memory or --legacy-mem (the
// last two hang or fail). A standalone process uses
// --in-memory: private memory, no files left behind.
//
// EAL's log is routed into nvmux's (shm/base/log.h) and is quiet at the
// default level. EAL pins the main thread to its main lcore; InitEal() puts
// the thread back on its previous cores (or the requested ones), because
// nvmux pins its own threads.
//
// Thread safety: InitEal/CleanupEal from the main thread, once per process
// (DPDK cannot re-initialise after cleanup).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shm/base/result.h"
#include "shm/core_set.h"
#include "shm/dma.h"

namespace nvmux::shm {

enum class EalProcType { kPrimary, kSecondary, kInMemory };

struct EalOptions {
  std::string program_name = "nvmux";
  std::string file_prefix;            // "nvmux<N>"
  EalProcType proc_type = EalProcType::kPrimary;
  std::optional<CoreSet> cores;       // where the main thread runs afterwards
  size_t mem_mb = 0;                  // -m preallocation; primary/in-memory only
  bool pci = false;                   // drive PCIe devices (no --no-pci)
  bool iova_pa = false;               // --iova-mode=pa instead of va (see PciNeedsPhysicalAddresses)
  // DPDK's runtime directory (given as RUNTIME_DIRECTORY, which DPDK honours
  // for every user); runtime files go to <run_dir>/dpdk/<file_prefix>.
  // Empty: DPDK's own default (/var/run for root, XDG_RUNTIME_DIR or /tmp).
  std::string run_dir;
  // Primary: the hugetlbfs mount (or directory in one) for the group's
  // hugepage files (--huge-dir). Empty: $NVMUX_HUGE_DIR, else DPDK's choice
  // when this user may write there, else the first hugetlbfs mount this user
  // may write (scripts/setup.sh user mounts one for a service account).
  std::string huge_dir;
};

// The hugepage directory a primary of this user would use (see
// EalOptions::huge_dir); "" means DPDK's own choice.
// Errors: EACCES when no hugetlbfs mount is writable by this user (names
// them and scripts/setup.sh user).
Result<std::string> ChooseHugeDir(const std::string& requested);

// Should this process's EAL use IOVA = PA? NVMUX_IOVA_MODE=pa|va decides
// when set; otherwise yes when an NVMe controller (PCI class 0x010802) is
// bound to uio_pci_generic, which cannot translate device addresses (DPDK's
// PCI bus decides the same way). Every process of a group sees the same
// sysfs, so they agree. Errors: EINVAL naming a bad NVMUX_IOVA_MODE.
Result<bool> PciNeedsPhysicalAddresses();

// True when DMA addresses are physical (EAL in IOVA = PA mode).
bool IovaIsPhysical();

// The argv EAL will see; exposed for tests.
std::vector<std::string> BuildEalArgs(const EalOptions& options);

// Errors: EBUSY if EAL was already initialised in this process (one group per
// process), EINVAL for options a secondary must not use, ENOMEM when no
// hugepages are reserved (names the script that reserves them), and EAL's own
// failures with its message.
Status InitEal(const EalOptions& options);
void CleanupEal();

// 2 MiB hugepages reserved and free, from /proc/meminfo.
struct HugepageCounts {
  size_t total = 0;
  size_t free = 0;
};
HugepageCounts ReadHugepageCounts();

// DPDK's hugepage heap as every process of the group sees it (memzones
// excluded). REQUIRES: InitEal succeeded.
struct HeapStats {
  size_t allocated_bytes = 0;
  size_t allocations = 0;
};
HeapStats ReadHeapStats();

// Memzones (named, shared, same address in every process of the group).
// Errors: ENOMEM/EEXIST from reserve, ENOENT from lookup.
Result<void*> ReserveMemzone(const char* name, size_t size);
Result<void*> LookupMemzone(const char* name, size_t& size_out);
void FreeMemzone(const char* name);

// Device address of any hugepage memory of this process's EAL.
uint64_t VirtToIova(const void* addr);

// DMA memory from DPDK's hugepage heap (IOVA = VA in --iova-mode=va).
class RteDmaBackend final : public DmaBackend {
 public:
  void* Allocate(size_t size, size_t align, std::string_view tag) override;
  void Free(void* addr) override;
  uint64_t VirtToIova(const void* addr) const override;
  void* IovaToVirt(uint64_t iova) const override;
  size_t FreeBytes() const override;
};

}  // namespace nvmux::shm
