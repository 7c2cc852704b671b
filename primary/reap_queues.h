// Deleting a dead process's I/O queues on a shared controller (the driver's
// part of reaping, shm/process_table.h), and what happens when the device
// does not confirm a deletion.
//
// Order, for each queue id the dead process owned (SharedQid):
//  1. under the controller's lock: kInUse -> kDeleting (intent; a reaper that
//     dies is finished by the next one, which repeats the deletes: an
//     "Invalid Queue Identifier" answer means an earlier one succeeded);
//  2. no lock held: Delete I/O SQ, then Delete I/O CQ, through the shared
//     admin queue (device round trips: never under the group lock, which
//     every process's DMA allocation, registration and lookup needs);
//  3. confirmed: on_device = 0, then the id is freed (the dead process's
//     DMA memory, rings included, is freed afterwards by the locked reap
//     hook). Not confirmed (error or timeout): the id becomes kQuarantined,
//     the rings' DMA records move to shm::kQuarantineOwner and the rest of
//     the dead process's memory (the data buffers commands still on the
//     queue may write) to shm::QuarantineOwnerOf(slot), so none of it is
//     handed to anyone while the device may still use it. Quarantined ids
//     are retried (RetryQuarantinedQueues) and all released after a
//     controller reset (ReleaseQuarantinedAfterReset); the buffers go when
//     the slot's last quarantined id (on any controller) is freed.
//
// Events polled during these round trips that need round trips or DMA
// memory themselves (a namespace change) are deferred to the next ordinary
// admin poll (ControllerState::defer_events).
//
// Thread safety: the controller's owning thread (nvmuxd's reaper thread);
// no group lock and no controller lock may be held by the caller.
#pragma once

#include <cstdint>

namespace nvmux {

class Controller;

// The device cleanup hook for dead process slot `slot` (idempotent): deletes
// its queues as above and drops its admin mailbox and in-flight admin
// commands. Returns how many items were released.
uint64_t DeleteDeadQueues(Controller& ctrlr, uint32_t slot);

// Tries to delete every quarantined queue again; returns how many ids were
// freed. Blocks up to two admin timeouts per quarantined id.
uint64_t RetryQuarantinedQueues(Controller& ctrlr);

// After a controller reset (every I/O queue deleted on the device): frees
// every quarantined id and its rings. Returns how many ids were freed.
uint64_t ReleaseQuarantinedAfterReset(Controller& ctrlr);

}  // namespace nvmux
