#include "tools/emu/emulator.h"

#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "shm/base/clock.h"
#include "shm/base/log.h"

namespace nvmux::emu {

Result<std::unique_ptr<Emulator>> Emulator::Create(const EmulatorOptions& options) {
  NVMUX_TRY(Validate(options));
  std::unique_ptr<Emulator> emu(new Emulator());
  emu->socket_dir_ = options.socket_dir;
  if (::mkdir(options.socket_dir.c_str(), 0700) == 0) {
    emu->created_dir_ = true;
  } else if (errno != EEXIST) {
    return ErrnoError("--socket '" + options.socket_dir + "': cannot create the directory");
  }
  // BAR0 backing file: only the doorbell page [0x1000, 0x2000) is shared
  // with the client; the registers below it are trapped.
  auto bar0 = Bar0File::Create(options.socket_dir, Controller::kBar0Size);
  if (!bar0) return bar0.error();
  emu->bar0_ = std::move(*bar0);
  void* map = ::mmap(nullptr, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED, emu->bar0_->fd(),
                     nvmux::spec::kDoorbellBase);
  if (map == MAP_FAILED) return ErrnoError("mmap doorbell page");
  emu->doorbell_map_ = map;
  auto* doorbells = static_cast<uint32_t*>(map);
  auto controller = Controller::Create(options, doorbells);
  if (!controller) return controller.error();
  emu->controller_ = std::move(*controller);
  Emulator* self = emu.get();
  auto server = Server::Create(options.socket_dir, *emu->controller_, emu->bar0_->fd(), doorbells,
                               [self] { self->Wake(); });
  if (!server) return server.error();
  emu->server_ = std::move(*server);
  // Named only once it listens: a client that sees cntrl can connect.
  NVMUX_TRY(emu->server_->Publish());
  // The socket is ours: now the name bar0 may be (re)placed.
  if (Status published = emu->bar0_->Publish(); !published) {
    NVMUX_LOG(kWarning, "nvmux-emu: %s; clients must map the doorbells through the region fd",
              published.error().ToString().c_str());
  }
  auto control = ControlSocket::Create(options.socket_dir + "/control",
                                      [self](std::string_view line) { return self->ExecuteControl(line); });
  if (control) {
    emu->control_ = std::move(*control);
  } else {
    NVMUX_LOG(kWarning, "nvmux-emu: %s; no run-time control", control.error().ToString().c_str());
  }
  emu->stop_fd_.Reset(::eventfd(0, EFD_CLOEXEC));
  if (!emu->stop_fd_.valid()) return ErrnoError("eventfd");
  emu->wake_fd_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!emu->wake_fd_.valid()) return ErrnoError("eventfd");
  return emu;
}

Emulator::~Emulator() {
  Stop();
  control_.reset();     // removes the control socket
  server_.reset();      // removes the socket
  controller_.reset();  // before the doorbell page goes
  if (doorbell_map_ != nullptr) ::munmap(doorbell_map_, 0x1000);
  bar0_.reset();        // removes bar0
  if (created_dir_) ::rmdir(socket_dir_.c_str());
}

Status Emulator::Start() {
  if (socket_thread_.joinable()) return Fail(EINVAL, "emulator already started");
  socket_thread_ = std::thread([this] { server_->Run(stop_fd_.get()); });
  poll_thread_ = std::thread([this] { PollLoop(); });
  if (control_) NVMUX_TRY(control_->Start());
  return Ok();
}

void Emulator::Remove() {
  controller_->SurpriseRemove();
  server_->Remove();
  Wake();
}

void Emulator::Stop() {
  if (stopping_.exchange(true)) return;
  if (stop_fd_.valid()) {
    uint64_t one = 1;
    (void)!::write(stop_fd_.get(), &one, sizeof(one));
  }
  Wake();
  if (control_) control_->Stop();
  if (socket_thread_.joinable()) socket_thread_.join();
  if (poll_thread_.joinable()) poll_thread_.join();
}

void Emulator::Wake() {
  uint64_t one = 1;
  (void)!::write(wake_fd_.get(), &one, sizeof(one));
}

bool Emulator::SleepOnFds(int64_t ns, bool kicks) {
  pollfd pfds[3] = {{wake_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}, {server_->kick_fd(), POLLIN, 0}};
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  if (::ppoll(pfds, kicks ? 3 : 2, &ts, nullptr) <= 0) return false;
  uint64_t value;
  // Both are non-blocking; reading resets the counter (a kick that lands
  // after this read makes the next sleep return at once: no lost wake-up).
  (void)!::read(wake_fd_.get(), &value, sizeof(value));
  if (kicks) (void)!::read(server_->kick_fd(), &value, sizeof(value));
  return true;
}

void Emulator::PollLoop() {
  int64_t last_work = MonotonicNanos();
  int64_t sleep_ns = 0;
  while (!stopping_.load(std::memory_order_relaxed)) {
    if (controller_->Poll()) {
      last_work = MonotonicNanos();
      sleep_ns = 0;
      continue;
    }
    const int64_t idle = MonotonicNanos() - last_work;
    if (idle < kSpinNanos) {
      // Past the first microseconds of idling, the spin gives the CPU to
      // whoever waits for it (a process sharing this core, woken by an
      // interrupt of ours): a device takes no host CPU it does not need.
      if (idle >= kYieldAfterNanos) ::sched_yield();
      continue;
    }
    if (controller_->Running()) {
      // A kick (or trapped write) wakes a deep sleep within microseconds.
      // The kick eventfd is drained before the Poll() that follows the
      // wake-up, so a kick for work that Poll() then misses cannot be lost:
      // PrepareToSleep re-reads every doorbell after publishing EventIdx.
      if (std::optional<int64_t> max_ns = controller_->PrepareToSleep()) {
        deep_sleeps_.fetch_add(1, std::memory_order_relaxed);
        deep_asleep_.store(true, std::memory_order_relaxed);
        const bool woken = SleepOnFds(std::min(*max_ns, kDeepSleepNanos), /*kicks=*/true);
        deep_asleep_.store(false, std::memory_order_relaxed);
        controller_->EndSleep();
        if (woken) deep_wakes_.fetch_add(1, std::memory_order_relaxed);
        sleep_ns = 0;
        if (woken) last_work = MonotonicNanos();  // spin again; after a timeout, sleep again at once
        continue;
      }
    }
    // Doorbells written through the mmapped page cannot wake this sleep, so
    // the cap bounds the latency of the first command after idling.
    const int64_t cap = !controller_->Running() ? kStoppedSleepNanos
                        : idle > kLongIdleNanos  ? kLongSleepNanos
                                                 : kMaxSleepNanos;
    sleep_ns = sleep_ns == 0 ? 10'000 : std::min(sleep_ns * 2, cap);
    // An interrupt that coalescing holds back is raised on time.
    const int64_t coalesced = controller_->CoalescingDeadline();
    if (coalesced != INT64_MAX) sleep_ns = std::clamp<int64_t>(coalesced - MonotonicNanos(), 1'000, sleep_ns);
    if (SleepOnFds(sleep_ns, /*kicks=*/false)) {
      sleep_ns = 0;
      last_work = MonotonicNanos();
    }
  }
}

}  // namespace nvmux::emu
