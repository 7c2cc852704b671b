// VfioUserRegisters: the RegisterIo of a controller behind a vfio-user
// server: BAR0 registers through REGION_READ/REGION_WRITE (the doorbell page
// is mapped separately from the BAR's sparse-mmap area), and the PCI command
// register in config space.
//
// Thread safety: as vfiouser::Client (calls are serialised by the client).
// Errors: whatever the client reports (EPROTO, ENXIO when the server is gone).
#pragma once

#include "libclient/core/register_io.h"
#include "libclient/vfiouser/client.h"

namespace nvmux::vfiouser {

class VfioUserRegisters final : public RegisterIo {
 public:
  // Borrows `client` for the lifetime of this object.
  explicit VfioUserRegisters(Client& client) : client_(client) {}

  Result<uint32_t> Read32(uint32_t offset) override { return client_.Read32(kPciBar0Region, offset); }
  Result<uint64_t> Read64(uint32_t offset) override { return client_.Read64(kPciBar0Region, offset); }
  Status Write32(uint32_t offset, uint32_t value) override { return client_.Write32(kPciBar0Region, offset, value); }
  Status Write64(uint32_t offset, uint64_t value) override { return client_.Write64(kPciBar0Region, offset, value); }

  // Sets Memory Space Enable and Bus Master Enable in the PCI command
  // register (0x404 with INTx disabled, as SPDK's host writes), before the
  // controller may DMA.
  Status EnableBusMaster();

 private:
  Client& client_;
};

}  // namespace nvmux::vfiouser
