// VfioUserTransport: a controller behind a vfio-user server (nvmux-emu,
// SPDK's vfio-user target, QEMU's vfio-user devices). Connects to
// <traddr>/cntrl, negotiates, maps BAR0's doorbell area (sparse mmap), asks
// for BAR0's io fds (DEVICE_GET_REGION_IO_FDS: an ioeventfd covering the
// whole doorbell page is taken as the doorbell kick, see
// Transport::DoorbellKickFd; servers without io fds are fine), and
// registers an eventfd for each MSI-X vector (DEVICE_SET_IRQS: see
// Transport::InterruptVectors; the MSI-X table is mapped when the server
// offers it, see Transport::VectorControl), and keeps every DPDK hugepage segment of this process's environment mapped for
// the device with DMA_MAP (IOVA = VA), following allocations and frees.
//
// Thread safety: as Transport. Memory events may call into the client from
// any thread (the client serialises requests).
// Ownership: owns the connection, the doorbell mapping and the DMA maps;
// destruction unmaps what it mapped and disconnects.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "libclient/core/transport.h"
#include "libclient/vfiouser/client.h"
#include "libclient/vfiouser/dma_regions.h"
#include "libclient/vfiouser/msix_mapping.h"
#include "libclient/vfiouser/vfio_user_registers.h"
#include "shm/mem_events.h"

namespace nvmux::vfiouser {

class VfioUserTransport final : public Transport {
 public:
  // Errors: ENOENT/ECONNREFUSED (no server at `socket_dir`: names it),
  // EPROTO (not an NVMe device, or a protocol failure), what DMA_MAP reports.
  [[nodiscard]] static Result<std::unique_ptr<VfioUserTransport>> Open(const std::string& socket_dir);
  ~VfioUserTransport() override;

  const char* name() const override { return "VFIOUSER"; }
  RegisterIo& registers() override { return registers_; }
  [[nodiscard]] Status PrepareDevice() override { return registers_.EnableBusMaster(); }
  Doorbells QueueDoorbells(uint16_t qid, uint32_t dstrd) override;
  bool Lost() const override { return client_->broken(); }
  int DoorbellKickFd() const override { return kick_fd_.get(); }
  uint32_t InterruptVectors() const override { return static_cast<uint32_t>(vector_fds_.size()); }
  int VectorFd(uint16_t vector) const override {
    return vector < vector_fds_.size() ? vector_fds_[vector].get() : -1;
  }
  volatile uint32_t* VectorControl(uint16_t vector) const override { return msix_.ControlWord(vector); }
  std::optional<Exported> Export() const override {
    Exported e{doorbell_fd_.get(), doorbell_file_offset_, doorbell_offset_, doorbells_.size(), client_->socket_fd(),
               kick_fd_.get()};
    if (msix_.mapped()) {
      e.msix_fd = msix_.fd();
      e.msix = msix_.area();
    }
    return e;
  }

  Client& client() { return *client_; }
  // What a secondary needs to map the doorbells itself (see shared/fd_share.h).
  int doorbell_fd() const { return doorbell_fd_.get(); }
  uint64_t doorbell_file_offset() const { return doorbell_file_offset_; }
  uint64_t doorbell_bar_offset() const { return doorbell_offset_; }
  uint64_t doorbell_bytes() const { return doorbells_.size(); }
  // DMA regions the device holds now (see dma_regions.h).
  uint32_t dma_maps() const { return static_cast<uint32_t>(regions_.size()); }

 private:
  explicit VfioUserTransport(std::unique_ptr<Client> client);
  void OnMemory(bool added, std::span<const shm::MemSegment> segments);
  // DMA_MAPs one region and records it; a failure is logged and kept in
  // map_error_ (the first one) for Open to report.
  void MapRegion(const DmaRegion& region);
  // Takes BAR0's ioeventfd for the doorbell page, if the server offers one.
  void TakeDoorbellIoeventfd(const std::string& socket_dir);
  // Registers an eventfd for every MSI-X vector the server offers (up to
  // kMaxVectors) with DEVICE_SET_IRQS; none when it offers no MSI-X or
  // refuses (logged; queue pairs then cannot use event mode).
  void RegisterInterrupts(const std::string& socket_dir);

  std::unique_ptr<Client> client_;
  VfioUserRegisters registers_;
  MappedArea doorbells_;
  uint64_t doorbell_offset_ = 0;  // BAR0 offset of doorbells_.data()
  UniqueFd doorbell_fd_;
  uint64_t doorbell_file_offset_ = 0;
  UniqueFd kick_fd_;  // ioeventfd of the doorbell page, or invalid
  std::vector<UniqueFd> vector_fds_;  // MSI-X vector v's eventfd (non-blocking)
  MsixMapping msix_;                  // the MSI-X table, when the server lets it be mapped
  std::unique_ptr<shm::MemEventSubscription> memory_;
  DmaRegionMap regions_;
  uint32_t server_max_dma_maps_ = 0;  // VERSION's max_dma_maps (the protocol's default when not said)
  Status map_error_ = Ok();
};

}  // namespace nvmux::vfiouser
