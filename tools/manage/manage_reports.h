// nvmux-manage's read-only controller subcommands: `list` (controllers and
// namespaces, like `nvme list`) and the log pages (`get-log` as a hex dump,
// `smart-log` and `error-log` decoded like nvme-cli). Each prints text, or
// one JSON line with `json`, and returns the exit code (0, or 1 with the
// driver error or NVMe status on stderr).
//
// Thread safety: main thread only.
#pragma once

#include <cstdint>
#include <optional>

#include "tools/manage/manage_session.h"

namespace nvmux::manage {

// Every controller of the session and its active namespaces.
int List(Session& s, bool json);

// SMART / Health Information (log 02h) for `nsid` (0xFFFFFFFF: the controller).
int SmartLog(Session& s, uint32_t nsid, bool json);

// Error Information (log 01h): `entries` entries (default: ELPE + 1, the
// controller's own count).
int ErrorLog(Session& s, std::optional<uint32_t> entries, bool json);

struct GetLogArgs {
  uint8_t lid = 0;
  uint32_t length = 0;  // bytes to show (read rounded up to a dword)
  uint32_t nsid = 0xFFFFFFFFu;
  uint64_t offset = 0;  // LPO, a multiple of 4
};
int GetLog(Session& s, const GetLogArgs& args, bool json);

// The largest --log-len / error-log entries accepted.
inline constexpr uint32_t kMaxLogBytes = 1u << 20;
inline constexpr uint32_t kMaxErrorEntries = 256;

}  // namespace nvmux::manage
