// The primary's part of attaching and detaching a controller
// (libclient/core/group_role.h):
//  - a new controller: its group entry is reserved first (a primary dying
//    before it publishes leaves an entry the next Reserve reclaims), the
//    admin queue is group-owned DMA memory (it outlives this primary: a new
//    one adopts it), and once initialised it is published: identify data,
//    the fds offered through DPDK's IPC and recorded for takeover
//    (fd_holders.h), the reaper's device hook (reap_queues.h) installed;
//  - a primary that took the group over adopts each published controller
//    through its adopted connection (adopt_transport.h) and the admin
//    queue's memory, without initialising it again;
//  - after each init the leftovers of earlier lives (stale memory,
//    quarantined queue ids) are released: the device has none of them now;
//  - detaching withdraws the fds and retires the group entry.
//
// Errors: ENOTSUP (a transport that cannot be shared), ENOSPC (no free
// controller entry), ENOMEM (group DMA memory), EEXIST (the trid is
// already attached in the group), and what adopting reports.
#pragma once

#include "libclient/core/group_role.h"

namespace nvmux {

// The one primary role (stateless).
const GroupRole& PrimaryRole();

}  // namespace nvmux
