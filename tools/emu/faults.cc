#include "tools/emu/faults.h"

#include <charconv>
#include <cstdio>

#include "shm/base/format.h"

namespace nvmux::emu {
namespace {

constexpr std::string_view kKinds = "fail, delay, drop, cfs";

// Decimal or 0x-prefixed hex, at most max.
Result<uint64_t> ParseNumber(std::string_view kind, std::string_view key, std::string_view text, uint64_t max) {
  std::string_view digits = text;
  int base = 10;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    digits.remove_prefix(2);
    base = 16;
  }
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, base);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size()) {
    return Fail(EINVAL, "--fault " + std::string(kind) + ": " + std::string(key) + "=" + std::string(text) +
                            " is not a number (decimal or 0x hex)");
  }
  if (v > max) {
    return Fail(EINVAL, "--fault " + std::string(kind) + ": " + std::string(key) + "=" + std::string(text) +
                            " is out of range (at most " + std::to_string(max) + ")");
  }
  return v;
}

}  // namespace

const char* ToString(FaultKind kind) {
  switch (kind) {
    case FaultKind::kFail: return "fail";
    case FaultKind::kDelay: return "delay";
    case FaultKind::kDrop: return "drop";
    case FaultKind::kCfs: return "cfs";
  }
  return "?";
}

const char* ToString(FaultQueue queue) {
  switch (queue) {
    case FaultQueue::kAny: return "any";
    case FaultQueue::kAdmin: return "admin";
    case FaultQueue::kIo: return "io";
  }
  return "?";
}

Result<FaultRule> ParseFaultRule(std::string_view text) {
  const size_t sep = text.find_first_of(": ");
  const std::string_view kind = text.substr(0, sep);
  std::string_view rest = sep == std::string_view::npos ? std::string_view() : text.substr(sep + 1);
  FaultRule rule;
  if (kind == "fail") {
    rule.kind = FaultKind::kFail;
  } else if (kind == "delay") {
    rule.kind = FaultKind::kDelay;
  } else if (kind == "drop") {
    rule.kind = FaultKind::kDrop;
  } else if (kind == "cfs") {
    rule.kind = FaultKind::kCfs;
  } else {
    return Fail(EINVAL, "--fault '" + std::string(text) + "': kind '" + std::string(kind) +
                            "' is not one of: " + std::string(kKinds));
  }
  bool have_us = false;
  bool have_status = false;
  while (!rest.empty()) {
    const size_t end = rest.find_first_of(", ");
    std::string_view item = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return Fail(EINVAL, "--fault " + std::string(kind) + ": '" + std::string(item) + "' is not key=value");
    }
    const std::string_view key = item.substr(0, eq);
    const std::string_view value = item.substr(eq + 1);
    const bool is_cfs = rule.kind == FaultKind::kCfs;
    if (key == "after_ms" && is_cfs) {
      auto v = ParseNumber(kind, key, value, 24ull * 3600 * 1000);
      if (!v) return v.error();
      rule.after_ms = *v;
    } else if (is_cfs) {
      return Fail(EINVAL, "--fault cfs: key '" + std::string(key) + "' is unknown (keys: after_ms)");
    } else if (key == "opc") {
      auto v = ParseNumber(kind, key, value, 0xFF);
      if (!v) return v.error();
      rule.opcode = static_cast<uint8_t>(*v);
    } else if (key == "queue") {
      if (value == "io") {
        rule.queue = FaultQueue::kIo;
      } else if (value == "admin") {
        rule.queue = FaultQueue::kAdmin;
      } else if (value == "any") {
        rule.queue = FaultQueue::kAny;
      } else {
        return Fail(EINVAL, "--fault " + std::string(kind) + ": queue=" + std::string(value) +
                                " is not one of: io, admin, any");
      }
    } else if (key == "count") {
      auto v = ParseNumber(kind, key, value, UINT32_MAX);
      if (!v) return v.error();
      if (*v == 0) return Fail(EINVAL, "--fault " + std::string(kind) + ": count=0: must be at least 1");
      rule.count = static_cast<uint32_t>(*v);
    } else if (key == "sct" && rule.kind == FaultKind::kFail) {
      auto v = ParseNumber(kind, key, value, 7);
      if (!v) return v.error();
      rule.status.sct = static_cast<uint8_t>(*v);
      have_status = true;
    } else if (key == "sc" && rule.kind == FaultKind::kFail) {
      auto v = ParseNumber(kind, key, value, 0xFF);
      if (!v) return v.error();
      rule.status.sc = static_cast<uint8_t>(*v);
      have_status = true;
    } else if (key == "dnr" && rule.kind == FaultKind::kFail) {
      if (value != "0" && value != "1") return Fail(EINVAL, "--fault fail: dnr=" + std::string(value) + ": must be 0 or 1");
      rule.status.dnr = value == "1";
    } else if (key == "us" && rule.kind == FaultKind::kDelay) {
      auto v = ParseNumber(kind, key, value, 60'000'000);
      if (!v) return v.error();
      if (*v == 0) return Fail(EINVAL, "--fault delay: us=0: must be 1..60000000");
      rule.delay_us = *v;
      have_us = true;
    } else {
      const char* keys = rule.kind == FaultKind::kFail    ? "opc, queue, count, sct, sc, dnr"
                         : rule.kind == FaultKind::kDelay ? "us, opc, queue, count"
                                                          : "opc, queue, count";
      return Fail(EINVAL, "--fault " + std::string(kind) + ": key '" + std::string(key) + "' is unknown (keys: " +
                              keys + ")");
    }
  }
  if (rule.kind == FaultKind::kDelay && !have_us) {
    return Fail(EINVAL, "--fault delay: us=MICROSECONDS is required (e.g. delay:us=500)");
  }
  if (rule.kind == FaultKind::kFail && have_status && rule.status.ok()) {
    return Fail(EINVAL, "--fault fail: sct=0,sc=0 is success; give an error status (e.g. sct=2,sc=0x81)");
  }
  if ((rule.kind == FaultKind::kFail || rule.kind == FaultKind::kDrop) && !rule.count) rule.count = 1;
  return rule;
}

