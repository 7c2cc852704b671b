// The driver's view of a controller its group's primary published: both
// roles build a ControllerState from the shared entry this way (a
// secondary joining, a primary that took the group over adopting).
//
// Thread safety: the attaching thread. Errors: those of opening the shared
// admin queue (SharedAdminQueue::Open).
#pragma once

#include "libclient/core/controller_state.h"
#include "libclient/shared/shared_controller.h"

namespace nvmux {

// Fills `s` from s.shared (REQUIRES: set, published): capabilities,
// identify data, namespaces, granted queues, transfer limit, admin size,
// and opens the group's admin queue for this process.
[[nodiscard]] Status FillFromPublished(ControllerState& s);

}  // namespace nvmux
