#include "primary/primary_role.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>

#include "libclient/core/controller_state.h"
#include "libclient/core/dma_page_map.h"
#include "libclient/shared/fd_holders.h"
#include "libclient/shared/fd_share.h"
#include "libclient/shared/published_controller.h"
#include "libclient/shared/shared_admin_queue.h"
#include "libclient/shared/shared_registry.h"
#include "primary/reap_queues.h"
#include "shm/base/log.h"
#include "shm/base/scope_guard.h"
#include "shm/base/test_point.h"
#include "shm/group.h"

namespace nvmux {
namespace {

uint32_t SelfSlot(Env& env) { return env.group().self_slot(); }
uint32_t SelfGeneration(Env& env) { return env.group().processes().self_generation(); }

// What secondaries read of a ready controller.
void WriteEntry(ControllerState& s) {
  SharedController& c = *s.shared;
  // Copied first: an adopting primary's transport returns this very field
  // as its name, and snprintf from a buffer into itself is undefined (glibc
  // left it empty: error messages after a takeover named no transport).
  const std::string name = s.transport->name();
  std::snprintf(c.transport_name, sizeof(c.transport_name), "%s", name.c_str());
  c.cap = s.data.cap.raw;
  c.vs = s.data.vs.raw;
  c.max_transfer = s.max_transfer;
  c.io_sq_granted = s.data.io_sq_granted;
  c.io_cq_granted = s.data.io_cq_granted;
  c.ctrlr = s.data.ctrlr;
  c.num_namespaces = static_cast<uint32_t>(std::min<size_t>(s.data.active_nsids.size(), kMaxSharedNamespaces));
  for (uint32_t i = 0; i < c.num_namespaces; ++i) {
    c.nsids[i] = s.data.active_nsids[i];
    c.namespaces[i] = s.data.namespaces[i];
  }
  c.namespace_generation++;
  // The CMB this primary enabled (an adopting primary keeps the published
  // one: the device still has it enabled).
  if (!s.adopted) {
    auto cmb = s.transport->Cmb();
    c.cmb_bar = cmb ? cmb->bar : 0;
    c.cmb_bar_offset = cmb ? cmb->bar_offset : 0;
    c.cmb_controller_address = cmb ? cmb->controller_address : 0;
    c.cmb_bytes = cmb ? cmb->bytes : 0;
  }
}

// A fabrics controller's association, for secondaries connecting their own
// I/O queues (shared_controller.h SharedFabrics); `association` last.
void WriteFabrics(ControllerState& s) {
  auto f = s.transport->Fabrics();
  if (!f) return;
  SharedFabrics& x = s.shared->fabrics;
  x.cntlid = f->cntlid;
  x.header_digest = f->header_digest ? 1 : 0;
  x.data_digest = f->data_digest ? 1 : 0;
  std::memcpy(x.hostid, f->hostid, sizeof(x.hostid));
  std::snprintf(x.hostnqn, sizeof(x.hostnqn), "%s", f->hostnqn.c_str());
  std::atomic_ref<uint32_t> association(x.association);
  uint32_t next = association.load(std::memory_order_relaxed) + 1;
  association.store(next == 0 ? 1 : next, std::memory_order_release);
}

class Primary final : public GroupRole {
 public:
  // Only a primary that took the group over imports: it adopts what the
  // dead primary published, through `transport` (adopt_transport.h).
  Result<std::unique_ptr<ControllerState>> Import(Env& env, const TransportId& trid, const ControllerOptions& options,
                                                  std::unique_ptr<Transport>& transport) const override {
    if (!env.group().took_over()) return std::unique_ptr<ControllerState>();
    auto sc = FindSharedController(env.group(), trid.Key());
    if (!sc) return std::unique_ptr<ControllerState>();
    SharedController& c = **sc;
    if (!transport)
      return Fail(EINVAL, "adopting " + trid.ToString() + ": no adopted transport (open it with AdoptTransport)");
    auto s = std::make_unique<ControllerState>(env, trid, options, std::move(transport));
    s->shared = &c;
    s->owns_device = true;
    s->adopted = true;
    s->role = this;
    NVMUX_TEST_POINT("takeover.adopt.begin");
    auto mem = env.group().dma().Adopt(c.admin_sq_iova);
    if (!mem) return Fail(mem.error().code, "adopting the admin queue of " + trid.ToString() + ": " + mem.error().message);
    s->admin_memory = std::move(*mem);
    if (s->transport->Fabrics()) {
      // NVMe/TCP: a new association over the group's admin ring (the init
      // runs again: adopt_transport.h). The shadow pages the first init
      // allocated stay the group's (unused over fabrics; init reuses them).
      s->transport->ShareAdminDoorbells(&c.fabrics.sq_doorbell, &c.fabrics.cq_doorbell);
      if (c.shadow_doorbell_iova != 0)
        if (auto shadow = env.group().dma().Adopt(c.shadow_doorbell_iova)) s->shadow_memory = std::move(*shadow);
      s->adopted_reinit = true;
      NVMUX_TRY(FillFromPublished(*s));
      NVMUX_LOG(kNotice, "taking %s over from the group's dead primary: a new association", trid.ToString().c_str());
      return s;
    }
    if (std::atomic_ref<uint32_t>(c.shadow_doorbells).load(std::memory_order_acquire) != 0) {
      auto shadow = env.group().dma().Adopt(c.shadow_doorbell_iova);
      if (!shadow)
        return Fail(shadow.error().code, "adopting the shadow doorbells of " + trid.ToString() + ": " +
                                             shadow.error().message);
      s->shadow_memory = std::move(*shadow);
      s->shadow_doorbells = true;
    }
    NVMUX_TEST_POINT("takeover.adopt.memory");
    NVMUX_TRY(FillFromPublished(*s));
    NVMUX_LOG(kNotice, "adopted %s from the group's dead primary", trid.ToString().c_str());
    return s;
  }

