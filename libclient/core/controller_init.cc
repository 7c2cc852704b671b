#include "controller_init.h"

#include <cstring>
#include <string>

#include "nvmux/spec/features.h"
#include "nvmux/spec/status.h"
#include "shm/base/format.h"
#include "shm/base/log.h"

namespace nvmux {
namespace {

constexpr uint32_t kPageSize = 4096;  // host memory page size: CC.MPS = 0
constexpr uint8_t kIoSqes = 6;        // 64-byte SQ entries
constexpr uint8_t kIoCqes = 4;        // 16-byte CQ entries

std::string StatusText(const spec::Cqe& c) {
  return "status " + std::to_string(c.sct()) + "/" + Hex(c.sc()) + (c.status & (1u << 15) ? " (do not retry)" : "");
}

}  // namespace

const char* ToString(InitState state) {
  switch (state) {
    case InitState::kReadCaps: return "read-caps";
    case InitState::kWaitReadyBeforeDisable: return "wait-ready-before-disable";
    case InitState::kDisable: return "disable";
    case InitState::kWaitDisabled: return "wait-disabled";
    case InitState::kConfigureAdminQueue: return "configure-admin-queue";
    case InitState::kEnable: return "enable";
    case InitState::kWaitReady: return "wait-ready";
    case InitState::kIdentifyController: return "identify-controller";
    case InitState::kSetNumberOfQueues: return "set-number-of-queues";
    case InitState::kDoorbellBufferConfig: return "doorbell-buffer-config";
    case InitState::kIdentifyActiveNamespaces: return "identify-active-namespaces";
    case InitState::kIdentifyNamespace: return "identify-namespace";
    case InitState::kReady: return "ready";
    case InitState::kFailed: return "failed";
  }
  return "?";
}

ControllerInit::ControllerInit(RegisterIo& regs, AdminChannel& admin, const Clock& clock, InitOptions options,
                               IdentifyBuffer buffer)
    : regs_(regs), admin_(admin), clock_(clock), options_(options), buffer_(buffer) {}

void ControllerInit::Enter(InitState next, std::optional<Nanos> timeout) {
  NVMUX_LOG(kDebug, "controller init: %s -> %s", ToString(state_), ToString(next));
  state_ = next;
  submitted_ = false;
  if (timeout) deadline_ = clock_.Now() + *timeout;
}

InitState ControllerInit::FailWith(Error error) {
  NVMUX_LOG(kDebug, "controller init: %s -> failed: %s", ToString(state_), error.message.c_str());
  error_ = std::move(error);
  state_ = InitState::kFailed;
  return state_;
}

void ControllerInit::WaitRdy(uint8_t rdy, InitState next) {
  auto raw = regs_.Read32(spec::kRegCsts);
  if (!raw) {
    FailWith(raw.error());
    return;
  }
  spec::Csts csts{*raw};
  if (*raw == 0xFFFFFFFF) {
    FailWith(Fail(ENXIO, "controller vanished (CSTS reads all ones)"));
  } else if (csts.cfs() != 0) {
    FailWith(Fail(ENXIO, std::string("controller fatal status (CSTS.CFS=1) while in ") + ToString(state_)));
  } else if (csts.rdy() == rdy) {
    Enter(next);
  } else if (clock_.Now() >= deadline_) {
    FailWith(Fail(ETIMEDOUT, "CSTS.RDY did not become " + std::to_string(rdy) + " within CAP.TO (" +
                                 std::to_string(data_.cap.to() * 500) + " ms)"));
  }
}

std::optional<spec::Cqe> ControllerInit::Command(const spec::Sqe& cmd, const char* what, bool error_status_ok) {
  if (!submitted_) {
    completion_ = std::make_shared<std::optional<spec::Cqe>>();
    Status st = admin_.Submit(cmd, [slot = completion_](const spec::Cqe& c) { *slot = c; });
    if (!st) {
      if (st.error().code != EAGAIN) FailWith(Fail(st.error().code, std::string(what) + ": " + st.error().message));
      return std::nullopt;  // EAGAIN: try again next step
    }
    submitted_ = true;
    deadline_ = clock_.Now() + options_.admin_timeout;
  }
  Status polled = admin_.Poll();
  if (!polled) {
    FailWith(Fail(polled.error().code, std::string(what) + ": " + polled.error().message));
    return std::nullopt;
  }
  if (!completion_->has_value()) {
    if (clock_.Now() >= deadline_)
      FailWith(Fail(ETIMEDOUT, std::string(what) + " did not complete within " +
                                   std::to_string(options_.admin_timeout.count() / 1'000'000) + " ms"));
    return std::nullopt;
  }
  spec::Cqe c = **completion_;
  if ((c.sct() != 0 || c.sc() != 0) && !error_status_ok) {
    FailWith(Fail(EIO, std::string(what) + " failed: " + StatusText(c)));
    return std::nullopt;
  }
  return c;
}

void ControllerInit::SetIdentifyBuffer(spec::Sqe& cmd) const {
  if (!options_.sgl_data) {
    cmd.prp1 = buffer_.iova;
    return;
  }
  spec::SglDescriptor d;
  d.address = buffer_.iova;
  d.length = kPageSize;
  d.type_subtype = spec::sgl::TypeByte(spec::sgl::kDataBlock);
  cmd.set_psdt(1);
  std::memcpy(&cmd.prp1, static_cast<const void*>(&d), sizeof(d));
}

InitState ControllerInit::Step() {
  switch (state_) {
    case InitState::kReadCaps: {
      auto cap = regs_.Read64(spec::kRegCap);
      auto vs = cap ? regs_.Read32(spec::kRegVs) : Result<uint32_t>(cap.error());
      auto cc = vs ? regs_.Read32(spec::kRegCc) : Result<uint32_t>(vs.error());
      auto csts = cc ? regs_.Read32(spec::kRegCsts) : Result<uint32_t>(cc.error());
      if (!csts) return FailWith(csts.error());
      data_.cap = spec::Cap{*cap};
      data_.vs = spec::Vs{*vs};
      if (*cap == ~0ull) return FailWith(Fail(ENXIO, "controller vanished (CAP reads all ones)"));
      if ((data_.cap.css() & spec::kCapCssNvm) == 0)
        return FailWith(Fail(ENODEV, "controller does not support the NVM command set (CAP.CSS " + Hex(data_.cap.css()) + ")"));
      if (data_.cap.mpsmin() > 0)
        return FailWith(Fail(ENODEV, "controller's minimum page size is " + std::to_string(kPageSize << data_.cap.mpsmin()) +
                                         " bytes; the host uses 4096"));
      if (options_.admin_entries < 2 || options_.admin_entries > 4096 ||
          options_.admin_entries > uint32_t{data_.cap.mqes()} + 1)
        return FailWith(Fail(EINVAL, "admin queue of " + std::to_string(options_.admin_entries) +
                                         " entries: allowed 2.." + std::to_string(std::min(4096u, data_.cap.mqes() + 1u))));
      Nanos to = std::chrono::milliseconds(500) * std::max<int>(data_.cap.to(), 1);
      spec::Cc cc_reg{*cc};
      spec::Csts csts_reg{*csts};
      if (cc_reg.en() && !csts_reg.rdy()) Enter(InitState::kWaitReadyBeforeDisable, to);
      else if (cc_reg.en()) Enter(InitState::kDisable, to);
      else Enter(InitState::kWaitDisabled, to);
      return state_;
    }
    case InitState::kWaitReadyBeforeDisable:
      // Spec: clearing CC.EN while CSTS.RDY is still rising is undefined.
      WaitRdy(1, InitState::kDisable);
      return state_;
    case InitState::kDisable: {
      auto cc = regs_.Read32(spec::kRegCc);
      if (!cc) return FailWith(cc.error());
      spec::Cc reg{*cc};
      reg.set_en(0);
      Status st = regs_.Write32(spec::kRegCc, reg.raw);
      if (!st) return FailWith(st.error());
      Enter(InitState::kWaitDisabled, std::chrono::milliseconds(500) * std::max<int>(data_.cap.to(), 1));
      return state_;
    }
    case InitState::kWaitDisabled:
      WaitRdy(0, InitState::kConfigureAdminQueue);
      return state_;
    case InitState::kConfigureAdminQueue: {
      if (options_.asq_iova % kPageSize != 0 || options_.acq_iova % kPageSize != 0)
        return FailWith(Fail(EINVAL, "admin queue addresses " + Hex(options_.asq_iova) + "/" + Hex(options_.acq_iova) +
                                         " must be 4 KiB aligned"));
      spec::Aqa aqa;
      aqa.set_asqs(static_cast<uint16_t>(options_.admin_entries - 1));
      aqa.set_acqs(static_cast<uint16_t>(options_.admin_entries - 1));
      Status st = regs_.Write32(spec::kRegAqa, aqa.raw);
      if (st) st = regs_.Write64(spec::kRegAsq, options_.asq_iova);
      if (st) st = regs_.Write64(spec::kRegAcq, options_.acq_iova);
      if (!st) return FailWith(st.error());
      Enter(InitState::kEnable);
      return state_;
    }
    case InitState::kEnable: {
      const uint8_t ams = options_.arbitration;
      // CAP.AMS bit 0: weighted round robin with urgent class; bit 1: vendor specific.
      const bool offered = ams == 0 || (ams == 1 && (data_.cap.ams() & 1) != 0) || (ams == 7 && (data_.cap.ams() & 2) != 0);
      if (!offered)
        return FailWith(Fail(ENOTSUP, "arbitration mechanism " + std::to_string(ams) + " (" +
                                          (ams == 1 ? "weighted round robin" : ams == 7 ? "vendor specific" : "reserved") +
                                          ") is not offered by the controller (CAP.AMS = " + Hex(data_.cap.ams()) +
                                          "); round robin (0) always is"));
      spec::Cc cc;
      cc.set_css(spec::kCcCssNvm);
      cc.set_mps(0);
      cc.set_ams(ams);
      cc.set_iosqes(kIoSqes);
      cc.set_iocqes(kIoCqes);
      cc.set_en(1);
      Status st = regs_.Write32(spec::kRegCc, cc.raw);
      if (!st) return FailWith(st.error());
      Enter(InitState::kWaitReady, std::chrono::milliseconds(500) * std::max<int>(data_.cap.to(), 1));
      return state_;
    }
    case InitState::kWaitReady:
      WaitRdy(1, InitState::kIdentifyController);
      return state_;
    case InitState::kIdentifyController: {
      spec::Sqe cmd;
      cmd.opc = spec::admin::kIdentify;
      SetIdentifyBuffer(cmd);
      cmd.cdw10 = spec::cns::kController;
      if (!Command(cmd, "Identify Controller")) return state_;
      std::memcpy(&data_.ctrlr, buffer_.data, sizeof(data_.ctrlr));
      if ((data_.ctrlr.sqes & 0xF) > kIoSqes || (data_.ctrlr.sqes >> 4) < kIoSqes ||
          (data_.ctrlr.cqes & 0xF) > kIoCqes || (data_.ctrlr.cqes >> 4) < kIoCqes)
        return FailWith(Fail(ENODEV, "controller does not take 64-byte SQ / 16-byte CQ entries (SQES " +
                                         Hex(data_.ctrlr.sqes) + ", CQES " + Hex(data_.ctrlr.cqes) + ")"));
      Enter(InitState::kSetNumberOfQueues);
      return state_;
    }
    case InitState::kSetNumberOfQueues: {
      spec::Sqe cmd;
      cmd.opc = spec::admin::kSetFeatures;
      cmd.cdw10 = spec::fid::kNumberOfQueues;
      uint32_t n = options_.io_queues == 0 ? 0 : options_.io_queues - 1u;
      cmd.cdw11 = n | (n << 16);
      auto c = Command(cmd, "Set Features (Number of Queues)");
      if (!c) return state_;
      data_.io_sq_granted = static_cast<uint16_t>((c->cdw0 & 0xFFFF) + 1);
      data_.io_cq_granted = static_cast<uint16_t>((c->cdw0 >> 16) + 1);
      data_.shadow_doorbells = false;
      bool offered = (data_.ctrlr.oacs & spec::kOacsDbcs) != 0;
      bool wanted = options_.shadow_doorbell_iova != 0 && options_.eventidx_iova != 0;
      Enter(offered && wanted ? InitState::kDoorbellBufferConfig : InitState::kIdentifyActiveNamespaces);
      return state_;
    }
    case InitState::kDoorbellBufferConfig: {
      // NVMe base spec 5.8: PRP1 the shadow doorbell page, PRP2 the EventIdx
      // page; both page-aligned. I/O queues then take their tails and heads
      // from the shadow page (see queue_ring.h for the host's side).
      spec::Sqe cmd;
      cmd.opc = spec::admin::kDoorbellBufferConfig;
      cmd.prp1 = options_.shadow_doorbell_iova;
      cmd.prp2 = options_.eventidx_iova;
      auto c = Command(cmd, "Doorbell Buffer Config", /*error_status_ok=*/true);
      if (!c) return state_;
      data_.shadow_doorbells = c->sct() == 0 && c->sc() == 0;
      if (!data_.shadow_doorbells)
        NVMUX_LOG(kInfo, "controller refused Doorbell Buffer Config (%s): shadow doorbells stay off",
                  StatusText(*c).c_str());
      Enter(InitState::kIdentifyActiveNamespaces);
      return state_;
    }
    case InitState::kIdentifyActiveNamespaces: {
      spec::Sqe cmd;
      cmd.opc = spec::admin::kIdentify;
      SetIdentifyBuffer(cmd);
      cmd.cdw10 = spec::cns::kActiveNamespaceList;
      if (!Command(cmd, "Identify (active namespace list)")) return state_;
      const auto* ids = static_cast<const uint32_t*>(buffer_.data);
      data_.active_nsids.clear();
      for (size_t i = 0; i < 1024 && ids[i] != 0; ++i) data_.active_nsids.push_back(ids[i]);
      data_.namespaces.clear();
      ns_index_ = 0;
      Enter(data_.active_nsids.empty() ? InitState::kReady : InitState::kIdentifyNamespace);
      return state_;
    }
    case InitState::kIdentifyNamespace: {
      spec::Sqe cmd;
      cmd.opc = spec::admin::kIdentify;
      cmd.nsid = data_.active_nsids[ns_index_];
      SetIdentifyBuffer(cmd);
      cmd.cdw10 = spec::cns::kNamespace;
      std::string what = "Identify Namespace " + std::to_string(cmd.nsid);
      if (!Command(cmd, what.c_str())) return state_;
      spec::IdentifyNamespace ns;
      std::memcpy(&ns, buffer_.data, sizeof(ns));
      data_.namespaces.push_back(ns);
      if (++ns_index_ == data_.active_nsids.size()) Enter(InitState::kReady);
      else submitted_ = false;  // next namespace, same state
      return state_;
    }
    case InitState::kReady:
    case InitState::kFailed:
      return state_;
  }
  return state_;
}

}  // namespace nvmux
