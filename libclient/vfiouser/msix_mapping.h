// MsixMapping: the MSI-X table of a vfio-user device mapped into this
// process, when the server offers it as mmap-able, so that a queue pair in
// hybrid mode masks its vector while it spins and unmasks it before it
// blocks with a store (PCI Vector Control bit 0), not a message.
//
// Where the table is comes from the device's MSI-X capability (Table BIR
// and offset, config space); the region must offer a sparse mmap area that
// covers the table.
// Errors: ENOTSUP naming why there is no mapping (no MSI-X capability, the
// table's region not mmap-able), or the client's.
// Thread safety: ControlWord pointers are written by the thread owning
// the vector's queue pair.
#pragma once

#include <cstdint>

#include "libclient/core/transport.h"
#include "libclient/vfiouser/client.h"
#include "shm/base/result.h"

namespace nvmux::vfiouser {

// Sets MSI-X Enable (and clears Function Mask) in the device's MSI-X
// capability, as vfio-pci does when its user registers MSI-X triggers: a
// device may not send MSI-X messages before (SPDK's target sends none;
// nvmux-emu does not check). Errors: ENOTSUP (no MSI-X capability), the
// client's.
[[nodiscard]] Status EnableMsix(Client& client);

class MsixMapping {
 public:
  MsixMapping() = default;
  [[nodiscard]] static Result<MsixMapping> Map(Client& client);
  // The same table mapped from what another process's mapping exported (a
  // secondary, from the fd nvmuxd passed: fd_share.h). Errors: from mmap.
  [[nodiscard]] static Result<MsixMapping> FromFd(UniqueFd fd, const MsixTableArea& area);

  bool mapped() const { return area_.data() != nullptr; }
  uint32_t vectors() const { return vectors_; }
  // Vector v's Vector Control word, or null (not mapped, or beyond the table).
  volatile uint32_t* ControlWord(uint16_t vector) const;

  // For FromFd in another process.
  int fd() const { return fd_.get(); }
  MsixTableArea area() const { return {file_offset_, area_.size(), table_in_area_, vectors_}; }

 private:
  MappedArea area_;
  UniqueFd fd_;                  // the region's fd, kept to pass on
  uint64_t file_offset_ = 0;     // of area_ in fd_
  uint64_t table_in_area_ = 0;   // offset of table entry 0 in area_
  uint32_t vectors_ = 0;
};

}  // namespace nvmux::vfiouser
