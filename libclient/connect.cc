// Connect and Probe: choosing the transport for a transport id (no static
// registration: one switch over the types nvmux knows).
#include "libclient/core/transport.h"
#include "libclient/vfiouser/vfio_user_transport.h"
#include "nvmux/controller.h"

namespace nvmux {

Result<std::unique_ptr<Controller>> AttachController(Env& env, const TransportId& trid,
                                                     std::unique_ptr<Transport> transport,
                                                     const ControllerOptions& options);

namespace {

Result<std::unique_ptr<Transport>> OpenTransport(const TransportId& trid) {
  switch (trid.trtype) {
    case TransportType::kVfioUser: {
      auto t = vfiouser::VfioUserTransport::Open(trid.traddr);
      if (!t) return t.error();
      return std::unique_ptr<Transport>(std::move(*t));
    }
    case TransportType::kPcie:
      return Fail(ENOTSUP, "transport '" + trid.ToString() + "': trtype pcie is not available yet (on the roadmap "
                           "after vfiouser); use trtype:vfiouser");
    case TransportType::kTcp:
      return Fail(ENOTSUP, "transport '" + trid.ToString() + "': trtype tcp is not available yet (on the roadmap "
                           "after pcie); use trtype:vfiouser");
  }
  return Fail(EINVAL, "unknown transport type");
}

}  // namespace

Result<std::unique_ptr<Controller>> Controller::Connect(Env& env, const TransportId& trid,
                                                        const ControllerOptions& options) {
  // A secondary reaches the device through what the primary shares.
  if (env.role() == Role::kSecondary) return AttachController(env, trid, nullptr, options);
  auto transport = OpenTransport(trid);
  if (!transport) return transport.error();
  return AttachController(env, trid, std::move(*transport), options);
}

Result<std::vector<std::unique_ptr<Controller>>> Probe(Env& env, const TransportId& trid, const ProbeFn& probe,
                                                       const AttachFn& attach) {
  std::vector<std::unique_ptr<Controller>> attached;
  ControllerOptions options;
  if (probe && !probe(trid, options)) return attached;
  auto ctrlr = Controller::Connect(env, trid, options);
  if (!ctrlr) return ctrlr.error();
  if (attach) attach(trid, **ctrlr);
  attached.push_back(std::move(*ctrlr));
  return attached;
}

}  // namespace nvmux
