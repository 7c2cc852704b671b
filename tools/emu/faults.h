// Fault injection: rules that make the emulated controller misbehave on
// purpose, so drivers can be tested against failing devices.
//
// A FaultRule is one instruction ("fail the next 3 I/O Reads with 2/81",
// "delay every completion by 500 us", "drop the next Write", "set CSTS.CFS
// after 100 ms"). Rules come from the command line (`--fault KIND:KEY=V,...`)
// or the control socket (`KIND KEY=V ...`); ParseFaultRule reads both forms.
//
// The FaultInjector holds the active rules. The queue engine asks it once
// per fetched command (OnCommand, with the queue type and opcode); the first
// matching rule of each kind applies and its count goes down; a rule whose
// count reaches zero is removed. A command can be both delayed and failed
// (fail and drop take precedence over each other in rule order; a delay
// applies to whatever completion results, a dropped command has none).
//
// Thread safety: FaultInjector is thread-safe (its own mutex; never held
// while calling out). The poller calls OnCommand/CfsDue with the controller
// mutex held; the control-socket thread calls Add/Clear/Describe without it,
// so the lock order is always controller -> injector.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nvmux/spec/status.h"
#include "shm/base/result.h"

namespace nvmux::emu {

enum class FaultKind { kFail, kDelay, kDrop, kCfs };
// Which submission queues a rule applies to.
enum class FaultQueue { kAny, kAdmin, kIo };

const char* ToString(FaultKind kind);
const char* ToString(FaultQueue queue);

struct FaultRule {
  FaultKind kind = FaultKind::kFail;
  std::optional<uint8_t> opcode;       // nullopt: every opcode
  FaultQueue queue = FaultQueue::kIo;  // default: I/O queues only
  // Commands still to affect; nullopt: unlimited (the default for delay).
  std::optional<uint32_t> count;
  spec::CompletionStatus status = spec::Retry(spec::sct::kGeneric, spec::sc::kInternalError);  // fail
  uint64_t delay_us = 0;  // delay
  uint64_t after_ms = 0;  // cfs: from the moment the rule is added
};

// Parses "fail:opc=0x02,count=3,sct=2,sc=0x81,dnr=1,queue=io|admin|any",
// "delay:us=500[,opc=..,count=..,queue=..]", "drop:opc=0x01[,count=..]",
// "cfs[:after_ms=N]". The kind may also be followed by a space and the keys
// separated by spaces or commas (the control-socket form). Numbers are
// decimal or 0x-prefixed hex. Defaults: queue=io, count=1 for fail and drop
// (unlimited for delay), sct=0 sc=0x06 dnr=0 for fail.
// Errors: EINVAL naming the bad key or value and what is allowed.
[[nodiscard]] Result<FaultRule> ParseFaultRule(std::string_view text);
// The rule in the control-socket form, e.g. "fail opc=0x02 queue=io count=3 sct=2 sc=0x81 dnr=0".
std::string Describe(const FaultRule& rule);

// What the queue engine must do with one fetched command.
struct FaultDecision {
  enum class Action { kExecute, kFail, kDrop };
  Action action = Action::kExecute;
  spec::CompletionStatus status;  // kFail: the status to complete with
  uint64_t delay_us = 0;          // > 0: hold the completion this long
};

class FaultInjector {
 public:
  FaultInjector() = default;
  FaultInjector(const FaultInjector&) = delete;
  FaultInjector& operator=(const FaultInjector&) = delete;

  // Adds a rule (a cfs rule arms its deadline now + after_ms).
  void Add(const FaultRule& rule, int64_t now_ns);
  // Removes every rule and a pending CFS deadline; counters are kept.
  void Clear();

  // Called once per fetched command. Cheap (one relaxed load) with no rules.
  FaultDecision OnCommand(FaultQueue queue, uint8_t opcode);
  // True once, when an armed CFS deadline has passed.
  bool CfsDue(int64_t now_ns);
  // The armed CFS deadline (MonotonicNanos), if any: how long the poller may sleep.
  std::optional<int64_t> CfsDeadline() const;

  // One line: the active rules and how many commands each fault kind hit.
  std::string Describe() const;

 private:
  static bool Matches(const FaultRule& rule, FaultQueue queue, uint8_t opcode);
  void Consume(size_t index);  // REQUIRES: mutex_ held

  mutable std::mutex mutex_;
  std::vector<FaultRule> rules_;        // GUARDED_BY(mutex_); no kCfs rules
  std::optional<int64_t> cfs_at_ns_;    // GUARDED_BY(mutex_)
  std::atomic<bool> armed_{false};      // rules_ or cfs_at_ns_ non-empty
  uint64_t failed_ = 0;                 // GUARDED_BY(mutex_)
  uint64_t dropped_ = 0;
  uint64_t delayed_ = 0;
};

}  // namespace nvmux::emu
