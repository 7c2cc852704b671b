// Connect and Probe: choosing the transport for a transport id (no static
// registration: one switch over the types nvmux knows) and the group role
// for the process (primary/, secondary/).
#include "libclient/core/controller_attach.h"
#include "libclient/core/transport.h"
#include "libclient/open_transport.h"
#include "libclient/pcie/pcie_transport.h"
#include "libclient/tcp/tcp_transport.h"
#include "libclient/vfiouser/vfio_user_transport.h"
#include "nvmux/controller.h"
#include "nvmux/discovery.h"
#include "nvmux/probe.h"
#include "primary/adopt_transport.h"
#include "primary/primary_role.h"
#include "secondary/secondary_role.h"

namespace nvmux {

Result<std::unique_ptr<Controller>> AttachController(Env& env, const TransportId& trid,
                                                     std::unique_ptr<Transport> transport,
                                                     const ControllerOptions& options, const GroupRole* role);

Result<std::unique_ptr<Transport>> OpenTransport(const TransportId& trid, const ControllerOptions& options) {
  switch (trid.trtype) {
    case TransportType::kVfioUser: {
      auto t = vfiouser::VfioUserTransport::Open(trid.traddr);
      if (!t) return t.error();
      return std::unique_ptr<Transport>(std::move(*t));
    }
    case TransportType::kPcie: {
      auto t = pcie::PcieTransport::Open(trid.traddr);
      if (!t) return t.error();
      return std::unique_ptr<Transport>(std::move(*t));
    }
    case TransportType::kTcp: {
      auto t = tcp::TcpTransport::Open(trid, options);
      if (!t) return t.error();
      return std::unique_ptr<Transport>(std::move(*t));
    }
  }
  return Fail(EINVAL, "unknown transport type");
}

const GroupRole* RoleOf(Env& env) {
  switch (env.role()) {
    case Role::kPrimary: return &PrimaryRole();
    case Role::kSecondary: return &SecondaryRole();
    case Role::kStandalone: return nullptr;
  }
  return nullptr;
}

Result<std::unique_ptr<Transport>> OpenForRole(Env& env, const TransportId& trid, const ControllerOptions& options) {
  // A secondary reaches the device through what the primary shares.
  if (env.role() == Role::kSecondary) return std::unique_ptr<Transport>();
  // A primary that took its group over adopts what the dead one published.
  if (auto adopted = AdoptTransport(env, trid, options); adopted || adopted.error().code != ENOENT) return adopted;
  return OpenTransport(trid, options);
}

Result<std::unique_ptr<Controller>> Controller::Connect(Env& env, const TransportId& trid,
                                                        const ControllerOptions& options) {
  if (trid.traddr.empty())
    return Fail(EINVAL, std::string("transport id 'trtype:") + ToString(trid.trtype) +
                            "' names no controller (traddr is missing): give traddr, or, in a group, find its "
                            "controllers with GroupControllers() or a probe");
  if (IsDiscoveryTrid(trid))
    return Fail(EINVAL, "transport id '" + trid.ToString() + "' names a discovery service, not an NVM subsystem: read "
                        "its log (nvmux-manage discover -r TRID, or Probe with it), or give the subsystem's subnqn");
  auto transport = OpenForRole(env, trid, options);
  if (!transport) return transport.error();
  return AttachController(env, trid, std::move(*transport), options, RoleOf(env));
}

// The one-shot synchronous probe: a one-shot ProbeAsync polled to the end.
Result<std::vector<std::unique_ptr<Controller>>> Probe(Env& env, const TransportId& trid, const ProbeFn& probe,
                                                       const AttachFn& attach) {
  std::unique_ptr<ProbeContext> ctx = ProbeAsync(env, trid, probe, attach);
  Status st = ctx->Poll();
  while (!ctx->done()) st = ctx->Poll();
  std::vector<std::unique_ptr<Controller>> attached = ctx->TakeAttached();
  if (!st && attached.empty()) return st.error();
  return attached;
}

}  // namespace nvmux
