// Get Features and Set Features. Runs with the controller mutex held.
#include <cstring>

#include "shm/base/clock.h"
#include "tools/emu/controller.h"

namespace nvmux::emu {

using namespace nvmux::spec;

namespace {

constexpr CompletionStatus kInvalidField = Dnr(sct::kGeneric, sc::kInvalidField);

bool FeatureSupported(uint8_t fid) {
  switch (fid) {
    case fid::kArbitration:
    case fid::kPowerManagement:
    case fid::kTemperatureThreshold:
    case fid::kErrorRecovery:
    case fid::kVolatileWriteCache:
    case fid::kNumberOfQueues:
    case fid::kInterruptCoalescing:
    case fid::kWriteAtomicityNormal:
    case fid::kAsyncEventConfig:
    case fid::kTimestamp:
    case fid::kKeepAliveTimer:
    case fid::kInterruptVectorConfig:
    case fid::kHostBehaviorSupport:
      return true;
  }
  return false;
}

// Write Atomicity Normal is reported but fixed (AWUN = AWUPF = 0).
bool FeatureChangeable(uint8_t fid) { return fid != fid::kWriteAtomicityNormal; }

constexpr uint8_t kTmpselComposite = 0;
constexpr uint8_t kThselOver = 0;
constexpr uint8_t kThselUnder = 1;
// Async Event Configuration bits this controller honours: the SMART
// critical warnings (7:0) and Namespace Attribute Notices (8).
constexpr uint32_t kAecSupported = 0x1FF;
// Identify KAS in 100 ms units: KATO is kept in multiples of it.
constexpr uint32_t kKatoGranularityMs = Controller::kKas * 100u;

}  // namespace

Controller::Outcome Controller::GetFeatures(const Sqe& sqe) {
  const uint8_t fid = static_cast<uint8_t>(sqe.cdw10 & 0xFF);
  const uint8_t select = static_cast<uint8_t>((sqe.cdw10 >> 8) & 0x7);
  if (!FeatureSupported(fid)) return {kInvalidField};
  if (select > sel::kSupportedCapabilities) return {kInvalidField};
  if (select == sel::kSupportedCapabilities) {
    return {kSuccess, FeatureChangeable(fid) ? kFeatureCapChangeable : 0u};
  }
  // Nothing is saveable, so "saved" reads the default.
  const bool current = select == sel::kCurrent;
  const Features defaults = [&] {
    Features f;
    f.nsqa = options_.io_queues;
    f.ncqa = options_.io_queues;
    return f;
  }();
  const Features& f = current ? features_ : defaults;
  switch (fid) {
    case fid::kInterruptVectorConfig: {
      // The vector must exist (one per CQ the controller offers, plus admin).
      const uint32_t iv = sqe.cdw11 & 0xFFFF;
      if (iv >= msix_vectors_) return {kInvalidField};
      const bool cd = iv == 0 || (iv < f.iv_coalescing_disabled.size() && f.iv_coalescing_disabled[iv] != 0);
      return {kSuccess, iv | (cd ? kIvConfigCd : 0u)};
    }
    case fid::kHostBehaviorSupport: {
      uint8_t data[kHostBehaviorSupportBytes] = {};
      data[0] = f.host_behavior_acre;
      return {TransferToHost(sqe, data)};
    }
    case fid::kArbitration: return {kSuccess, f.arbitration};
    case fid::kPowerManagement: return {kSuccess, f.power_management};
    case fid::kTemperatureThreshold: {
      const uint8_t tmpsel = static_cast<uint8_t>((sqe.cdw11 >> 16) & 0xF);
      const uint8_t thsel = static_cast<uint8_t>((sqe.cdw11 >> 20) & 0x3);
      if (tmpsel != kTmpselComposite || thsel > kThselUnder) return {kInvalidField};
      return {kSuccess, thsel == kThselOver ? f.temp_over : f.temp_under};
    }
    case fid::kErrorRecovery: return {kSuccess, f.error_recovery};
    case fid::kVolatileWriteCache: return {kSuccess, f.volatile_write_cache};
    case fid::kNumberOfQueues:
      return {kSuccess, static_cast<uint32_t>(f.nsqa - 1) | (static_cast<uint32_t>(f.ncqa - 1) << 16)};
    case fid::kInterruptCoalescing: return {kSuccess, f.interrupt_coalescing};
    case fid::kWriteAtomicityNormal: return {kSuccess, 0};
    case fid::kAsyncEventConfig: return {kSuccess, f.async_event_config};
    case fid::kKeepAliveTimer: return {kSuccess, f.keep_alive_timer};
    case fid::kTimestamp: {
      // Bytes 5:0 milliseconds; byte 6 bit 0 Synch (0: kept running), bits
      // 3:1 Timestamp Origin (1: set by Set Features).
      uint64_t ms = 0;
      uint8_t attributes = 0;
      if (current && f.timestamp_set) {
        ms = f.timestamp_base_ms +
             static_cast<uint64_t>((MonotonicNanos() - f.timestamp_set_at_ns) / 1'000'000);
        attributes = 1u << 1;
      } else if (current) {
        ms = static_cast<uint64_t>(MonotonicNanos() / 1'000'000);  // since an arbitrary origin
      }
      uint8_t data[8] = {};
      std::memcpy(data, &ms, 6);
      data[6] = attributes;
      return {TransferToHost(sqe, data)};
    }
  }
  return {kInvalidField};
}

Controller::Outcome Controller::SetFeatures(const Sqe& sqe) {
  const uint8_t fid = static_cast<uint8_t>(sqe.cdw10 & 0xFF);
  const bool save = (sqe.cdw10 & (1u << 31)) != 0;
  const uint32_t v = sqe.cdw11;
  if (!FeatureSupported(fid)) return {kInvalidField};
  if (save) return {Dnr(sct::kCommandSpecific, sc::kFeatureIdNotSaveable)};
  if (!FeatureChangeable(fid)) return {Dnr(sct::kCommandSpecific, sc::kFeatureNotChangeable)};
  Features& f = features_;
  switch (fid) {
    case fid::kArbitration:
      f.arbitration = v;
      return {kSuccess};
    case fid::kPowerManagement:
      if ((v & 0x1F) != 0) return {kInvalidField};  // one power state (NPSS 0)
      f.power_management = v & 0xFF;
      return {kSuccess};
    case fid::kTemperatureThreshold: {
      const uint8_t tmpsel = static_cast<uint8_t>((v >> 16) & 0xF);
      const uint8_t thsel = static_cast<uint8_t>((v >> 20) & 0x3);
      if (tmpsel != kTmpselComposite || thsel > kThselUnder) return {kInvalidField};
      (thsel == kThselOver ? f.temp_over : f.temp_under) = static_cast<uint16_t>(v & 0xFFFF);
      return {kSuccess};
    }
    case fid::kErrorRecovery:
      if ((v & (1u << 16)) != 0) return {kInvalidField};  // DULBE: NSFEAT bit 2 not offered
      f.error_recovery = v & 0xFFFF;
      return {kSuccess};
    case fid::kVolatileWriteCache:
      f.volatile_write_cache = v & 1;
      return {kSuccess};
    case fid::kNumberOfQueues: {
      const uint32_t nsqr = v & 0xFFFF;
      const uint32_t ncqr = v >> 16;
      if (nsqr == 0xFFFF || ncqr == 0xFFFF) return {kInvalidField};
      for (size_t qid = 1; qid < cqs_.size(); ++qid) {
        if (cqs_[qid]) return {Dnr(sct::kGeneric, sc::kCommandSequenceError)};
      }
      f.nsqa = static_cast<uint16_t>(std::min<uint32_t>(nsqr + 1, options_.io_queues));
      f.ncqa = static_cast<uint16_t>(std::min<uint32_t>(ncqr + 1, options_.io_queues));
      return {kSuccess, static_cast<uint32_t>(f.nsqa - 1) | (static_cast<uint32_t>(f.ncqa - 1) << 16)};
    }
    case fid::kInterruptCoalescing:
      f.interrupt_coalescing = v & 0xFFFF;
      return {kSuccess};
    case fid::kAsyncEventConfig:
      f.async_event_config = v & kAecSupported;
      return {kSuccess};
    case fid::kKeepAliveTimer:
      // KATO is rounded up to the KAS granularity (the value in force is
      // what Get Features reports); 0 turns the timer off. Setting it
      // (re)starts the timer, as a Keep Alive command does.
      f.keep_alive_timer = v == 0 ? 0u
                                  : static_cast<uint32_t>(std::min<uint64_t>(
                                        (uint64_t{v} + kKatoGranularityMs - 1) / kKatoGranularityMs * kKatoGranularityMs,
                                        UINT32_MAX / kKatoGranularityMs * kKatoGranularityMs));
      RestartKeepAlive();
      return {kSuccess};
    case fid::kInterruptVectorConfig: {
      const uint32_t iv = v & 0xFFFF;
      if (iv >= msix_vectors_) return {kInvalidField};
      // Vector 0: the admin CQ's, never coalesced; CD stays 1 whatever is asked.
      if (iv == 0) return {kSuccess};
      if (f.iv_coalescing_disabled.size() < msix_vectors_) f.iv_coalescing_disabled.resize(msix_vectors_, 0);
      f.iv_coalescing_disabled[iv] = (v & kIvConfigCd) != 0 ? 1 : 0;
      return {kSuccess};
    }
    case fid::kHostBehaviorSupport: {
      uint8_t data[kHostBehaviorSupportBytes] = {};
      CompletionStatus st = TransferFromHost(sqe, data);
      if (!st.ok()) return {st};
      // ACRE: 0 or 1. The CRDT fields are 0, so enabling it changes no
      // completion (CRD stays 0). Bytes 1-511 are reserved in NVMe 1.4
      // (later revisions' fields are not offered) and not stored.
      if (data[0] > 1) return {kInvalidField};
      f.host_behavior_acre = data[0];
      return {kSuccess};
    }
    case fid::kTimestamp: {
      uint8_t data[8] = {};
      CompletionStatus st = TransferFromHost(sqe, data);
      if (!st.ok()) return {st};
      uint64_t ms = 0;
      std::memcpy(&ms, data, 6);
      f.timestamp_base_ms = ms;
      f.timestamp_set_at_ns = MonotonicNanos();
      f.timestamp_set = true;
      return {kSuccess};
    }
    case fid::kWriteAtomicityNormal:
      return {Dnr(sct::kCommandSpecific, sc::kFeatureNotChangeable)};
  }
  return {kInvalidField};
}

}  // namespace nvmux::emu
