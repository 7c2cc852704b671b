// ControllerShutdown: the normal shutdown notification of one controller
// (NVMe base spec 3.6.1 "Memory-based Controller Shutdown"), as an explicit
// state machine stepped one non-blocking action per call, so that detaching
// many controllers overlaps their shutdowns (DetachContext, SPDK's
// spdk_nvme_detach_async + spdk_nvme_detach_poll_async).
//
//   kRequest (CC.SHN = 01b) -> kWaitComplete (CSTS.SHST == 10b) -> kComplete
//   kRequest/kWaitComplete -> kTimedOut (deadline) | kGone (device gone or
//   a register access failed)
//
// The deadline is Timeout(RTD3E): RTD3E (the device's worst case from
// SHN = 1 to SHST = 10b) rounded up to ms, at least 10 s (as SPDK), counted
// from the write of CC.SHN and checked once per step against the injected
// clock. Transitions are logged at debug level.
//
// Thread safety: one thread steps it. Ownership: borrows the registers and
// the clock, which outlive it.
#pragma once

#include <cstdint>
#include <string>

#include "libclient/core/register_io.h"
#include "shm/base/clock.h"

namespace nvmux {

enum class ShutdownState { kRequest, kWaitComplete, kComplete, kTimedOut, kGone };
const char* ToString(ShutdownState state);

class ControllerShutdown {
 public:
  // How long to wait for SHST = 10b given Identify Controller's RTD3E (us).
  static Nanos Timeout(uint32_t rtd3e_us);

  // `name` (the transport id) is for log messages.
  ControllerShutdown(RegisterIo& regs, const Clock& clock, Nanos timeout, std::string name);

  // One non-blocking action; returns the state after it.
  ShutdownState Step();
  ShutdownState state() const { return state_; }
  // kComplete, kTimedOut or kGone.
  bool done() const;

 private:
  void Enter(ShutdownState next);

  RegisterIo& regs_;
  const Clock& clock_;
  Nanos timeout_;
  Nanos deadline_{0};
  std::string name_;
  ShutdownState state_ = ShutdownState::kRequest;
};

}  // namespace nvmux
