// ImportedTransport: how a secondary reaches a controller the primary
// attached. Doorbells are the primary's doorbell area, mapped from the fd
// the primary passed (fd_share.h); registers are the primary's published
// snapshot (CAP, VS, CSTS as last read), the doorbell kick is the
// primary's eventfd when it passed one: a secondary never writes
// controller registers. The duplicate of the vfio-user connection is held
// open so the device keeps this group's DMA maps while any process lives.
//
// Thread safety: as Transport. Ownership: owns the mapping and the fds;
// borrows the SharedController (segment).
#pragma once

#include <memory>
#include <vector>

#include <atomic>

#include "libclient/core/bar_guard.h"
#include "libclient/core/transport.h"
#include "libclient/shared/fd_share.h"
#include "libclient/shared/shared_controller.h"
#include "libclient/vfiouser/msix_mapping.h"

namespace nvmux {

class SharedRegisters final : public RegisterIo {
 public:
  explicit SharedRegisters(SharedController& c) : c_(c) {}
  // CAP, VS and CSTS; other registers: ENOTSUP.
  Result<uint32_t> Read32(uint32_t offset) override;
  Result<uint64_t> Read64(uint32_t offset) override;
  // ENOTSUP: register writes are the primary's.
  Status Write32(uint32_t offset, uint32_t value) override;
  Status Write64(uint32_t offset, uint64_t value) override;

 private:
  SharedController& c_;
};

class ImportedTransport final : public Transport {
 public:
  // `device_registers`: real register access, for a primary that took the
  // group over and adopted the connection (see vfiouser/adopted_registers.h);
  // null in a secondary, which reads the published snapshot.
  // Errors: from mmap.
  [[nodiscard]] static Result<std::unique_ptr<ImportedTransport>> Create(
      SharedController& c, SharedFds fds, std::unique_ptr<RegisterIo> device_registers = nullptr);
  ~ImportedTransport() override;

  const char* name() const override { return c_.transport_name; }
  RegisterIo& registers() override { return device_registers_ ? *device_registers_ : registers_; }
  [[nodiscard]] Status PrepareDevice() override { return Ok(); }
  Doorbells QueueDoorbells(uint16_t qid, uint32_t dstrd) override;
  bool Lost() const override;
  int DoorbellKickFd() const override { return fds_.kick.get(); }
  // A secondary has none; a primary that adopted the controller registers
  // the MSI-X vectors again (adopt_transport.h) and hands them here.
  uint32_t InterruptVectors() const override { return static_cast<uint32_t>(vector_fds_.size()); }
  int VectorFd(uint16_t vector) const override {
    return vector < vector_fds_.size() ? vector_fds_[vector].get() : -1;
  }
  void SetVectorFds(std::vector<UniqueFd> fds) { vector_fds_ = std::move(fds); }
  // The device's MSI-X table: mapped from the fd the primary passed, or
  // handed here by a primary that took over and mapped it itself.
  volatile uint32_t* VectorControl(uint16_t vector) const override { return msix_.ControlWord(vector); }
  void SetMsix(vfiouser::MsixMapping msix) { msix_ = std::move(msix); }
  // The CMB the primary published, as this process mapped it (`mapping`
  // owns the mapping; its guard should report to lost_flag()).
  void SetCmb(CmbWindow window, std::shared_ptr<void> mapping) {
    cmb_ = window;
    cmb_mapping_ = std::move(mapping);
  }
  std::optional<CmbWindow> Cmb() const override {
    return cmb_mapping_ ? std::optional<CmbWindow>(cmb_) : std::nullopt;
  }
  std::atomic<bool>* lost_flag() { return &lost_; }
  // The BAR fd the primary passed (vfio: the device fd; uio: resource0).
  int bar_fd() const { return fds_.doorbells.get(); }
  // What this process holds, for others to take (fd_holders.h).
  std::optional<Exported> Export() const override {
    return Exported{fds_.doorbells.get(), fds_.doorbell_file_offset, c_.doorbell_offset, fds_.doorbell_bytes,
                    fds_.connection.get(), fds_.kick.get()};
  }

 private:
  ImportedTransport(SharedController& c, SharedFds fds) : c_(c), registers_(c), fds_(std::move(fds)) {}
  SharedController& c_;
  SharedRegisters registers_;
  SharedFds fds_;
  std::unique_ptr<RegisterIo> device_registers_;
  std::vector<UniqueFd> vector_fds_;  // MSI-X vector v's eventfd, as registered by this (adopting) primary
  vfiouser::MsixMapping msix_;        // or unmapped: hybrid vectors stay unmasked
  uint8_t* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::atomic<bool> lost_{false};  // the doorbell mapping vanished (SIGBUS, bar_guard.h)
  BarGuard guard_;
  CmbWindow cmb_;
  std::shared_ptr<void> cmb_mapping_;
};

}  // namespace nvmux
