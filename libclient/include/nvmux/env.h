// Env: this process's nvmux environment — hugepage memory through DPDK, and
// membership of a shared-memory group (primary or secondary) or none
// (standalone). Every other object of the API needs one.
//
//   nvmux::EnvOptions options;
//   options.group_id = 0;                       // secondary of group 0; unset: standalone
//   auto env = nvmux::Env::Init(options);
//
// Thread safety: Init and destruction on the main thread, once per process
// (DPDK initialises once); AllocDma from any thread.
// Ownership: controllers, queue pairs and DMA buffers borrow the Env and must
// be destroyed before it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nvmux/dma_buffer.h"
#include "nvmux/result.h"

namespace nvmux {

namespace shm {
class Group;
class MemEventSubscription;
}  // namespace shm
class DmaPageMap;

// The nvmux library this process runs with (nvmux/version.h has the release
// the application was compiled against, NVMUX_VERSION_*), and the
// shared-memory ABI its groups use.
struct VersionInfo {
  int major;
  int minor;
  int patch;
  uint32_t abi;        // processes of one group must agree on it
  const char* string;  // "0.1.0"
};
VersionInfo Version();

enum class Role { kStandalone, kPrimary, kSecondary };
const char* ToString(Role role);

struct EnvOptions {
  std::string name = "nvmux";       // shown in the group's process table
  std::optional<int> group_id;      // none: standalone (private memory)
  bool primary = false;             // with group_id: create the group (nvmuxd)
  std::string core_mask;            // "0x3", "[0-1]", "0,2"; empty: keep affinity
  size_t mem_mb = 0;                // hugepage memory to preallocate (primary/standalone)
  // SPDK's pci_allowed: the PCI addresses ("0000:04:00.0" or "04:00.0") a
  // probe with no traddr ('trtype:pcie') may enumerate. Empty: the
  // PCI_ALLOWED environment variable's list, else every NVMe controller
  // bound to vfio-pci or uio_pci_generic. Naming a controller by traddr is
  // not limited by it.
  std::vector<std::string> pci_allowed;
  // A primary creating its group (nvmuxd's options); ignored otherwise.
  std::string access_group;         // Unix group that may use the group's files; empty: this user only
  uint32_t max_processes = 64;      // process slots, 1..64 (ENOSPC when full)
  uint32_t max_controllers = 8;     // controllers the group holds, 1..8 (ENOSPC when full)
  size_t dma_pool_mb = 128;         // the group's DMA memory (ENOMEM when used up)
};

class Env {
 public:
  // Errors: EINVAL (bad core mask or pci_allowed entry, naming it), ENOMEM (no hugepages: names
  // scripts/hugepages.sh), ENOENT/ESTALE (group absent or dead: names the
  // group and what to start or clean), EBUSY (a second Env in this process),
  // EPROTO (group of another ABI version).
  [[nodiscard]] static Result<std::unique_ptr<Env>> Init(const EnvOptions& options);
  ~Env();
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

  Role role() const;
  std::optional<int> group_id() const;
  const std::string& name() const { return name_; }
  // EnvOptions::pci_allowed, normalised ("0000:04:00.0"); empty: none given.
  const std::vector<std::string>& pci_allowed() const { return pci_allowed_; }

  // Zeroed DMA memory. `align` a power of two (>= 4 bytes). Memory is freed
  // with its DmaBuffer, or when this process dies; group-owned memory
  // (DmaOwner::kGroup, for state the whole group needs, like admin
  // queues) outlives its allocator's death (see nvmux/dma_buffer.h).
  // Errors: EINVAL (size 0, bad alignment), ENOMEM (out of hugepage memory;
  // says how much is free).
  [[nodiscard]] Result<DmaBuffer> AllocDma(size_t size, size_t align = 4096, std::string_view tag = "user",
                                           DmaOwner owner = DmaOwner::kProcess);

  // Is [data, data + length) DMA memory? (What the driver checks before
  // handing a buffer to a device.)
  bool IsDmaMemory(const void* data, size_t length) const;

  // For the driver's layers: the group, and the map of DMA pages.
  shm::Group& group() { return *group_; }
  const DmaPageMap& dma_pages() const { return *pages_; }

 private:
  Env() = default;
  std::string name_;
  std::vector<std::string> pci_allowed_;
  std::unique_ptr<shm::Group> group_;
  std::unique_ptr<DmaPageMap> pages_;
  std::unique_ptr<shm::MemEventSubscription> page_events_;
};

}  // namespace nvmux
