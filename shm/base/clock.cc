#include "shm/base/clock.h"

#include <time.h>

namespace nvmux {

int64_t MonotonicNanos() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

Nanos SystemClock::Now() const { return Nanos(MonotonicNanos()); }

const SystemClock& SystemClock::Get() {
  static const SystemClock clock;
  return clock;
}

}  // namespace nvmux
