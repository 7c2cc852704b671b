// The secondary's part of attaching and detaching a controller
// (libclient/core/group_role.h): a secondary never brings a controller up.
// It imports what the group's primary published: the device's fds (from
// the primary through DPDK's IPC, or from any process holding them when
// DPDK's primary is gone), an ImportedTransport over them, the identify
// data and the group's admin queue. Leaving, it deletes its own I/O queues
// on the device and gives their ids back, since only dead processes are
// reaped.
//
// Errors of Import: ENOENT (nothing published under the trid: names the
// trid and nvmuxd's -r), ENXIO/EPERM from obtaining the fds (naming the
// way out), and what opening the shared admin queue reports.
#pragma once

#include "libclient/core/group_role.h"

namespace nvmux {

// The one secondary role (stateless).
const GroupRole& SecondaryRole();

}  // namespace nvmux
