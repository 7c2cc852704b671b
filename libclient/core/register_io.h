// RegisterIo: the controller-register half of a transport (BAR0 below the
// doorbells). vfio-user implements it with REGION_READ/WRITE, pcie with the
// mapped BAR, tcp with Property Get/Set; tests with a fake register file.
//
// Thread safety: calls for one controller are serialised by the caller.
// Errors: ENXIO when the device is gone, EPROTO on a transport error.
#pragma once

#include <cstdint>

#include "shm/base/result.h"

namespace nvmux {

class RegisterIo {
 public:
  virtual ~RegisterIo() = default;
  virtual Result<uint32_t> Read32(uint32_t offset) = 0;
  virtual Result<uint64_t> Read64(uint32_t offset) = 0;
  virtual Status Write32(uint32_t offset, uint32_t value) = 0;
  virtual Status Write64(uint32_t offset, uint64_t value) = 0;
};

}  // namespace nvmux
