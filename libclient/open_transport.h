// OpenTransport: the transport for a transport id, chosen by trtype (one
// switch over the types nvmux knows; no static registration), and the
// process's group role. Internal to nvmux_client, the layer above the
// transports and the roles (primary/, secondary/): Controller::Connect and
// the probes (probe.cc) use it.
//
// Errors: the transport's own (vfiouser: ENOENT/ECONNREFUSED naming
// DIR/cntrl, EPROTO; pcie: see pcie_transport.h; tcp: ECONNREFUSED/ETIMEDOUT
// naming the address, the Fabrics Connect status).
#pragma once

#include <memory>

#include "libclient/core/group_role.h"
#include "libclient/core/transport.h"
#include "nvmux/controller.h"
#include "nvmux/env.h"
#include "nvmux/transport_id.h"

namespace nvmux {

[[nodiscard]] Result<std::unique_ptr<Transport>> OpenTransport(const TransportId& trid,
                                                                      const ControllerOptions& options);

// The role of this process in its group (group_role.h); null standalone.
const GroupRole* RoleOf(Env& env);

// The transport a controller attach starts from, by role: none in a
// secondary (it imports the primary's), the adopted connection in a
// primary that took its group over and finds `trid` published
// (primary/adopt_transport.h), else OpenTransport.
[[nodiscard]] Result<std::unique_ptr<Transport>> OpenForRole(Env& env, const TransportId& trid,
                                                             const ControllerOptions& options);

}  // namespace nvmux
