// nvmux-manage's option values: numbers (decimal or 0x hex) with their
// allowed range and lists of them, parsed after CLI11 so that every bad
// value gets the same one-line message naming the option and the value:
//
//   -f '300': out of range (allowed 0..255)
//   --nsze 'abc': not a number (decimal or 0x hex)
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shm/base/result.h"

namespace nvmux::manage {

// `text` as an unsigned number in [min, max]. Errors: EINVAL (message as above).
[[nodiscard]] Result<uint64_t> ParseNumber(std::string_view option, std::string_view text, uint64_t min, uint64_t max);

// A comma-separated list of numbers in [min, max] ("1,2,0x10"); at least one.
// Errors: EINVAL naming the option, the list and the bad item.
[[nodiscard]] Result<std::vector<uint64_t>> ParseNumberList(std::string_view option, std::string_view text,
                                                            uint64_t min, uint64_t max);

// Namespace ids: 1..0xFFFFFFFE, or also 0xFFFFFFFF ("every namespace") when
// `allow_all`. Errors: EINVAL naming the option and value.
inline constexpr uint32_t kAllNamespaces = 0xFFFFFFFFu;
[[nodiscard]] Result<uint32_t> ParseNsid(std::string_view option, std::string_view text, bool allow_all);

// Asks before a destructive subcommand. With `yes`: proceed. Otherwise, when
// stdin is a terminal, prints "<what>. Are you sure? [y/N] " on stderr and
// reads the answer; when it is not, refuses, naming --yes.
// Returns 0 to proceed, else the exit code to return: 1 (answered no), 2
// (stdin not a terminal and no --yes: a usage error).
int Confirm(std::string_view subcommand, std::string_view what, bool yes);

}  // namespace nvmux::manage
