// Session: what a controller subcommand of nvmux-manage works on — this
// process's Env and the controller(s) it attached.
//
//  - standalone (`-r TRID`, no `-i`): private memory; the controller is
//    attached (and reset by the init) by this process. A vfio-user
//    controller serves one client at a time: while nvmuxd holds it, use -i.
//  - secondary (`-i GROUP`): joins nvmuxd's group; the controller is the
//    one published for `-r TRID`, or the first published one (every
//    published one when `all` is asked, for `list`).
//
// Thread safety: main thread only. Ownership: the session owns the Env and
// the controllers, destroyed controllers first.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nvmux/controller.h"
#include "nvmux/env.h"
#include "nvmux/transport_id.h"
#include "shm/base/result.h"

namespace nvmux::manage {

struct Target {
  std::optional<int> group;         // -i
  std::optional<TransportId> trid;  // -r
};

class Session {
 public:
  // Errors: EINVAL (neither -r nor -i), the Env's errors (no hugepages, group
  // absent or dead: each names what to do), ENOENT (-r names no controller
  // the group published, or it published none), Connect's errors.
  [[nodiscard]] static Result<std::unique_ptr<Session>> Open(const Target& target, bool all = false);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  Env& env() { return *env_; }
  bool secondary() const { return env_->role() == Role::kSecondary; }
  // The controller the subcommand acts on. REQUIRES: at least one (Open
  // guarantees it).
  Controller& ctrlr() { return *controllers_.front(); }
  const std::vector<std::unique_ptr<Controller>>& controllers() const { return controllers_; }

 private:
  Session() = default;
  std::unique_ptr<Env> env_;
  std::vector<std::unique_ptr<Controller>> controllers_;
};

// Prints "nvmux-manage: <subcommand>: <what failed>" on stderr for a failed
// driver call; a command the device completed with an error status is
// shown by its NVMe status name ("NVMe status: Invalid Field in Command
// (sct 0, sc 0x02)"). Returns 1, the exit code.
int ReportFailure(const std::string& subcommand, const Error& error, const Controller& ctrlr);

}  // namespace nvmux::manage
