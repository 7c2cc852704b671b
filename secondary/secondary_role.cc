#include "secondary/secondary_role.h"

#include <atomic>

#include "libclient/core/controller_state.h"
#include "libclient/core/qpair_state.h"
#include "libclient/pcie/pcie_cmb.h"
#include "libclient/shared/fd_holders.h"
#include "libclient/shared/fd_share.h"
#include "libclient/shared/imported_transport.h"
#include "libclient/shared/published_controller.h"
#include "libclient/shared/shared_admin_queue.h"
#include "libclient/shared/shared_registry.h"
#include "libclient/tcp/imported_tcp_transport.h"
#include "shm/group.h"

namespace nvmux {
namespace {

// The fds of a published controller: from the primary through DPDK's IPC,
// or, when no DPDK primary answers (it died; a primary that took the group
// over is DPDK's secondary), from any process holding them (fd_holders.h).
Result<SharedFds> ObtainFds(Env& env, SharedController& c) {
  auto fds = RequestFds(c.index);
  if (fds || fds.error().code != ENXIO) return fds;
  auto taken = TakeSharedFds(c, env.group().processes(), env.group().self_slot());
  if (!taken)
    return Fail(taken.error().code, fds.error().message + "; taking them from another process instead: " +
                                        taken.error().message);
  return taken;
}

class Secondary final : public GroupRole {
 public:
  Result<std::unique_ptr<ControllerState>> Import(Env& env, const TransportId& trid, const ControllerOptions& options,
                                                  std::unique_ptr<Transport>& /*transport*/) const override {
    auto sc = FindSharedController(env.group(), trid.Key());
    if (!sc) return sc.error();
    SharedController& c = **sc;
    auto fds = ObtainFds(env, c);
    if (!fds) return fds.error();
    // Recorded for others once the admin queue is open (fd_holders.h).
    std::vector<int> held;
    for (const UniqueFd* fd : {&fds->doorbells, &fds->connection, &fds->kick})
      if (fd->valid()) held.push_back(fd->get());
    const uint64_t doorbell_file_offset = fds->doorbell_file_offset;
    std::unique_ptr<Transport> transport;
    if (trid.trtype == TransportType::kTcp) {
      // The primary owns the admin connection; this process connects its
      // own I/O queues (imported_tcp_transport.h).
      auto imported = tcp::ImportedTcpTransport::Create(c, trid, std::move(*fds), options);
      if (!imported) return imported.error();
      transport = std::move(*imported);
    } else {
      auto imported = ImportedTransport::Create(c, std::move(*fds));
      if (!imported) return imported.error();
      // SQs in the primary's CMB: this process maps it from its BAR fd.
      if (options.use_cmb_sqs && trid.trtype == TransportType::kPcie) pcie::MapPublishedCmb(**imported, c, trid.traddr);
      transport = std::move(*imported);
    }
    auto s = std::make_unique<ControllerState>(env, trid, options, std::move(transport));
    s->shared = &c;
    s->owns_device = false;
    s->role = this;
    NVMUX_TRY(FillFromPublished(*s));
    if (!held.empty())
      RecordFdHolder(c, s->shared_admin->lock(), env.group().self_slot(), env.group().processes().self_generation(),
                     held, doorbell_file_offset);
    return s;
  }

  uint16_t MaxAdminEntries() const override { return kMaxSharedAdminEntries; }

  Status Share(ControllerState& s, const AdminLayout&) const override {
    return Fail(EINVAL, "controller " + s.trid.ToString() + ": a secondary cannot bring a controller up");
  }

  Status Publish(Controller&) const override { return Ok(); }
  void AfterInit(Controller&) const override {}

  void Retire(ControllerState&) const override {}

  void Leave(ControllerState& s) const override {
    if (s.failed || s.removed || Load(s.shared->removed) != 0 || Load(s.shared->failed) != 0) return;
    // Nobody would delete these queues after us (the reaper only sees dead
    // processes) and their rings go with our memory: delete them now and
    // give their ids back. (Not when the device is gone or failed: nothing
    // would answer.)
    for (QpairState* q : s.qpairs) {
      q->DeleteOnDevice();
      auto lock = s.shared_admin->lock().Lock();
      if (lock) s.shared->qids[q->qid] = SharedQid{};
    }
  }

 private:
  static uint32_t Load(uint32_t& word) { return std::atomic_ref<uint32_t>(word).load(std::memory_order_acquire); }
};

}  // namespace

const GroupRole& SecondaryRole() {
  static const Secondary role;
  return role;
}

}  // namespace nvmux
