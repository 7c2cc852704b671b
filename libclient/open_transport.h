// OpenTransport: the transport for a transport id, chosen by trtype (one
// switch over the types nvmux knows; no static registration). Internal to
// nvmux_client: Controller::Connect and the probes (probe.cc) use it.
//
// Errors: ENOTSUP (tcp: roadmap), and the transport's own (vfiouser:
// ENOENT/ECONNREFUSED naming DIR/cntrl, EPROTO; pcie: see pcie_transport.h).
#pragma once

#include <memory>

#include "libclient/core/transport.h"
#include "nvmux/transport_id.h"

namespace nvmux {

[[nodiscard]] Result<std::unique_ptr<Transport>> OpenTransport(const TransportId& trid);

}  // namespace nvmux
