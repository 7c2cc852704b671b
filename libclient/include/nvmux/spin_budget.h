// Hybrid waiting's spin budget (CompletionMode::kHybrid), adapted to
// whether spinning pays.
//
// A spin that ends without a completion (the waiter then arms its interrupt
// and blocks) halves the budget, down to 1 us; a spin that finds a
// completion restores the configured one; and every 64th wait below it
// spins the configured budget again, to notice when spinning pays again.
// So a waiter whose device answers within the budget spins as configured,
// and one whose completions come only once it blocks stops taking the CPU
// for nothing: a device slower than the budget, or one that shares this
// CPU (a software device, or a process the waiter shares its core with),
// which cannot run while the waiter spins.
//
// IoQpair::WaitCompletions and PollGroup::WaitCompletions keep one each;
// an application that waits in its own loop (over several queue pairs, as
// nvmux-perf does) keeps its own:
//
//   nvmux::SpinBudget spin(options.hybrid_spin_us);
//   ... a poll found nothing: the wait begins
//   int64_t allowed_ns = spin.BeginWait();
//   ... a completion within allowed_ns: spin.Paid();
//   ... none: spin.Wasted(); arm (IoQpair::ArmEvent) and block
//
// Not thread-safe: one per waiting thread.
#pragma once

#include <algorithm>
#include <cstdint>

namespace nvmux {

class SpinBudget {
 public:
  static constexpr int64_t kFloorNanos = 1'000;
  static constexpr uint32_t kProbeEvery = 64;

  explicit SpinBudget(uint32_t max_us) : max_ns_(int64_t{max_us} * 1000), ns_(max_ns_) {}

  // The spin allowed for the wait that begins now, in nanoseconds.
  int64_t BeginWait() {
    if (ns_ < max_ns_ && ++waits_ % kProbeEvery == 0) return max_ns_;
    return ns_;
  }
  // A completion came while spinning.
  void Paid() { ns_ = max_ns_; }
  // The allowed spin ran out without one: the wait blocks.
  void Wasted() { ns_ = std::max(ns_ / 2, std::min(kFloorNanos, max_ns_)); }

  // The budget now (without a probe), in nanoseconds.
  int64_t nanos() const { return ns_; }

  // How long a hybrid waiter blocks at most before it looks at its CQ
  // again, I/O outstanding: a device that drops an interrupt then costs it
  // 10 ms, not the wait's whole bound. SPDK's vfio-user target (its
  // "adaptive IRQs", on by default in poll mode) sends none for an entry
  // that brings a CQ's tail back to the index of the last interrupt it
  // sent, however many laps ago; a waiter that polls between blocks meets
  // that now and then. At most 100 wake-ups a second, and only while the
  // device is silent with I/O outstanding.
  static constexpr int64_t kBlockNanos = 10'000'000;

 private:
  int64_t max_ns_;
  int64_t ns_;
  uint32_t waits_ = 0;
};

}  // namespace nvmux
