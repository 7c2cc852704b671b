#include "shm/robust_mutex.h"

#include <time.h>

#include <atomic>
#include <cstring>

#include "shm/base/log.h"

namespace nvmux::shm {

Status InitRobustMutex(RobustMutexState& state) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  int rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (rc == 0) rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (rc == 0) rc = pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  if (rc == 0) rc = pthread_mutex_init(&state.mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0) return Fail(rc, std::string("cannot initialise robust mutex: ") + std::strerror(rc));
  state.owner_died = 0;
  std::atomic_ref<uint32_t>(state.magic).store(kRobustMutexMagic, std::memory_order_release);
  return Ok();
}

RobustLock::Guard::Guard(Guard&& other) noexcept : mutex_(other.mutex_), repaired_(other.repaired_) {
  other.mutex_ = nullptr;
}

RobustLock::Guard::~Guard() {
  if (mutex_ != nullptr) pthread_mutex_unlock(mutex_);
}

Result<RobustLock::Guard> RobustLock::Finish(int rc) {
  switch (rc) {
    case 0:
      return Guard(&state_.mutex, false);
    case EOWNERDEAD: {
      NVMUX_LOG(kWarning, "a process died holding a group lock; repairing the state it protected");
      Status repaired = repair_ ? repair_() : Ok();
      if (!repaired) {
        // Unlock without pthread_mutex_consistent: the mutex becomes
        // unrecoverable and every later locker learns it.
        pthread_mutex_unlock(&state_.mutex);
        return Fail(EOWNERDEAD, "a process died holding the group lock and its state could not be repaired: " +
                                    repaired.error().message);
      }
      pthread_mutex_consistent(&state_.mutex);
      std::atomic_ref<uint32_t>(state_.owner_died).fetch_add(1);
      return Guard(&state_.mutex, true);
    }
    case ETIMEDOUT:
      return Fail(ETIMEDOUT, "timed out waiting for the group lock (held by a live process)");
    case EBUSY:
      return Fail(EBUSY, "the group lock is held");
    case EDEADLK:
      return Fail(EDEADLK, "this thread already holds the group lock");
    case ENOTRECOVERABLE:
      return Fail(ENOTRECOVERABLE, "the group lock is unrecoverable (an earlier repair failed): restart the group");
    default:
      return Fail(rc, std::string("cannot take the group lock: ") + std::strerror(rc));
  }
}

Result<RobustLock::Guard> RobustLock::Lock(Nanos timeout) {
  if (std::atomic_ref<uint32_t>(state_.magic).load(std::memory_order_acquire) != kRobustMutexMagic)
    return Fail(EINVAL, "robust mutex used before initialisation");
  timespec deadline{};
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  int64_t ns = deadline.tv_nsec + timeout.count();
  deadline.tv_sec += static_cast<time_t>(ns / 1'000'000'000);
  deadline.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  return Finish(pthread_mutex_clocklock(&state_.mutex, CLOCK_MONOTONIC, &deadline));
}

Result<RobustLock::Guard> RobustLock::TryLock() {
  if (std::atomic_ref<uint32_t>(state_.magic).load(std::memory_order_acquire) != kRobustMutexMagic)
    return Fail(EINVAL, "robust mutex used before initialisation");
  return Finish(pthread_mutex_trylock(&state_.mutex));
}

uint32_t RobustLock::OwnerDiedCount() const {
  return std::atomic_ref<uint32_t>(state_.owner_died).load();
}

}  // namespace nvmux::shm
