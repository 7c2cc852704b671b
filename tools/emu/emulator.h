// Emulator: a complete nvmux-emu instance — controller, doorbell memory,
// vfio-user server — and its two threads: the socket thread (Server::Run)
// and the poller, which runs Controller::Poll() and backs off to sleeping
// when idle. It spins for kSpinNanos after the last work (long enough that
// commands arriving in bursts with gaps of a few milliseconds never wait for
// a thread wake-up, which costs 25-100 us on a virtual machine; short enough
// that keep-alive every few seconds costs well under 1 % of a core). Then:
//  * when the client took the doorbell ioeventfd and configured shadow
//    doorbells (Controller::PrepareToSleep agrees), it publishes "notify me"
//    through EventIdx and sleeps in poll() on the ioeventfd, the wake eventfd
//    and the stop eventfd, for up to kDeepSleepNanos (or until a deferred
//    CFS is due): no CPU while idle, and a kick wakes it in microseconds;
//  * otherwise (older clients) it sleeps with exponential backoff up to
//    kMaxSleepNanos, or kLongSleepNanos once idle for kLongIdleNanos, or
//    kStoppedSleepNanos while the controller is not running; a doorbell
//    written through the mmapped page is then seen within the current sleep.
// A trapped register or doorbell write wakes it at once in both modes.
//
// A third thread serves the control socket <socket_dir>/control (see
// control_socket.h; the commands are those of ExecuteControl).
//
// Used by the nvmux-emu executable and, in-process, by the conformance tests.
//
// Thread safety: Create/Start/Stop/destructor from one owning thread;
// controller(), Remove() and ExecuteControl() may be used from any thread
// (Controller, FaultInjector and Server::Remove are thread-safe).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "shm/base/result.h"
#include "shm/base/unique_fd.h"
#include "tools/emu/bar0_file.h"
#include "tools/emu/control_socket.h"
#include "tools/emu/controller.h"
#include "tools/emu/options.h"
#include "tools/emu/server.h"

namespace nvmux::emu {

class Emulator {
 public:
  static constexpr int64_t kSpinNanos = 10'000'000;
  static constexpr int64_t kYieldAfterNanos = 50'000;
  static constexpr int64_t kMaxSleepNanos = 1'000'000;
  static constexpr int64_t kLongIdleNanos = 1'000'000'000;
  static constexpr int64_t kLongSleepNanos = 5'000'000;
  static constexpr int64_t kStoppedSleepNanos = 50'000'000;
  static constexpr int64_t kDeepSleepNanos = 1'000'000'000;

  // Validates options, builds the namespaces, binds the socket (so a client
  // may connect as soon as this returns; it is served after Start),
  // publishes the BAR0 file as <socket_dir>/bar0 (for SPDK hosts that map the
  // doorbells by name) and binds <socket_dir>/control (failures of these two
  // are logged, not fatal). Fault rules in options are armed.
  // Errors: EINVAL (options), EADDRINUSE (a live server owns the socket),
  // ENOMEM, or the errno of a failed system call, each naming the culprit.
  [[nodiscard]] static Result<std::unique_ptr<Emulator>> Create(const EmulatorOptions& options);
  ~Emulator();  // Stop(), then removes control, bar0, the socket and the directory if it made it
  Emulator(const Emulator&) = delete;
  Emulator& operator=(const Emulator&) = delete;

  [[nodiscard]] Status Start();
  // Stops both threads and removes the socket. Idempotent.
  void Stop();

  const std::string& socket_path() const { return server_->socket_path(); }
  Controller& controller() { return *controller_; }

  // Surprise removal: the controller reads all-ones and stops (see
  // Controller::SurpriseRemove), the vfio-user connection is closed and new
  // ones refused. The control socket stays up; Stop/destructor work as usual.
  void Remove();
  // Runs one control-socket command line and returns its reply line
  // ("ok ..." or "error ..."): fail|delay|drop KEY=V..., cfs [after_ms=N],
  // remove, clear, status, corrupt lba=N [ns=1], aen. (control_commands.cc)
  // "status" also reports the poller's sleeps on the ioeventfd so far
  // (sleeps=N), how many of them a kick or trapped write ended (woken=N),
  // and whether it sleeps so now (asleep=0|1), and how often it published
  // "notify me" in EventIdx to go to sleep (armed=N: a sleep, or an attempt
  // taken back because work arrived).
  std::string ExecuteControl(std::string_view line);

 private:
  Emulator() = default;
  void PollLoop();
  void Wake();
  // Sleeps in poll() on the wake, stop and (if `kicks`) kick eventfds for
  // up to `ns`; drains what woke it. Whether something did (not the timeout).
  bool SleepOnFds(int64_t ns, bool kicks);

  std::string socket_dir_;
  bool created_dir_ = false;
  std::unique_ptr<Bar0File> bar0_;
  void* doorbell_map_ = nullptr;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<ControlSocket> control_;  // null if it could not be bound
  UniqueFd stop_fd_;
  std::thread socket_thread_;
  std::thread poll_thread_;
  std::atomic<bool> stopping_{false};
  UniqueFd wake_fd_;  // eventfd (non-blocking): Wake() makes it readable
  std::atomic<uint64_t> deep_sleeps_{0};  // sleeps on the ioeventfd (EventIdx "notify me" published)
  std::atomic<uint64_t> deep_wakes_{0};   // ... ended by a kick or Wake(), not by the timeout
  std::atomic<bool> deep_asleep_{false};  // in such a sleep now
};

}  // namespace nvmux::emu
