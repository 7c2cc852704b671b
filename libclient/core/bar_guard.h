// BarGuard: survives a device that vanishes under a mapped BAR (surprise
// removal), as SPDK does. When the kernel removes a PCI function, its BAR
// mappings (sysfs resource files) are torn down and the next register or
// doorbell access raises SIGBUS. A process-wide SIGBUS handler finds the
// guarded mapping the faulting address lies in, maps anonymous memory full
// of 0xFF over it (reads then see all ones, as a PCI read of a missing
// device does; doorbell writes go nowhere), sets the guard's `lost` flag
// and returns, so the access completes and the driver notices the loss
// through Transport::Lost(): outstanding I/O fails with ENXIO and probes
// report the removal, instead of the process dying. A SIGBUS elsewhere goes
// to the handler installed before (or kills the process as by default).
//
// Thread safety: Guard/Unguard from any thread; the handler is
// async-signal-safe (fixed table of atomics, mmap, no allocation).
// Ownership: the caller owns the mapping; Unguard before munmap.
#pragma once

#include <atomic>
#include <cstddef>

#include "shm/base/result.h"

namespace nvmux {

class BarGuard {
 public:
  // Guards [addr, addr + bytes) (page-aligned). `lost` must outlive the
  // guard. Errors: ENOSPC when 64 mappings are guarded already, and
  // sigaction's own.
  [[nodiscard]] static Result<BarGuard> Guard(void* addr, size_t bytes, std::atomic<bool>* lost);
  BarGuard() = default;
  BarGuard(BarGuard&& other) noexcept : slot_(other.slot_) { other.slot_ = -1; }
  BarGuard& operator=(BarGuard&& other) noexcept;
  BarGuard(const BarGuard&) = delete;
  BarGuard& operator=(const BarGuard&) = delete;
  ~BarGuard() { Unguard(); }
  void Unguard();

  // How many SIGBUS faults the handler has absorbed in this process (tests, logs).
  static uint64_t Absorbed();

 private:
  explicit BarGuard(int slot) : slot_(slot) {}
  int slot_ = -1;
};

}  // namespace nvmux
