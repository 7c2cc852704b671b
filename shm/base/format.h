// Small formatting helpers for error messages and logs.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace nvmux {

// "0x1f"; with min_digits 2, "0x02".
inline std::string Hex(uint64_t v, int min_digits = 1) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%0*llx", min_digits, static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace nvmux
