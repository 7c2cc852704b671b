// The group's registry of shared controllers (a SharedControllerTable named
// kSharedControllersName in the segment): the primary reserves and
// publishes entries; secondaries find them by transport id.
//
// Thread safety: every call takes the group lock.
#pragma once

#include <string>
#include <vector>

#include "libclient/shared/shared_controller.h"
#include "shm/group.h"

namespace nvmux {

// Constructs the (empty) table: the primary creating a group, before the
// segment is published (shm::GroupOptions::construct_tables), so no process
// ever allocates in the segment while others use it.
// `capacity` (1..kMaxSharedControllers, nvmuxd --max-controllers) is how many
// entries Reserve may use.
[[nodiscard]] Status ConstructControllerTable(shm::Segment& segment, const shm::Segment::Guard& guard,
                                              uint32_t capacity = kMaxSharedControllers);
// Entries the table may use (its capacity; kMaxSharedControllers for a table
// that recorded none).
uint32_t ControllerTableCapacity(const SharedControllerTable& table);

// The table. Errors: ENOENT (no table: the group was not created by an
// nvmux primary), lock and segment errors.
[[nodiscard]] Result<SharedControllerTable*> FindControllerTable(shm::Group& group);

// What Reserve hands over besides the entry: memory a dead reserver or
// earlier attach left on the entry (group-owned admin queue and shadow
// doorbell pages; quarantined I/O rings of the entry's previous use). The
// device may still write into it until the new attach disabled the
// controller: the caller frees it after its initialisation (Adopt and drop,
// DmaAllocator::ReleaseQuarantined).
struct Reservation {
  SharedController* entry = nullptr;
  std::vector<uint64_t> stale_group_iovas;
  std::vector<uint64_t> stale_quarantined_iovas;
};

// Primary: a fresh entry for `trid` (zeroed but for attach_generation,
// which goes up by one; in_use is kEntryReserved until Publish), recording
// this process as its reserver (slot, generation). Takes a free entry, else
// reclaims a retired one no live process still uses (no registered mailbox
// of a live slot generation). An entry for `trid` still reserved by a dead
// process (a primary killed mid-attach) is reclaimed.
// Errors: EEXIST (already attached by this group, or being attached by a
// live process: names it), ENOSPC (table full: every entry of its capacity
// attached or retired and still held by a live process; names the limit
// and nvmuxd's --max-controllers).
[[nodiscard]] Result<Reservation> ReserveSharedController(shm::Group& group, const std::string& trid);
// Primary: makes the entry visible to secondaries (release ordering).
void PublishSharedController(SharedController& c);
// Primary: the controller is detached (on detach, device removal or
// failure). The entry is retired: unpublished, and marked `removed` unless
// it is already `failed` or `removed`, so processes still holding it see
// their controller gone (ENXIO) at their next health check; it is reused by
// a later Reserve only once none of them uses it any more.
void ReleaseSharedController(shm::Group& group, SharedController& c);

// True when the entry no longer serves the controller a process imported at
// `attach_generation`: retired, freed, reused for another attach, or marked
// removed/failed by the primary. Reads without the lock (atomic loads).
bool SharedControllerGone(SharedController& c, uint32_t attach_generation);

// Published entries, in index order.
[[nodiscard]] Result<std::vector<SharedController*>> PublishedControllers(shm::Group& group);
// The published entry for `trid`. Errors: ENOENT naming the trid and what
// the primary did publish.
[[nodiscard]] Result<SharedController*> FindSharedController(shm::Group& group, const std::string& trid);

}  // namespace nvmux
