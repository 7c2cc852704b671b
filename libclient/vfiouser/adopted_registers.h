// AdoptedRegisters: register access over a vfio-user connection adopted
// from a dead primary (Client::Adopt), for the primary that takes its group
// over. The device keeps the connection's DMA maps and doorbell mapping;
// REGION_READ/WRITE are sent on it, and DEVICE_GET_IRQ_INFO/SET_IRQS once
// when the adopter registers the interrupt vectors again.
//
// Thread safety: as VfioUserRegisters. Ownership: owns the adopted client.
#pragma once

#include <memory>

#include "libclient/core/register_io.h"
#include "libclient/vfiouser/client.h"
#include "libclient/vfiouser/vfio_user_registers.h"

namespace nvmux::vfiouser {

class AdoptedRegisters final : public RegisterIo {
 public:
  explicit AdoptedRegisters(UniqueFd connection)
      : client_(Client::Adopt(std::move(connection))), registers_(*client_) {}

  Result<uint32_t> Read32(uint32_t offset) override { return registers_.Read32(offset); }
  Result<uint64_t> Read64(uint32_t offset) override { return registers_.Read64(offset); }
  Status Write32(uint32_t offset, uint32_t value) override { return registers_.Write32(offset, value); }
  Status Write64(uint32_t offset, uint64_t value) override { return registers_.Write64(offset, value); }
  // The adopted connection, for the adopting primary's DEVICE_SET_IRQS.
  Client& client() { return *client_; }

 private:
  std::unique_ptr<Client> client_;
  VfioUserRegisters registers_;
};

}  // namespace nvmux::vfiouser
