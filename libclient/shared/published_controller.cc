#include "libclient/shared/published_controller.h"

#include <algorithm>

#include "libclient/shared/shared_admin_queue.h"
#include "shm/group.h"

namespace nvmux {

Status FillFromPublished(ControllerState& s) {
  const SharedController& c = *s.shared;
  s.data.cap = spec::Cap{c.cap};
  s.data.vs = spec::Vs{c.vs};
  s.data.ctrlr = c.ctrlr;
  s.data.io_sq_granted = c.io_sq_granted;
  s.data.io_cq_granted = c.io_cq_granted;
  for (uint32_t i = 0; i < c.num_namespaces && i < kMaxSharedNamespaces; ++i) {
    s.data.active_nsids.push_back(c.nsids[i]);
    s.data.namespaces.push_back(c.namespaces[i]);
    s.namespaces.push_back(std::make_unique<Namespace>(c.nsids[i], c.namespaces[i], c.ctrlr));
  }
  s.max_transfer = c.max_transfer;
  s.qid_used.assign(size_t{std::min(c.io_sq_granted, c.io_cq_granted)} + 1, false);
  s.options.admin_queue_size = static_cast<uint16_t>(c.admin_entries);
  shm::Group& group = s.env.group();
  auto admin = SharedAdminQueue::Open(*s.shared, s.doorbells(0), group.self_slot(),
                                      group.processes().self_generation());
  if (!admin) return admin.error();
  s.shared_admin = admin->get();
  s.shared_admin->EnableWakeups(group.processes());
  s.admin = std::move(*admin);
  return Ok();
}

}  // namespace nvmux
