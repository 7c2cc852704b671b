#include "libclient/core/bar_guard.h"

#include <signal.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <mutex>

namespace nvmux {
namespace {

constexpr int kSlots = 64;

struct Slot {
  std::atomic<uintptr_t> start{0};  // 0: free
  std::atomic<size_t> bytes{0};
  std::atomic<std::atomic<bool>*> lost{nullptr};
};

Slot g_slots[kSlots];
std::atomic<uint64_t> g_absorbed{0};
struct sigaction g_previous {};
std::once_flag g_installed;
int g_install_errno = 0;

void OnSigbus(int sig, siginfo_t* info, void* context) {
  uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Slot& s : g_slots) {
    uintptr_t start = s.start.load(std::memory_order_acquire);
    size_t bytes = s.bytes.load(std::memory_order_acquire);
    if (start == 0 || addr < start || addr >= start + bytes) continue;
    // The placeholder: private anonymous pages over the whole BAR mapping.
    void* p = ::mmap(reinterpret_cast<void*>(start), bytes, PROT_READ | PROT_WRITE,
                     MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) break;  // cannot recover: fall through to the default
    std::memset(p, 0xFF, bytes);
    if (std::atomic<bool>* lost = s.lost.load(std::memory_order_acquire)) lost->store(true, std::memory_order_release);
    g_absorbed.fetch_add(1, std::memory_order_relaxed);
    return;  // the access is retried on the placeholder
  }
  // Not a guarded BAR: whoever handled SIGBUS before us, or the default.
  if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(sig, info, context);
    return;
  }
  if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN && g_previous.sa_handler != nullptr) {
    g_previous.sa_handler(sig);
    return;
  }
  ::signal(SIGBUS, SIG_DFL);  // the retried access kills the process as usual
}

}  // namespace

Result<BarGuard> BarGuard::Guard(void* addr, size_t bytes, std::atomic<bool>* lost) {
  std::call_once(g_installed, [] {
    struct sigaction sa {};
    sa.sa_sigaction = OnSigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGBUS, &sa, &g_previous) != 0) g_install_errno = errno;
  });
  if (g_install_errno != 0)
    return Fail(g_install_errno, std::string("installing the SIGBUS handler: ") + std::strerror(g_install_errno));
  for (int i = 0; i < kSlots; ++i) {
    uintptr_t expected = 0;
    Slot& s = g_slots[i];
    // Claim with a marker first so the handler never sees a half-filled slot.
    if (!s.start.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) continue;
    s.bytes.store(bytes, std::memory_order_release);
    s.lost.store(lost, std::memory_order_release);
    s.start.store(reinterpret_cast<uintptr_t>(addr), std::memory_order_release);
    return BarGuard(i);
  }
  return Fail(ENOSPC, "more than 64 device mappings are guarded against surprise removal in this process");
}

BarGuard& BarGuard::operator=(BarGuard&& other) noexcept {
  if (this != &other) {
    Unguard();
    slot_ = other.slot_;
    other.slot_ = -1;
  }
  return *this;
}

void BarGuard::Unguard() {
  if (slot_ < 0) return;
  Slot& s = g_slots[slot_];
  s.start.store(1, std::memory_order_release);  // claimed but matching nothing
  s.lost.store(nullptr, std::memory_order_release);
  s.bytes.store(0, std::memory_order_release);
  s.start.store(0, std::memory_order_release);
  slot_ = -1;
}

uint64_t BarGuard::Absorbed() { return g_absorbed.load(std::memory_order_relaxed); }

}  // namespace nvmux
