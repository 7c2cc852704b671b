// ImportedTransport: how a secondary reaches a controller the primary
// attached. Doorbells are the primary's doorbell area, mapped from the fd
// the primary passed (fd_share.h); registers are the primary's published
// snapshot (CAP, VS, CSTS as last read): a secondary never writes
// controller registers. The duplicate of the vfio-user connection is held
// open so the device keeps this group's DMA maps while any process lives.
//
// Thread safety: as Transport. Ownership: owns the mapping and the fds;
// borrows the SharedController (segment).
#pragma once

#include <memory>

#include "libclient/core/transport.h"
#include "libclient/shared/fd_share.h"
#include "libclient/shared/shared_controller.h"

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
  // Errors: from mmap.
  [[nodiscard]] static Result<std::unique_ptr<ImportedTransport>> Create(SharedController& c, SharedFds fds);
  ~ImportedTransport() override;

  const char* name() const override { return c_.transport_name; }
  RegisterIo& registers() override { return registers_; }
  [[nodiscard]] Status PrepareDevice() override { return Ok(); }
  Doorbells QueueDoorbells(uint16_t qid, uint32_t dstrd) override;
  bool Lost() const override;

 private:
  ImportedTransport(SharedController& c, SharedFds fds) : c_(c), registers_(c), fds_(std::move(fds)) {}
  SharedController& c_;
  SharedRegisters registers_;
  SharedFds fds_;
  uint8_t* map_ = nullptr;
  size_t map_bytes_ = 0;
};

}  // namespace nvmux
