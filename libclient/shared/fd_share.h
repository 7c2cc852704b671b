// FdShare: the file descriptors a secondary needs to drive a controller the
// primary attached — the doorbell mapping of a vfio-user device, the
// doorbell kick eventfd (the server's ioeventfd, when it offered one), and the
// vfio-user connection itself (a secondary keeps a duplicate open, so the
// device keeps its DMA maps when the primary dies), and the MSI-X table
// when the primary mapped it (hybrid queue pairs mask their vector through
// it) — passed with DPDK's
// multi-process IPC (SCM_RIGHTS under the hood).
//
// The primary offers each controller under its index in the group's
// SharedControllerTable; a secondary asks for one index.
//
// Thread safety: Offer/Withdraw from any thread; requests are served on
// DPDK's IPC thread. REQUIRES: EAL is up.
#pragma once

#include <cstdint>

#include "libclient/core/transport.h"
#include "shm/base/result.h"
#include "shm/base/unique_fd.h"

namespace nvmux {

struct SharedFds {
  UniqueFd doorbells;          // mmap-able fd of the doorbell area
  uint64_t doorbell_file_offset = 0;
  uint64_t doorbell_bytes = 0;
  UniqueFd connection;         // the vfio-user socket (a duplicate)
  UniqueFd kick;               // doorbell kick eventfd (Transport::DoorbellKickFd); may be invalid
  // The device's MSI-X table, when the primary mapped it (Transport::
  // Exported's msix_*): this process masks its own hybrid vectors through
  // it. May be invalid.
  UniqueFd msix;
  MsixTableArea msix_area{};
};

// Primary: serve `index`. The fds stay owned by the caller and must stay
// open until Withdraw(index). Errors: EAL's registration failure.
[[nodiscard]] Status OfferFds(uint32_t index, const Transport::Exported& exported);
void WithdrawFds(uint32_t index);

// Secondary: ask the primary. Errors: ENXIO (no primary answered within
// 1 s: is nvmuxd alive?), ENOENT (the primary does not offer that index).
[[nodiscard]] Result<SharedFds> RequestFds(uint32_t index);

}  // namespace nvmux
