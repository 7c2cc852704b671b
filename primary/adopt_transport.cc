#include "primary/adopt_transport.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "libclient/pcie/pcie_cmb.h"
#include "libclient/pcie/pcie_transport.h"
#include "libclient/shared/fd_holders.h"
#include "libclient/shared/imported_transport.h"
#include "libclient/shared/shared_registry.h"
#include "libclient/tcp/tcp_transport.h"
#include "libclient/vfiouser/adopted_registers.h"
#include "libclient/vfiouser/protocol.h"
#include "shm/base/log.h"
#include "shm/group.h"

namespace nvmux {

namespace {

// The dead primary's vector eventfds died with it; the device keeps
// signalling the registration it was given, which is the duplicates live
// processes hold (event-mode queues, admin waiters). Those files are taken
// and kept; only vectors nobody holds get a fresh eventfd, registered with
// DEVICE_SET_IRQS on the adopted connection (start = the vector, a run at
// a time). Replacing a held vector's eventfd would leave its holder blocked
// on a file nobody signals any more. Returns every vector's eventfd, or
// none (logged: queue pairs then only poll) when the device offers none or
// refuses.
std::vector<UniqueFd> RegisterVectorsAgain(SharedController& c, const shm::ProcessTable& processes,
                                           vfiouser::Client& client, const TransportId& trid) {
  auto info = client.GetIrqInfo(vfiouser::kPciMsixIrq);
  if (!info || info->count == 0 || (info->flags & vfiouser::kIrqInfoEventfd) == 0) {
    NVMUX_LOG(kInfo, "adopting %s: no MSI-X vectors with eventfds%s%s: queue pairs can only poll",
              trid.ToString().c_str(), info ? "" : ": ", info ? "" : info.error().message.c_str());
    return {};
  }
  std::vector<UniqueFd> fds = TakeHeldVectorFds(c, processes, std::min<uint32_t>(info->count, kMaxSharedQids));
  uint32_t kept = 0;
  std::vector<bool> fresh(fds.size(), false);
  for (size_t v = 0; v < fds.size(); ++v) {
    if (fds[v].valid()) {
      ++kept;
      continue;
    }
    fds[v] = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!fds[v].valid()) {
      NVMUX_LOG(kWarning, "adopting %s: eventfd for MSI-X vector %zu: %s; queue pairs can only poll",
                trid.ToString().c_str(), v, std::strerror(errno));
      return {};
    }
    fresh[v] = true;
  }
  // A server's max_msg_fds is at least the protocol's default: runs of at most 8.
  constexpr uint32_t kChunk = 8;
  for (uint32_t start = 0; start < fds.size();) {
    if (!fresh[start]) {
      ++start;
      continue;
    }
    std::vector<int> raw;
    while (start + raw.size() < fds.size() && fresh[start + raw.size()] && raw.size() < kChunk)
      raw.push_back(fds[start + raw.size()].get());
    const auto n = static_cast<uint32_t>(raw.size());
    Status st = client.SetIrqs(vfiouser::kPciMsixIrq, vfiouser::kIrqSetDataEventfd | vfiouser::kIrqSetActionTrigger,
                               start, n, raw);
    if (!st) {
      NVMUX_LOG(kWarning, "adopting %s: the device refused MSI-X eventfds %u..%u (%s); queue pairs can only poll",
                trid.ToString().c_str(), start, start + n - 1, st.error().message.c_str());
      return {};
    }
    start += n;
  }
  NVMUX_LOG(kNotice, "adopting %s: %zu MSI-X vectors registered again (%u kept from the processes blocking on them)",
            trid.ToString().c_str(), fds.size(), kept);
  return fds;
}

}  // namespace

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
    // The CMB stays enabled on the live device; this primary's own queues
    // may use it as the dead one's did.
    if (options.use_cmb_sqs) pcie::MapPublishedCmb(**t, c, trid.traddr);
    return std::unique_ptr<Transport>(std::move(*t));
  }
  UniqueFd for_registers(::fcntl(fds->connection.get(), F_DUPFD_CLOEXEC, 0));
  if (!for_registers.valid()) return ErrnoError("adopting " + trid.ToString() + ": dup");
  auto regs = std::make_unique<vfiouser::AdoptedRegisters>(std::move(for_registers));
  std::vector<UniqueFd> vectors = RegisterVectorsAgain(c, env.group().processes(), regs->client(), trid);
  // The MSI-X table, to unmask the vectors of the queue ids it reaps (a dead
  // hybrid process's may be masked) and mask its own hybrid ones.
  vfiouser::MsixMapping msix;
  if (!vectors.empty())
    if (auto mapped = vfiouser::MsixMapping::Map(regs->client())) msix = std::move(*mapped);
  auto t = ImportedTransport::Create(c, std::move(*fds), std::move(regs));
  if (!t) return t.error();
  (*t)->SetVectorFds(std::move(vectors));
  (*t)->SetMsix(std::move(msix));
  return std::unique_ptr<Transport>(std::move(*t));
}

}  // namespace nvmux
