// IoQpair's completion modes (qpair.h CompletionMode): the interrupt eventfd
// of the queue's MSI-X vector, race-free arming, and the waiting policies.
//
// The device writes the vector's eventfd after each completion entry it
// posts (coalescing may delay it, never drop it), and the eventfd stays
// readable until read. Arming therefore drains first and re-checks the CQ
// second: a completion posted before the drain is seen by the re-check (its
// entry was written before its eventfd write, which the drain consumed), one
// posted after the drain leaves the eventfd readable, so the block that
// follows returns at once. The other order (check, then drain) would lose
// a completion landing in between.
// Hybrid mode masks the vector while it spins, where the MSI-X table is
// mapped (QpairState::vector_control): a masked vector's message is held
// as pending, so arming also unmasks (with a fence) before the re-check.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "libclient/core/controller_state.h"
#include "libclient/core/qpair_state.h"
#include "libclient/shared/fd_holders.h"
#include "shm/base/clock.h"
#include "shm/group.h"

namespace nvmux {

const char* CompletionModeName(CompletionMode mode) {
  switch (mode) {
    case CompletionMode::kPoll: return "poll";
    case CompletionMode::kEvent: return "event";
    case CompletionMode::kHybrid: return "hybrid";
  }
  return "?";
}

Status QpairState::ObtainInterrupt() {
  const std::string what = std::string("IoQpairOptions mode '") + CompletionModeName(options.mode) + "' on " +
                           cs->trid.ToString() + " (transport " + cs->transport->name() + ", queue " +
                           std::to_string(qid) + ")";
  const uint16_t vector = qid;  // one vector per I/O queue: the queue id (0 is the admin queue's)
  if (cs->shared != nullptr && !cs->owns_device) {
    // A secondary: the primary registered the eventfds and records them.
    auto fd = TakeVectorFd(*cs->shared, cs->env.group().processes(), vector);
    if (!fd) return Fail(fd.error().code, what + " needs an interrupt vector: " + fd.error().message);
    irq_fd = std::move(*fd);
    // So that a primary taking the group over keeps this very eventfd
    // registered while this queue may block on it (fd_holders.h).
    RecordVectorHolder(*cs->shared, vector, cs->env.group().self_slot(),
                       cs->env.group().processes().self_generation(), irq_fd.get());
  } else {
    const uint32_t vectors = cs->transport->InterruptVectors();
    if (vectors == 0)
      return Fail(ENOTSUP, what + " needs interrupts, and the transport offers no MSI-X vectors for this device" +
                               (cs->adopted ? " (this primary took the group over and could not register them again: see its log)" : "") +
                               ": use mode 'poll'");
    if (vector >= vectors)
      return Fail(ENOTSUP, what + " needs MSI-X vector " + std::to_string(vector) + ", and the device offers " +
                               std::to_string(vectors) + " (0.." + std::to_string(vectors - 1) +
                               ", 0 being the admin queue's): use mode 'poll' for this queue");
    const int raw = cs->transport->VectorFd(vector);
    UniqueFd dup(raw < 0 ? -1 : ::fcntl(raw, F_DUPFD_CLOEXEC, 0));
    if (!dup.valid()) return Fail(errno != 0 ? errno : ENOTSUP, what + ": duplicating the vector's eventfd failed");
    irq_fd = std::move(dup);
  }
  // The MSI-X table, when this process maps it (a secondary: from the fd
  // nvmuxd passed). A known state whoever used the vector before: hybrid
  // starts spinning.
  vector_control = cs->transport->VectorControl(vector);
  if (vector_control != nullptr) SetVectorMasked(options.mode == CompletionMode::kHybrid);
  // Non-blocking whatever the registering process chose (the file status
  // flags are shared by every duplicate, and every holder wants O_NONBLOCK).
  const int flags = ::fcntl(irq_fd.get(), F_GETFL);
  if (flags >= 0 && (flags & O_NONBLOCK) == 0) (void)::fcntl(irq_fd.get(), F_SETFL, flags | O_NONBLOCK);
  return Ok();
}

void QpairState::SetVectorMasked(bool masked) {
  SetVectorMask(vector_control, masked);
  // Unmasking, then re-checking the CQ: the device writes an entry, fences,
  // then reads the mask; one of the two sees the other's store.
  if (!masked) std::atomic_thread_fence(std::memory_order_seq_cst);
  vector_masked = masked;
}

bool QpairState::CompletionWaiting() const { return !finished.empty() || ring->Peek().has_value(); }

CompletionMode IoQpair::mode() const { return s_->options.mode; }

int IoQpair::event_fd() const { return s_->irq_fd.get(); }

bool IoQpair::ArmEvent() {
  QpairState& q = *s_;
  if (!q.irq_fd.valid()) return false;
  uint64_t count = 0;
  (void)!::read(q.irq_fd.get(), &count, sizeof(count));  // drain first ...
  if (q.vector_masked) q.SetVectorMasked(false);
  if (q.arm_hook) q.arm_hook();
  return !q.CompletionWaiting();  // ... then re-check (see the file comment)
}

Result<uint32_t> IoQpair::WaitCompletions(int timeout_ms, uint32_t max) {
  QpairState& q = *s_;
  const int64_t start = MonotonicNanos();
  const int64_t deadline = timeout_ms < 0 ? INT64_MAX : start + int64_t{timeout_ms} * 1'000'000;
  const bool hybrid = q.options.mode == CompletionMode::kHybrid;
  SpinBudget::Wait wait(q.spin);
  for (;;) {
    auto n = ProcessCompletions(max);
    if (!n || *n > 0) {
      if (hybrid && n) wait.Found();
      return n;
    }
    if (q.outstanding == 0) return 0u;
    const int64_t now = MonotonicNanos();
    if (now >= deadline) return 0u;
    if (q.options.mode == CompletionMode::kPoll) continue;
    // Hybrid: spin while this wait is recent (a completion ends the wait),
    // as long as spinning pays (SpinBudget).
    if (hybrid && wait.Spin(now - start)) continue;
    if (!ArmEvent()) continue;
    if (hybrid) wait.Blocking();
    // Bounded so a failed controller (whose interrupts stop) and I/O
    // timeouts are noticed by the next ProcessCompletions.
    int64_t block_ns = std::min<int64_t>(deadline - now, hybrid ? SpinBudget::kBlockNanos : 1'000'000'000);
    if (q.timeout_ns > 0) block_ns = std::min(block_ns, std::max<int64_t>(q.timeout_ns / 8, 1'000'000));
    pollfd p{q.irq_fd.get(), POLLIN, 0};
    q.stats.blocks++;
    const int ready = ::poll(&p, 1, static_cast<int>((block_ns + 999'999) / 1'000'000));
    if (ready > 0) q.stats.wakeups++;
    if (ready < 0 && errno != EINTR) return Fail(errno, std::string("waiting for completions: poll: ") + std::strerror(errno));
  }
}

}  // namespace nvmux
