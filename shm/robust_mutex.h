// Robust, process-shared lock for state in shared memory.
//
// RobustMutexState lives in shared memory (standard layout, trivially
// copyable, no pointers). RobustLock is a per-process handle that pairs it
// with this process's repair callback: when a holder dies (kill -9 included)
// the kernel hands the lock to the next locker with EOWNERDEAD; RobustLock then
// runs the repair callback while holding the lock, and only if it succeeds
// marks the mutex consistent. Critical sections must therefore record their
// intent in shared memory before changing shared state, so a repair can roll
// forward or back.
//
// If the repair fails, the mutex is left unrecoverable: every later Lock()
// returns ENOTRECOVERABLE, and the group must be restarted.
//
// Thread safety: a RobustLock may be used from any thread of its process.
// Locking twice from the same thread fails with EDEADLK (error-checking mutex).
#pragma once

#include <pthread.h>

#include <cstdint>
#include <functional>
#include <type_traits>

#include "shm/base/clock.h"
#include "shm/base/result.h"

namespace nvmux::shm {

struct RobustMutexState {
  pthread_mutex_t mutex;
  uint32_t magic;           // kRobustMutexMagic once initialised
  uint32_t owner_died;      // times a holder died and was repaired (atomic_ref)
};
static_assert(std::is_standard_layout_v<RobustMutexState>);
static_assert(std::is_trivially_copyable_v<RobustMutexState>);

constexpr uint32_t kRobustMutexMagic = 0x524d5458;  // "RMTX"

// Initialises the mutex in place. Call once, before any other process maps it.
Status InitRobustMutex(RobustMutexState& state);

class RobustLock {
 public:
  // Runs with the lock held after its previous holder died; returns an error
  // if the protected state cannot be repaired.
  using Repair = std::function<Status()>;

  class Guard {
   public:
    Guard(Guard&& other) noexcept;
    Guard& operator=(Guard&&) = delete;
    Guard(const Guard&) = delete;
    ~Guard();
    // True if this acquisition repaired state left by a dead holder.
    bool repaired() const { return repaired_; }

   private:
    friend class RobustLock;
    Guard(pthread_mutex_t* mutex, bool repaired) : mutex_(mutex), repaired_(repaired) {}
    pthread_mutex_t* mutex_;
    bool repaired_;
  };

  // `state` must outlive this handle. `repair` may be empty (nothing to repair).
  RobustLock(RobustMutexState& state, Repair repair) : state_(state), repair_(std::move(repair)) {}
  RobustLock(const RobustLock&) = delete;
  RobustLock& operator=(const RobustLock&) = delete;

  // Blocks up to `timeout`. Errors: ETIMEDOUT (a live holder kept it),
  // EDEADLK (this thread holds it), ENOTRECOVERABLE (an earlier repair failed),
  // EOWNERDEAD (the holder died and this repair failed; now unrecoverable),
  // EINVAL (state not initialised).
  Result<Guard> Lock(Nanos timeout = std::chrono::seconds(5));
  // Errors as Lock, plus EBUSY when held.
  Result<Guard> TryLock();

  // How many times a dead holder's state was repaired, in any process.
  uint32_t OwnerDiedCount() const;

 private:
  Result<Guard> Finish(int rc);

  RobustMutexState& state_;
  Repair repair_;
};

}  // namespace nvmux::shm
