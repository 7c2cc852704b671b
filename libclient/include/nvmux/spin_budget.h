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
// nvmux-perf does) keeps its own, and follows each wait with a Wait:
//
//   nvmux::SpinBudget spin(options.hybrid_spin_us);   // once
//   nvmux::SpinBudget::Wait wait(spin);                // a wait begins
//   for (;;) {
//     if (poll completed something) { wait.Found(); break; }
//     if (wait.Spin(ns since the wait began)) continue;
//     if (!qpair->ArmEvent()) continue;  // a completion came meanwhile
//     wait.Blocking();
//     block on qpair->event_fd()
//   }
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

  // One wait's account. Spin(spun_ns), after a poll that found nothing:
  // whether to go on spinning (the first call takes the wait's allowance,
  // BeginWait; once the wait blocked, never). Blocking(): the waiter armed
  // and blocks; the first time, the spin was wasted. Found(): a poll
  // completed something; it paid if the wait spun and had not blocked.
  class Wait {
   public:
    explicit Wait(SpinBudget& budget) : budget_(budget) {}
    bool Spin(int64_t spun_ns) {
      if (blocked_) return false;
      if (allowed_ns_ < 0) allowed_ns_ = budget_.BeginWait();
      return spun_ns < allowed_ns_;
    }
    void Blocking() {
      if (!blocked_) budget_.Wasted();
      blocked_ = true;
    }
    void Found() {
      if (allowed_ns_ >= 0 && !blocked_) budget_.Paid();
    }

   private:
    SpinBudget& budget_;
    int64_t allowed_ns_ = -1;  // -1: no poll of this wait found nothing yet
    bool blocked_ = false;
  };

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
