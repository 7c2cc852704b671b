// ControllerAttach's machine (the state bodies Prepare and Finish are in
// controller.cc, beside the controller internals they use), and
// AttachController: the machine driven to the end, for Controller::Connect.
#include "libclient/core/controller_attach.h"

#include <thread>

#include "libclient/core/controller_state.h"
#include "shm/base/log.h"

namespace nvmux {

const char* ToString(AttachState state) {
  switch (state) {
    case AttachState::kPrepare: return "prepare";
    case AttachState::kInit: return "init";
    case AttachState::kFinish: return "finish";
    case AttachState::kReady: return "ready";
    case AttachState::kFailed: return "failed";
  }
  return "?";
}

ControllerAttach::ControllerAttach(Env& env, TransportId trid, std::unique_ptr<Transport> transport,
                                   ControllerOptions options, const GroupRole* role)
    : env_(env), trid_(std::move(trid)), transport_(std::move(transport)), options_(options), role_(role) {}

// The init machine borrows the controller's admin queue: it goes first.
ControllerAttach::~ControllerAttach() { init_.reset(); }

AttachState ControllerAttach::FailWith(Error error) {
  NVMUX_LOG(kDebug, "attach %s: %s -> failed: %s", trid_.ToString().c_str(), ToString(state_), error.message.c_str());
  error_ = std::move(error);
  state_ = AttachState::kFailed;
  init_.reset();
  ctrlr_.reset();  // detaches what was attached so far (the group entry too)
  return state_;
}

AttachState ControllerAttach::Step() {
  switch (state_) {
    case AttachState::kPrepare: {
      auto ctrlr = Prepare(env_, trid_, std::move(transport_), options_, role_);
      if (!ctrlr) return FailWith(ctrlr.error());
      ctrlr_ = std::move(*ctrlr);
      if (env_.role() == Role::kSecondary || (ctrlr_->state().adopted && !ctrlr_->state().adopted_reinit)) {
        state_ = AttachState::kFinish;  // the (first) primary brought it up
      } else {
        init_ = ctrlr_->StartInit();
        state_ = AttachState::kInit;
      }
      NVMUX_LOG(kDebug, "attach %s: prepare -> %s", trid_.ToString().c_str(), ToString(state_));
      break;
    }
    case AttachState::kInit: {
      InitState s = init_->Step();
      if (s != InitState::kReady && s != InitState::kFailed) break;
      Status st = ctrlr_->FinishInit(*init_);
      init_.reset();
      if (!st) return FailWith(st.error());
      state_ = AttachState::kFinish;
      NVMUX_LOG(kDebug, "attach %s: init -> finish", trid_.ToString().c_str());
      break;
    }
    case AttachState::kFinish: {
      const spec::IdentifyController& id = ctrlr_->data();
      Status nqn = CheckSubsystemNqn(trid_, std::string_view(id.subnqn, sizeof(id.subnqn)));
      if (!nqn) return FailWith(nqn.error());
      Status st = Finish(*ctrlr_);
      if (!st) return FailWith(st.error());
      state_ = AttachState::kReady;
      NVMUX_LOG(kDebug, "attach %s: finish -> ready", trid_.ToString().c_str());
      break;
    }
    case AttachState::kReady:
    case AttachState::kFailed:
      break;
  }
  return state_;
}

Result<std::unique_ptr<Controller>> AttachController(Env& env, const TransportId& trid,
                                                     std::unique_ptr<Transport> transport,
                                                     const ControllerOptions& options, const GroupRole* role) {
  ControllerAttach attach(env, trid, std::move(transport), options, role);
  while (attach.state() != AttachState::kReady && attach.state() != AttachState::kFailed) {
    AttachState before = attach.state();
    if (attach.Step() == before && before == AttachState::kInit) std::this_thread::yield();
  }
  if (attach.state() == AttachState::kFailed) return attach.error();
  return attach.Take();
}

}  // namespace nvmux
