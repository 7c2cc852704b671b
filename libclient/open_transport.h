// OpenTransport: the transport for a transport id, chosen by trtype (one
// switch over the types nvmux knows; no static registration). Internal to
// nvmux_client: Controller::Connect and the probes (probe.cc) use it.
//
// Errors: ENOTSUP (pcie: roadmap), and the transport's own (vfiouser:
// ENOENT/ECONNREFUSED naming DIR/cntrl, EPROTO; tcp: ECONNREFUSED/ETIMEDOUT
// naming the address, the Fabrics Connect status).
#pragma once

#include <memory>

#include "libclient/core/transport.h"
#include "nvmux/controller.h"
#include "nvmux/transport_id.h"

namespace nvmux {

[[nodiscard]] Result<std::unique_ptr<Transport>> OpenTransport(const TransportId& trid,
                                                                      const ControllerOptions& options);

}  // namespace nvmux
