// AdoptTransport: how a primary that took its group over (shm::Group
// took_over()) reaches a controller the dead primary published: the
// device serves one connection and holds the group's DMA maps on it, so
// the new primary adopts that connection (a duplicate taken from a live
// process of the group, fd_holders.h) instead of opening another, and maps
// the doorbells from the same fd. Registers go over the adopted
// connection; the admin queue and the I/O queues of running processes are
// left as they are.
// NVMe/TCP is the exception: the admin connection died with the primary,
// and with it the association (NVMe-oF: an association lives as long as
// its admin queue), so the new primary opens a new one (TcpTransport::Open
// with `options`) and runs the init machine again on the group's admin
// ring (ControllerState::adopted_reinit); secondaries of the old association
// then see their controller lost (ENXIO) and attach again.
//
// Errors: ENOENT (nothing to adopt: not a took-over primary, or `trid` not
// published: open it the ordinary way), ENOTSUP (only vfiouser, pcie and
// tcp controllers are adopted; pcie: from the BAR and config fds the group's
// processes hold), and what taking the fds reports (EPERM names
// the ptrace requirement).
#pragma once

#include <memory>

#include "libclient/core/transport.h"
#include "nvmux/controller.h"
#include "nvmux/env.h"
#include "nvmux/transport_id.h"

namespace nvmux {

[[nodiscard]] Result<std::unique_ptr<Transport>> AdoptTransport(Env& env, const TransportId& trid,
                                                                const ControllerOptions& options);

}  // namespace nvmux
