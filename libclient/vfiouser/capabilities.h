// The JSON capabilities string carried by VERSION.
//
// Format (vfio-user.rst): {"capabilities": {"max_msg_fds": N,
// "max_data_xfer_size": N, "max_dma_maps": N, "pgsizes": N,
// "migration": {...}}}. Unknown keys are ignored; known keys with a value of
// the wrong type, or text that is not one JSON object, are EINVAL naming the
// key.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "libclient/vfiouser/protocol.h"
#include "shm/base/result.h"

namespace nvmux::vfiouser {

struct Capabilities {
  uint32_t max_msg_fds = kDefaultMaxMsgFds;
  uint64_t max_data_xfer_size = kDefaultMaxDataXferSize;
  uint32_t max_dma_maps = 65535;
  uint64_t pgsizes = 4096;  // bitmap of supported page sizes
};

// Parses a capabilities string; an empty string gives the defaults.
[[nodiscard]] Result<Capabilities> ParseCapabilities(std::string_view json);

// Formats caps as a JSON capabilities object (without the trailing NUL).
std::string FormatCapabilities(const Capabilities& caps);

}  // namespace nvmux::vfiouser
