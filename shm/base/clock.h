// Clocks: a monotonic clock and a fake one for tests, behind one interface so
// deadlines (state machines, attach timeouts) can be stepped in unit tests.
//
// Thread safety: SystemClock is stateless; FakeClock is safe to read from any
// thread while one thread advances it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace nvmux {

using Nanos = std::chrono::nanoseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time since an unspecified epoch.
  virtual Nanos Now() const = 0;
};

class SystemClock final : public Clock {
 public:
  Nanos Now() const override;
  // The process-wide instance.
  static const SystemClock& Get();
};

class FakeClock final : public Clock {
 public:
  Nanos Now() const override { return Nanos(now_.load()); }
  void Advance(Nanos by) { now_.fetch_add(by.count()); }

 private:
  std::atomic<int64_t> now_{0};
};

// Monotonic nanoseconds, cheap (vDSO clock_gettime).
int64_t MonotonicNanos();

}  // namespace nvmux