  uint16_t MaxAdminEntries() const override { return kMaxSharedAdminEntries; }

  // The group's copy: the admin queue lives in shared state from the start.
  Status Share(ControllerState& st, const AdminLayout& layout) const override {
    Env& env = st.env;
    auto exported = st.transport->Export();
    if (!exported)
      return Fail(ENOTSUP, std::string("transport ") + st.transport->name() + " cannot be shared with secondaries");
    // Reserve first: the entry records this process as its reserver (so a
    // later primary reclaims it if this one dies before publishing), then
    // each group-owned allocation as soon as it exists (so the reclaimer
    // frees it).
    auto reservation = ReserveSharedController(env.group(), st.trid.Key());
    if (!reservation) return reservation.error();
    SharedController& c = *reservation->entry;
    // A reclaimed entry's leftovers: freed after this attach's init has
    // disabled the controller (until then the device may write there).
    for (uint64_t iova : reservation->stale_group_iovas)
      if (auto stale = env.group().dma().Adopt(iova)) st.stale_memory.push_back(std::move(*stale));
    st.stale_quarantined = std::move(reservation->stale_quarantined_iovas);
    // A process dying from here on leaves a reserved entry that the next
    // Reserve reclaims (freeing what is recorded below); an error retires it.
    ScopeGuard retire([&] { ReleaseSharedController(env.group(), c); });
    st.shared = &c;
    st.role = this;
    NVMUX_TEST_POINT("ctrl.attach.reserved");
    // A group's admin queue outlives its primary (a new primary adopts it).
    auto mem = env.AllocDma(layout.bytes(), 4096, "admin-queue", shm::DmaOwner::kGroup);
    if (!mem) return mem.error();
    st.admin_memory = std::move(*mem);
    auto* base = static_cast<uint8_t*>(st.admin_memory.data());
    c.admin_sq_iova = GroupAddress(base);
    NVMUX_TRY(shm::InitRobustMutex(c.lock));
    c.admin_entries = layout.entries;
    c.admin_cq_iova = GroupAddress(base + layout.sq_bytes);
    c.admin_ring = RingIndices{};
    c.doorbell_offset = static_cast<uint32_t>(exported->doorbell_bar_offset);
    c.doorbell_bytes = static_cast<uint32_t>(exported->doorbell_bytes);
    // NVMe/TCP: the admin engine runs in this process; every process rings
    // the shared ring's doorbells in the entry (nothing of an earlier use).
    c.fabrics = SharedFabrics{};
    st.transport->ShareAdminDoorbells(&c.fabrics.sq_doorbell, &c.fabrics.cq_doorbell);
    auto admin = SharedAdminQueue::Open(c, st.doorbells(0), SelfSlot(env), SelfGeneration(env));
    if (!admin) return admin.error();
    st.shared_admin = admin->get();
    st.shared_admin->EnableWakeups(env.group().processes());
    st.admin = std::move(*admin);
    retire.Dismiss();  // from here on the Controller's destruction retires it
    return Ok();
  }

