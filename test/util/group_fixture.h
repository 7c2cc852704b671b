// The pieces every multi-process test fixture repeats: a group id of its
// own, a temporary directory, nvmux-emu and nvmuxd started and waited for,
// and stopped cleanly (a daemon that does not exit 0 on SIGTERM fails the
// test). Non-fatal gtest expectations; callers ASSERT on the results.
//
// Thread safety: the test's thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "test/util/subprocess.h"

namespace nvmux::test {

// A group id no other test process uses at the same time (from the pid and
// `salt`, distinct per call), whose stale files were cleaned.
int FreshGroupId(int salt);
// A new directory /tmp/nvmux-<tag>-XXXXXX, or "" (with a failure recorded).
std::string MakeTempDir(const std::string& tag);
// Spawns `argv` with `env`, or null (with a failure recorded).
std::unique_ptr<Subprocess> StartProcess(const std::vector<std::string>& argv,
                                         const std::vector<std::string>& env = {});
// Starts nvmux-emu (`argv`, whose --socket is `dir`) and waits for
// `dir`/cntrl and `dir`/control while it runs, up to kEmuStartTimeout. Null,
// with a failure recorded (naming its exit status if it exited), when it does not come up.
inline constexpr std::chrono::seconds kEmuStartTimeout{60};
std::unique_ptr<Subprocess> StartEmu(const std::vector<std::string>& argv, const std::string& dir,
                                     const std::vector<std::string>& env = {});
// Starts nvmuxd (`argv`) and waits up to 20 s for its "nvmuxd: group" line.
std::unique_ptr<Subprocess> StartNvmuxd(const std::vector<std::string>& argv,
                                        const std::vector<std::string>& env = {});
// SIGTERM, then expects a clean exit (status 0) within 20 s; resets `p`.
void StopCleanly(std::unique_ptr<Subprocess>& p, const std::string& what);
// SIGKILLs and reaps whatever of `children` still runs, and clears it.
void KillAll(std::vector<std::unique_ptr<Subprocess>>& children);

}  // namespace nvmux::test