std::string Describe(const FaultRule& rule) {
  std::string s = ToString(rule.kind);
  if (rule.kind == FaultKind::kCfs) return s + " after_ms=" + std::to_string(rule.after_ms);
  if (rule.kind == FaultKind::kDelay) s += " us=" + std::to_string(rule.delay_us);
  s += " opc=" + (rule.opcode ? Hex(*rule.opcode, 2) : std::string("any"));
  s += " queue=" + std::string(ToString(rule.queue));
  s += " count=" + (rule.count ? std::to_string(*rule.count) : std::string("unlimited"));
  if (rule.kind == FaultKind::kFail) {
    s += " sct=" + std::to_string(rule.status.sct) + " sc=" + Hex(rule.status.sc, 2) +
         " dnr=" + (rule.status.dnr ? "1" : "0");
  }
  return s;
}

void FaultInjector::Add(const FaultRule& rule, int64_t now_ns) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (rule.kind == FaultKind::kCfs) {
    const int64_t at = now_ns + static_cast<int64_t>(rule.after_ms) * 1'000'000;
    cfs_at_ns_ = cfs_at_ns_ ? std::min(*cfs_at_ns_, at) : at;
  } else {
    rules_.push_back(rule);
  }
  armed_.store(true, std::memory_order_release);
}

void FaultInjector::Clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  rules_.clear();
  cfs_at_ns_.reset();
  armed_.store(false, std::memory_order_release);
}

bool FaultInjector::Matches(const FaultRule& rule, FaultQueue queue, uint8_t opcode) {
  if (rule.opcode && *rule.opcode != opcode) return false;
  return rule.queue == FaultQueue::kAny || rule.queue == queue;
}

void FaultInjector::Consume(size_t index) {
  FaultRule& rule = rules_[index];
  if (rule.count && --*rule.count == 0) rules_.erase(rules_.begin() + static_cast<std::ptrdiff_t>(index));
  armed_.store(!rules_.empty() || cfs_at_ns_.has_value(), std::memory_order_release);
}

FaultDecision FaultInjector::OnCommand(FaultQueue queue, uint8_t opcode) {
  FaultDecision decision;
  if (!armed_.load(std::memory_order_acquire)) return decision;
  std::lock_guard<std::mutex> lock(mutex_);
  // The first matching fail/drop rule decides; then the first matching delay
  // (unless the command is dropped: it never completes anyway).
  for (size_t i = 0; i < rules_.size(); ++i) {
    const FaultRule& rule = rules_[i];
    if ((rule.kind != FaultKind::kFail && rule.kind != FaultKind::kDrop) || !Matches(rule, queue, opcode)) continue;
    if (rule.kind == FaultKind::kFail) {
      decision.action = FaultDecision::Action::kFail;
      decision.status = rule.status;
      ++failed_;
    } else {
      decision.action = FaultDecision::Action::kDrop;
      ++dropped_;
    }
    Consume(i);
    break;
  }
  if (decision.action == FaultDecision::Action::kDrop) return decision;
  for (size_t i = 0; i < rules_.size(); ++i) {
    const FaultRule& rule = rules_[i];
    if (rule.kind != FaultKind::kDelay || !Matches(rule, queue, opcode)) continue;
    decision.delay_us = rule.delay_us;
    ++delayed_;
    Consume(i);
    break;
  }
  return decision;
}

bool FaultInjector::CfsDue(int64_t now_ns) {
  if (!armed_.load(std::memory_order_acquire)) return false;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!cfs_at_ns_ || now_ns < *cfs_at_ns_) return false;
  cfs_at_ns_.reset();
  armed_.store(!rules_.empty(), std::memory_order_release);
  return true;
}

std::optional<int64_t> FaultInjector::CfsDeadline() const {
  if (!armed_.load(std::memory_order_acquire)) return std::nullopt;
  std::lock_guard<std::mutex> lock(mutex_);
  return cfs_at_ns_;
}

std::string FaultInjector::Describe() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string s = "rules=" + std::to_string(rules_.size() + (cfs_at_ns_ ? 1 : 0));
  for (const FaultRule& rule : rules_) s += " [" + emu::Describe(rule) + "]";
  if (cfs_at_ns_) s += " [cfs pending]";
  s += " failed=" + std::to_string(failed_) + " dropped=" + std::to_string(dropped_) +
       " delayed=" + std::to_string(delayed_);
  return s;
}

}  // namespace nvmux::emu
