// ControllerInit: bringing an NVMe controller from reset to ready, as one
// explicit state machine (NVMe base spec 3.5.1, "Controller Initialization").
//
//   kReadCaps -> [kWaitReadyBeforeDisable] -> kDisable -> kWaitDisabled
//   -> kConfigureAdminQueue -> kEnable -> kWaitReady
//   -> kIdentifyController -> kSetNumberOfQueues
//   -> [kDoorbellBufferConfig] -> kIdentifyActiveNamespaces
//   -> kIdentifyNamespace (one per active namespace) -> kReady
//   (any state -> kFailed, with an Error naming what went wrong)
//
// kDoorbellBufferConfig (NVMe 1.3+, admin opcode 7Ch) runs only when the
// controller sets OACS bit 8 and the caller gave shadow doorbell and
// EventIdx pages. A completion with an error status leaves shadow doorbells
// off (ControllerData::shadow_doorbells false) and init carries on; a
// timeout or a transport error fails init as for any other command (a late
// success would leave the device reading a shadow page the host ignores).
//
// Each Step() performs one non-blocking action. Register waits are bounded
// by CAP.TO (500 ms units); admin commands by `admin_timeout`. The deadline
// is checked once per step against an injected clock, so tests step it one
// call at a time with a fake clock. Every transition is logged at debug level.
//
// Thread safety: one thread drives a ControllerInit. Ownership: borrows the
// register file, admin channel, clock and identify buffer for its lifetime.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "admin_channel.h"
#include "nvmux/spec/identify.h"
#include "nvmux/spec/registers.h"
#include "register_io.h"
#include "shm/base/clock.h"

namespace nvmux {

enum class InitState {
  kReadCaps,
  kWaitReadyBeforeDisable,
  kDisable,
  kWaitDisabled,
  kConfigureAdminQueue,
  kEnable,
  kWaitReady,
  kIdentifyController,
  kSetNumberOfQueues,
  kDoorbellBufferConfig,
  kIdentifyActiveNamespaces,
  kIdentifyNamespace,
  kReady,
  kFailed,
};
const char* ToString(InitState state);

struct InitOptions {
  uint64_t asq_iova = 0;          // admin SQ ring (page-aligned), entries of 64 B
  uint64_t acq_iova = 0;          // admin CQ ring (page-aligned), entries of 16 B
  uint16_t admin_entries = 32;    // both admin queues; 2..4096 and <= CAP.MQES+1
  uint16_t io_queues = 64;        // I/O queue pairs to ask for (Set Features, Number of Queues)
  // Shadow doorbell page and EventIdx page (page-aligned, zeroed DMA
  // memory) for Doorbell Buffer Config; 0: never configure shadow doorbells.
  uint64_t shadow_doorbell_iova = 0;
  uint64_t eventidx_iova = 0;
  Nanos admin_timeout = std::chrono::seconds(5);
  // CC.AMS: 0 round robin, 1 weighted round robin with urgent class, 7
  // vendor specific; anything but 0 must be offered in CAP.AMS.
  uint8_t arbitration = 0;
  // Describe identify buffers with an SGL Data Block descriptor instead of
  // PRP1 (Transport::SglOnly: NVMe/TCP).
  bool sgl_data = false;
};

// A 4 KiB DMA buffer for identify data: CPU address and device address.
struct IdentifyBuffer {
  void* data = nullptr;
  uint64_t iova = 0;
};

struct ControllerData {
  spec::Cap cap;
  spec::Vs vs;
  spec::IdentifyController ctrlr{};
  uint16_t io_sq_granted = 0;  // NSQA + 1
  uint16_t io_cq_granted = 0;  // NCQA + 1
  bool shadow_doorbells = false;  // Doorbell Buffer Config succeeded: I/O queues use the shadow pages
  std::vector<uint32_t> active_nsids;
  std::vector<spec::IdentifyNamespace> namespaces;  // same order as active_nsids
};

class ControllerInit {
 public:
  ControllerInit(RegisterIo& regs, AdminChannel& admin, const Clock& clock, InitOptions options, IdentifyBuffer buffer);

  // One non-blocking action; returns the state after it.
  InitState Step();
  InitState state() const { return state_; }
  // REQUIRES: state() == kFailed.
  const Error& error() const { return error_; }
  // Complete when state() == kReady.
  const ControllerData& data() const { return data_; }

 private:
  void Enter(InitState next, std::optional<Nanos> timeout = std::nullopt);
  InitState FailWith(Error error);
  // Register wait: polls CSTS until `rdy` matches; CFS fails.
  void WaitRdy(uint8_t rdy, InitState next);
  // Admin: submits on the first call in a state, then polls; returns the
  // completion once it arrived (and fails on timeout or, unless
  // `error_status_ok`, on an error status).
  std::optional<spec::Cqe> Command(const spec::Sqe& cmd, const char* what, bool error_status_ok = false);
  // Points cmd's data pointer at the 4 KiB identify buffer.
  void SetIdentifyBuffer(spec::Sqe& cmd) const;

  RegisterIo& regs_;
  AdminChannel& admin_;
  const Clock& clock_;
  InitOptions options_;
  IdentifyBuffer buffer_;

  InitState state_ = InitState::kReadCaps;
  Nanos deadline_{0};
  Error error_;
  ControllerData data_;
  bool submitted_ = false;
  // Shared with the in-flight command's callback, so a completion that
  // arrives after this object is gone writes nowhere harmful.
  std::shared_ptr<std::optional<spec::Cqe>> completion_;
  size_t ns_index_ = 0;
};

}  // namespace nvmux
