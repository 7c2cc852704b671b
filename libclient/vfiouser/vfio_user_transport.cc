#include "libclient/vfiouser/vfio_user_transport.h"

#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "nvmux/spec/registers.h"
#include "shm/base/log.h"

namespace nvmux::vfiouser {

VfioUserTransport::VfioUserTransport(std::unique_ptr<Client> client)
    : client_(std::move(client)), registers_(*client_) {}

VfioUserTransport::~VfioUserTransport() {
  memory_.reset();  // no more events into this object
}

Result<std::unique_ptr<VfioUserTransport>> VfioUserTransport::Open(const std::string& socket_dir) {
  auto client = Client::Connect(socket_dir);
  if (!client)
    return Fail(client.error().code, "vfio-user: cannot connect to " + socket_dir + "/cntrl (" +
                                         client.error().message + "): is nvmux-emu (or another vfio-user server) "
                                         "running with --socket " + socket_dir + "?");
  std::unique_ptr<VfioUserTransport> t(new VfioUserTransport(std::move(*client)));
  auto caps = t->client_->Negotiate();
  if (!caps) return Fail(caps.error().code, "vfio-user: version negotiation with " + socket_dir + " failed: " +
                                                caps.error().message);
  t->server_max_dma_maps_ = caps->max_dma_maps;
  auto bar0 = t->client_->GetRegionInfo(kPciBar0Region);
  if (!bar0) return Fail(bar0.error().code, "vfio-user: BAR0 of " + socket_dir + ": " + bar0.error().message);
  if (bar0->size < spec::kDoorbellBase + 0x1000)
    return Fail(EPROTO, "vfio-user: BAR0 of " + socket_dir + " is " + std::to_string(bar0->size) +
                            " bytes, too small for an NVMe controller");
  // The doorbells: the sparse-mmap area that covers the doorbell base.
  for (size_t i = 0; i < bar0->sparse_areas.size(); ++i) {
    const SparseMmapArea& a = bar0->sparse_areas[i];
    if (a.offset <= spec::kDoorbellBase && spec::kDoorbellBase < a.offset + a.size) {
      auto mapped = t->client_->MapSparseArea(*bar0, i);
      if (!mapped) return Fail(mapped.error().code, "vfio-user: mapping the doorbells of " + socket_dir + ": " +
                                                        mapped.error().message);
      t->doorbells_ = std::move(*mapped);
      t->doorbell_offset_ = a.offset;
      t->doorbell_file_offset_ = bar0->file_offset + a.offset;
      t->doorbell_fd_ = std::move(bar0->fd);
      break;
    }
  }
  if (t->doorbells_.data() == nullptr)
    return Fail(ENOTSUP, "vfio-user: " + socket_dir + " offers no mmap-able doorbell area in BAR0 (trapped "
                             "doorbells are not supported by this driver)");
  t->TakeDoorbellIoeventfd(socket_dir);
  t->RegisterInterrupts(socket_dir);
  if (!t->vector_fds_.empty()) {
    if (auto msix = MsixMapping::Map(*t->client_))
      t->msix_ = std::move(*msix);
    else
      NVMUX_LOG(kDebug, "vfio-user: %s: MSI-X table not mapped (%s): hybrid queue pairs leave their vector unmasked",
                socket_dir.c_str(), msix.error().message.c_str());
  }
  VfioUserTransport* self = t.get();
  auto sub = shm::SubscribeMemEvents(
      [self](bool added, std::span<const shm::MemSegment> segments) { self->OnMemory(added, segments); });
  if (!sub) return sub.error();
  t->memory_ = std::move(*sub);
  if (!t->map_error_) return t->map_error_.error();
  return t;
}

void VfioUserTransport::TakeDoorbellIoeventfd(const std::string& socket_dir) {
  // NVMUX_VFIOUSER_NO_KICK=1: behave as hosts that never take the ioeventfd
  // (SPDK's, a Linux guest through QEMU) do, so scripts/bench/wake.sh can
  // measure what their first command after idle costs. Not for production.
  if (const char* no_kick = std::getenv("NVMUX_VFIOUSER_NO_KICK"); no_kick != nullptr && *no_kick == '1') {
    NVMUX_LOG(kNotice, "vfio-user: %s: NVMUX_VFIOUSER_NO_KICK=1: doorbells written without the kick", socket_dir.c_str());
    return;
  }
  auto io = client_->GetRegionIoFds(kPciBar0Region);
  if (!io) {
    NVMUX_LOG(kDebug, "vfio-user: %s: no doorbell ioeventfd (%s); the device polls", socket_dir.c_str(),
              io.error().message.c_str());
    return;
  }
  // One eventfd for the whole doorbell page, written after the doorbell
  // store (not instead of it: the mmapped page stays authoritative). Other
  // shapes (an eventfd per doorbell, datamatch) are not used by this driver.
  const uint64_t page_end = spec::kDoorbellBase + 0x1000;
  for (const SubRegionIoFd& sub : io->sub_regions) {
    if (sub.type != kIoFdTypeIoeventfd || (sub.flags & kIoeventfdFlagDatamatch) != 0) continue;
    if (sub.offset > spec::kDoorbellBase || sub.offset + sub.size < page_end) continue;
    kick_fd_ = std::move(io->fds[sub.fd_index]);
    NVMUX_LOG(kDebug, "vfio-user: %s: doorbell ioeventfd taken", socket_dir.c_str());
    return;
  }
  NVMUX_LOG(kInfo, "vfio-user: %s: the server's io fds do not cover the doorbell page with one ioeventfd; not used",
            socket_dir.c_str());
}

void VfioUserTransport::RegisterInterrupts(const std::string& socket_dir) {
  // The group's shared state records up to kMaxSharedQids vectors; no
  // queue id reaches beyond that either.
  constexpr uint32_t kMaxVectors = 256;
  // A server's max_msg_fds is at least the protocol's default: send in chunks.
  constexpr uint32_t kChunk = 8;
  auto info = client_->GetIrqInfo(kPciMsixIrq);
  if (!info || info->count == 0 || (info->flags & kIrqInfoEventfd) == 0) {
    NVMUX_LOG(kInfo, "vfio-user: %s offers no MSI-X vectors with eventfds%s%s: queue pairs can only poll",
              socket_dir.c_str(), info ? "" : ": ", info ? "" : info.error().message.c_str());
    return;
  }
  const uint32_t count = std::min(info->count, kMaxVectors);
  std::vector<UniqueFd> fds;
  for (uint32_t v = 0; v < count; ++v) {
    UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!fd.valid()) {
      NVMUX_LOG(kWarning, "vfio-user: %s: eventfd for MSI-X vector %u: %s; queue pairs can only poll",
                socket_dir.c_str(), v, std::strerror(errno));
      return;
    }
    fds.push_back(std::move(fd));
  }
  for (uint32_t start = 0; start < count; start += kChunk) {
    const uint32_t n = std::min(kChunk, count - start);
    std::vector<int> raw;
    for (uint32_t i = 0; i < n; ++i) raw.push_back(fds[start + i].get());
    Status st = client_->SetIrqs(kPciMsixIrq, kIrqSetDataEventfd | kIrqSetActionTrigger, start, n, raw);
    if (!st) {
      NVMUX_LOG(kWarning, "vfio-user: %s refused MSI-X eventfds %u..%u (%s); queue pairs can only poll",
                socket_dir.c_str(), start, start + n - 1, st.error().message.c_str());
      return;
    }
  }
  if (Status st = EnableMsix(*client_); !st) {
    NVMUX_LOG(kWarning, "vfio-user: %s: cannot enable MSI-X in config space (%s); queue pairs can only poll",
              socket_dir.c_str(), st.error().message.c_str());
    return;
  }
  vector_fds_ = std::move(fds);
  NVMUX_LOG(kDebug, "vfio-user: %s: %u MSI-X vector eventfds registered", socket_dir.c_str(), count);
}

