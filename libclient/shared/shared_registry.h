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

// The table, created on first use when `create` (primary).
// Errors: ENOENT (no table: the primary published no controller yet),
// lock and segment errors.
[[nodiscard]] Result<SharedControllerTable*> FindControllerTable(shm::Group& group, bool create);

// Primary: a fresh entry for `trid` (zeroed; in_use is set by Publish).
// Errors: EEXIST (already attached by this group), ENOSPC (table full).
[[nodiscard]] Result<SharedController*> ReserveSharedController(shm::Group& group, const std::string& trid);
// Primary: makes the entry visible to secondaries (release ordering).
void PublishSharedController(SharedController& c);
// Primary: the entry is free again (on detach).
void ReleaseSharedController(shm::Group& group, SharedController& c);

// Published entries, in index order.
[[nodiscard]] Result<std::vector<SharedController*>> PublishedControllers(shm::Group& group);
// The published entry for `trid`. Errors: ENOENT naming the trid and what
// the primary did publish.
[[nodiscard]] Result<SharedController*> FindSharedController(shm::Group& group, const std::string& trid);

}  // namespace nvmux
