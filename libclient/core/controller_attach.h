// ControllerAttach: attaching one controller as an explicit state machine,
// stepped one non-blocking action per call, so a probe can bring up many
// controllers at once from one thread (ProbeContext::Poll, SPDK's
// spdk_nvme_probe_poll_async). Controller::Connect drives the same machine
// to the end.
//
//   kPrepare -> kInit (one ControllerInit::Step per call, to its kReady)
//   -> kFinish -> kReady          (any state -> kFailed, with an Error)
//   secondary: kPrepare (import what the primary published) -> kFinish -> kReady
//
// kPrepare: PrepareDevice, read CAP, allocate the admin queue memory, and in
// a primary reserve the controller's shared entry (or, in a secondary,
// import the published one). kInit: the init state machine
// (controller_init.h): its register waits and admin commands never block.
// kFinish: publish to the group, offer the fds, arm AERs and keep-alive
// (two short synchronous Set Features when the controller has namespace
// notices or keep-alive: bounded by admin_timeout_ms, microseconds on a
// healthy device).
//
// Thread safety: one thread steps a ControllerAttach. Ownership: owns the
// controller until Take(); destroying an unfinished attach (or failing)
// detaches the half-attached controller as its destructor does (a primary's
// reserved group entry is retired).
#pragma once

#include <memory>

#include "libclient/core/controller_init.h"
#include "libclient/core/group_role.h"
#include "libclient/core/transport.h"
#include "nvmux/controller.h"

namespace nvmux {

enum class AttachState { kPrepare, kInit, kFinish, kReady, kFailed };
const char* ToString(AttachState state);

class ControllerAttach {
 public:
  // `transport`: the opened transport (standalone and primary), or null in
  // a secondary (the controller is imported from the group). `role`: the
  // process's part in its group (group_role.h), null when standalone.
  ControllerAttach(Env& env, TransportId trid, std::unique_ptr<Transport> transport, ControllerOptions options,
                   const GroupRole* role);
  ~ControllerAttach();
  ControllerAttach(const ControllerAttach&) = delete;
  ControllerAttach& operator=(const ControllerAttach&) = delete;

  // One non-blocking action; returns the state after it.
  AttachState Step();
  AttachState state() const { return state_; }
  const TransportId& trid() const { return trid_; }
  // REQUIRES: state() == kFailed. Errors as Controller::Connect.
  const Error& error() const { return error_; }
  // REQUIRES: state() == kReady. The attached controller (once).
  std::unique_ptr<Controller> Take() { return std::move(ctrlr_); }

 private:
  // The bodies of the states, in controller.cc (they use its internals).
  [[nodiscard]] static Result<std::unique_ptr<Controller>> Prepare(Env& env, const TransportId& trid,
                                                                   std::unique_ptr<Transport> transport,
                                                                   const ControllerOptions& options,
                                                                   const GroupRole* role);
  [[nodiscard]] static Status Finish(Controller& ctrlr);
  AttachState FailWith(Error error);

  Env& env_;
  TransportId trid_;
  std::unique_ptr<Transport> transport_;
  ControllerOptions options_;
  const GroupRole* role_;
  AttachState state_ = AttachState::kPrepare;
  Error error_;
  std::unique_ptr<Controller> ctrlr_;
  std::unique_ptr<ControllerInit> init_;
};

}  // namespace nvmux