void VfioUserTransport::OnMemory(bool added, std::span<const shm::MemSegment> segments) {
  if (added) {
    for (const shm::MemSegment& s : segments) {
      if (s.fd < 0)
        map_error_ = Fail(ENOTSUP, "vfio-user: a hugepage segment at " + std::to_string(s.va) +
                                       " has no fd to share with the device");
    }
    for (const DmaRegion& r : CoalesceSegments(segments))
      if (r.fd >= 0) MapRegion(r);
    return;
  }
  for (const shm::MemSegment& s : segments) {
    for (const DmaRegionMap::Cut& cut : regions_.Remove(s.iova, s.length)) {
      Status st = client_->DmaUnmap(cut.region.iova, cut.region.length);
      if (!st && !client_->broken())
        NVMUX_LOG(kWarning, "vfio-user: DMA_UNMAP of %lu bytes at IOVA 0x%lx failed: %s",
                  static_cast<unsigned long>(cut.region.length), static_cast<unsigned long>(cut.region.iova),
                  st.error().message.c_str());
      // The rest of the region is still memory in use: the device gets it
      // back at once (a command touching it in between fails its transfer).
      for (const DmaRegion& rest : cut.keep) MapRegion(rest);
    }
  }
}

void VfioUserTransport::MapRegion(const DmaRegion& r) {
  if (server_max_dma_maps_ != 0 && regions_.size() >= server_max_dma_maps_) {
    Status st = Fail(ENOSPC, "vfio-user: the device holds at most " + std::to_string(server_max_dma_maps_) +
                                 " DMA regions (its max_dma_maps) and all are in use; " + std::to_string(r.length) +
                                 " bytes at IOVA " + std::to_string(r.iova) + " cannot be shared with it");
    NVMUX_LOG(kError, "%s", st.error().message.c_str());
    if (map_error_) map_error_ = st;
    return;
  }
  Status st = client_->DmaMap(r.fd, r.fd_offset, r.iova, r.length);
  if (!st) {
    NVMUX_LOG(kError, "vfio-user: DMA_MAP of %lu bytes at IOVA 0x%lx failed: %s (%zu regions mapped)",
              static_cast<unsigned long>(r.length), static_cast<unsigned long>(r.iova), st.error().message.c_str(),
              regions_.size());
    if (map_error_) map_error_ = st;
    return;
  }
  regions_.Insert(r);
}

Doorbells VfioUserTransport::QueueDoorbells(uint16_t qid, uint32_t dstrd) {
  auto at = [&](bool cq) {
    uint64_t off = spec::DoorbellOffset(qid, cq, dstrd) - doorbell_offset_;
    return reinterpret_cast<volatile uint32_t*>(doorbells_.data() + off);
  };
  return Doorbells{at(false), at(true)};
}

}  // namespace nvmux::vfiouser