  Status Publish(Controller& ctrlr) const override {
    ControllerState& st = ctrlr.state();
    Env& env = st.env;
    // (Each point spelt out: the crash test finds points by their literal names.)
    if (st.adopted) {
      NVMUX_TEST_POINT("takeover.adopt.ready");
    } else {
      NVMUX_TEST_POINT("ctrl.attach.initialised");
    }
    WriteEntry(st);
    auto exported = st.transport->Export();
    if (!exported) return Fail(ENOTSUP, std::string("transport ") + st.transport->name() + " cannot be shared");
    // DPDK's IPC serves the fds while DPDK's primary lives; the record lets
    // processes take them when it does not (a primary that took over is
    // DPDK's secondary: nobody asks it through IPC).
    if (!st.adopted)
      NVMUX_TRY(OfferFds(st.shared->index, *exported));
    if (st.adopted && st.transport->Fabrics()) {
      // A new association has a new admin mailbox: what the old one's
      // processes hold is the dead primary's, useless to a joining process.
      auto guard = st.shared_admin->lock().Lock();
      if (guard)
        for (uint32_t slot = 0; slot < shm::kMaxProcesses; ++slot)
          if (slot != SelfSlot(env)) ForgetFdHolder(*st.shared, slot);
    }
    std::vector<int> held{exported->doorbell_fd, exported->connection_fd};
    if (exported->kick_fd >= 0) held.push_back(exported->kick_fd);
    RecordFdHolder(*st.shared, st.shared_admin->lock(), SelfSlot(env), SelfGeneration(env), held,
                   exported->doorbell_file_offset);
    // The MSI-X eventfds this process registered with the device, for
    // queue pairs in event mode anywhere in the group (fd_holders.h); a
    // primary that adopted the controller registered none.
    std::vector<int> vectors;
    for (uint32_t v = 0; v < st.transport->InterruptVectors(); ++v)
      vectors.push_back(st.transport->VectorFd(static_cast<uint16_t>(v)));
    RecordVectorFds(*st.shared, SelfSlot(env), SelfGeneration(env), vectors);
    std::weak_ptr<int> alive = st.alive;
    Controller* raw = &ctrlr;
    // Device work: run by the reaper outside the group lock (reap_queues.h).
    env.group().processes().AddDeviceCleanupHook([alive, raw](uint32_t slot) -> uint64_t {
      if (alive.expired()) return 0;
      return DeleteDeadQueues(*raw, slot);
    });
    if (st.adopted) {
      NVMUX_TEST_POINT("takeover.adopt.published");
    } else {
      NVMUX_TEST_POINT("ctrl.attach.published");
    }
    PublishSharedController(*st.shared);
    return Ok();
  }

  // The controller was disabled by this init: no queue of an earlier
  // attach or of quarantined ids exists on the device any more.
  void AfterInit(Controller& ctrlr) const override {
    ControllerState& s = ctrlr.state();
    // Over fabrics each init is a new association (a reset reconnects the
    // admin queue): secondaries' connections to the old one are gone.
    WriteFabrics(s);
    s.stale_memory.clear();
    for (uint64_t iova : s.stale_quarantined) (void)s.env.group().dma().ReleaseQuarantined(iova);
    s.stale_quarantined.clear();
    (void)ReleaseQuarantinedAfterReset(ctrlr);
  }

  void Leave(ControllerState&) const override {}

  void Retire(ControllerState& s) const override {
    WithdrawFds(s.shared->index);
    ReleaseSharedController(s.env.group(), *s.shared);
  }
};

}  // namespace

const GroupRole& PrimaryRole() {
  static const Primary role;
  return role;
}

}  // namespace nvmux
