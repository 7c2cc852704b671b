// Connect and Probe: choosing the transport for a transport id (no static
// registration: one switch over the types nvmux knows).
#include "libclient/adopt_transport.h"
#include "libclient/core/transport.h"
#include "libclient/open_transport.h"
#include "libclient/tcp/tcp_transport.h"
#include "libclient/vfiouser/vfio_user_transport.h"
#include "nvmux/controller.h"
#include "nvmux/discovery.h"
#include "nvmux/probe.h"

namespace nvmux {

Result<std::unique_ptr<Controller>> AttachController(Env& env, const TransportId& trid,
                                                     std::unique_ptr<Transport> transport,
                                                     const ControllerOptions& options);

Result<std::unique_ptr<Transport>> OpenTransport(const TransportId& trid, const ControllerOptions& options) {
  switch (trid.trtype) {
    case TransportType::kVfioUser: {
      auto t = vfiouser::VfioUserTransport::Open(trid.traddr);
      if (!t) return t.error();
      return std::unique_ptr<Transport>(std::move(*t));
    }
    case TransportType::kPcie:
      return Fail(ENOTSUP, "transport '" + trid.ToString() + "': trtype pcie is not available yet (on the roadmap "
                           "after vfiouser); use trtype:vfiouser");
    case TransportType::kTcp: {
      auto t = tcp::TcpTransport::Open(trid, options);
      if (!t) return t.error();
      return std::unique_ptr<Transport>(std::move(*t));
    }
  }
  return Fail(EINVAL, "unknown transport type");
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
  // A secondary reaches the device through what the primary shares.
  if (env.role() == Role::kSecondary) return AttachController(env, trid, nullptr, options);
  // A primary that took its group over adopts what the dead one published.
  if (auto adopted = AdoptTransport(env, trid); adopted || adopted.error().code != ENOENT) {
    if (!adopted) return adopted.error();
    return AttachController(env, trid, std::move(*adopted), options);
  }
  auto transport = OpenTransport(trid, options);
  if (!transport) return transport.error();
  return AttachController(env, trid, std::move(*transport), options);
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
