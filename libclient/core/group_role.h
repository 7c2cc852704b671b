// GroupRole: what attaching and detaching a controller does differently in
// a group's primary and in its secondaries. The driver knows only this
// interface; the implementations live with their role (primary/
// primary_role.h, secondary/secondary_role.h), and nvmux_client, which
// every program links, picks one for the process's role (libclient/
// connect.cc, RoleOf). A standalone process has none (null), and its
// controllers are private.
//
//   attach, kPrepare:  Import (a controller the group already has), else the
//                      driver's own preparation plus Share (primary)
//   attach, kFinish:   Publish
//   after every init:  AfterInit (the controller was disabled: no queue of
//                      an earlier life exists on the device)
//   detach:            Leave while its queue pairs still work (a secondary
//                      deletes its queues), Retire once the controller's
//                      hooks are disarmed (the primary retires the entry)
//
// Thread safety: the thread that attaches or detaches the controller.
// Ownership: roles are stateless singletons that outlive every controller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "libclient/core/transport.h"
#include "nvmux/controller.h"

namespace nvmux {

struct ControllerState;

// Where a controller's admin queue lies in its DMA memory (controller.cc):
// the SQ, then the CQ, then one page for identify data.
struct AdminLayout {
  uint16_t entries = 0;
  size_t sq_bytes = 0;
  size_t cq_bytes = 0;
  size_t bytes() const { return sq_bytes + cq_bytes + 4096; }
};

class GroupRole {
 public:
  virtual ~GroupRole() = default;

  // kPrepare of a controller the group already has: a secondary imports
  // what the primary published (`transport` is null: it reaches the device
  // through the primary's fds); a primary that took the group over adopts
  // it through `transport` (its adopted connection). Returns null, taking
  // nothing, when `trid` is not such a controller (a primary's new one).
  [[nodiscard]] virtual Result<std::unique_ptr<ControllerState>> Import(Env& env, const TransportId& trid,
                                                                        const ControllerOptions& options,
                                                                        std::unique_ptr<Transport>& transport) const = 0;
  // The most admin entries the role's admin queue can have (the primary's
  // shared ring is bounded; 4096 otherwise).
  virtual uint16_t MaxAdminEntries() const = 0;
  // kPrepare of a new controller: allocates its admin queue memory and
  // opens its admin queue (the primary: in the group, with the controller's
  // shared entry reserved). REQUIRES: s.transport opened, CAP read.
  [[nodiscard]] virtual Status Share(ControllerState& s, const AdminLayout& layout) const = 0;
  // kFinish: makes the ready controller known to the group (primary).
  [[nodiscard]] virtual Status Publish(Controller& ctrlr) const = 0;
  // After an init or reset disabled and re-enabled the controller.
  virtual void AfterInit(Controller& ctrlr) const = 0;
  // Detach begins, queue pairs and admin queue still usable.
  virtual void Leave(ControllerState& s) const = 0;
  // Detach, the controller's callbacks and hooks disarmed.
  virtual void Retire(ControllerState& s) const = 0;
};

}  // namespace nvmux
