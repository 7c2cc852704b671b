#include "primary/adopt_transport.h"

#include <fcntl.h>
#include <unistd.h>

#include "libclient/pcie/pcie_transport.h"
#include "libclient/shared/fd_holders.h"
#include "libclient/shared/imported_transport.h"
#include "libclient/shared/shared_registry.h"
#include "libclient/tcp/tcp_transport.h"
#include "libclient/vfiouser/adopted_registers.h"
#include "shm/group.h"

namespace nvmux {

Result<std::unique_ptr<Transport>> AdoptTransport(Env& env, const TransportId& trid, const ControllerOptions& options) {
  if (env.role() != Role::kPrimary || !env.group().took_over())
    return Fail(ENOENT, "this process did not take a group over");
  auto sc = FindSharedController(env.group(), trid.Key());
  if (!sc) return Fail(ENOENT, sc.error().message);
  SharedController& c = **sc;
  if (trid.trtype == TransportType::kTcp) {
    // A new association (adopt_transport.h): nothing of the dead primary's
    // connection can be reused.
    auto t = tcp::TcpTransport::Open(trid, options);
    if (!t) return Fail(t.error().code, "taking over " + trid.ToString() + ": " + t.error().message);
    return std::unique_ptr<Transport>(std::move(*t));
  }
  if (trid.trtype != TransportType::kVfioUser && trid.trtype != TransportType::kPcie)
    return Fail(ENOTSUP, "adopting " + trid.ToString() + ": only vfiouser, pcie and tcp controllers can be taken over");
  auto fds = TakeSharedFds(c, env.group().processes(), env.group().self_slot());
  if (!fds) return Fail(fds.error().code, "adopting " + trid.ToString() + ": " + fds.error().message);
  if (trid.trtype == TransportType::kPcie) {
    // The device stays set up by the fds the group's processes hold (vfio:
    // the device fd keeps the IOMMU group and its DMA maps; uio: resource0
    // keeps the lock): this primary maps the registers from the same fds.
    UniqueFd bar(::fcntl(fds->doorbells.get(), F_DUPFD_CLOEXEC, 0));
    UniqueFd config(::fcntl(fds->connection.get(), F_DUPFD_CLOEXEC, 0));
    if (!bar.valid() || !config.valid()) return ErrnoError("adopting " + trid.ToString() + ": dup");
    uint64_t bar0 = fds->doorbell_file_offset - c.doorbell_offset;
    auto regs = pcie::AdoptedPcieRegisters::Create(std::move(bar), bar0, std::move(config));
    if (!regs) return Fail(regs.error().code, "adopting " + trid.ToString() + ": " + regs.error().message);
    auto t = ImportedTransport::Create(c, std::move(*fds), std::move(*regs));
    if (!t) return t.error();
    return std::unique_ptr<Transport>(std::move(*t));
  }
  UniqueFd for_registers(::fcntl(fds->connection.get(), F_DUPFD_CLOEXEC, 0));
  if (!for_registers.valid()) return ErrnoError("adopting " + trid.ToString() + ": dup");
  auto t = ImportedTransport::Create(c, std::move(*fds),
                                     std::make_unique<vfiouser::AdoptedRegisters>(std::move(for_registers)));
  if (!t) return t.error();
  return std::unique_ptr<Transport>(std::move(*t));
}

}  // namespace nvmux
