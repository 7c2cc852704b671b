#include "libclient/vfiouser/vfio_user_registers.h"

#include <cstdint>

namespace nvmux::vfiouser {

Status VfioUserRegisters::EnableBusMaster() {
  constexpr uint64_t kCommandRegister = 0x04;
  // Memory space (bit 1), bus master (bit 2), INTx disable (bit 10).
  const uint16_t command = (1u << 1) | (1u << 2) | (1u << 10);
  const uint8_t bytes[2] = {static_cast<uint8_t>(command & 0xFF), static_cast<uint8_t>(command >> 8)};
  return client_.WriteRegion(kPciConfigRegion, kCommandRegister, bytes);
}

}  // namespace nvmux::vfiouser
