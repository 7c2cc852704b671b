// EmuControl: one command on nvmux-emu's control socket (<dir>/control, see
// tools/emu/README.md), for tests. Returns the reply line ("ok ..." or
// "error ..."); errors: connect/send/recv failures, ETIMEDOUT after 5 s.
#pragma once

#include <string>
#include <string_view>

#include "shm/base/result.h"

namespace nvmux::test {

[[nodiscard]] Result<std::string> EmuControl(const std::string& dir, std::string_view command);

}  // namespace nvmux::test
