#include "shm/core_set.h"

#include <pthread.h>
#include <sched.h>

#include <charconv>
#include <cstring>

namespace nvmux::shm {
namespace {

Error BadCoreSet(std::string_view text, const std::string& why) {
  return Fail(EINVAL, "bad core set '" + std::string(text) + "': " + why +
                          " (expected a hex mask like 0x3 or a list like [0-3,6])");
}

bool ParseNumber(std::string_view s, size_t& out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

}  // namespace

Result<CoreSet> CoreSet::Parse(std::string_view text) {
  CoreSet set;
  std::string_view s = text;
  bool is_list = s.find_first_of("[],-") != std::string_view::npos;
  if (!s.empty() && s.front() == '[') {
    if (s.back() != ']') return BadCoreSet(text, "missing ']'");
    s = s.substr(1, s.size() - 2);
  }
  if (s.empty()) return BadCoreSet(text, "empty");
  bool is_hex = !is_list && (s.starts_with("0x") || s.starts_with("0X"));
  if (is_hex) {
    std::string_view digits = s.substr(2);
    if (digits.empty()) return BadCoreSet(text, "no hex digits");
    size_t bit = 0;
    for (auto it = digits.rbegin(); it != digits.rend(); ++it, bit += 4) {
      int v;
      char c = *it;
      if (c >= '0' && c <= '9') v = c - '0';
      else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
      else return BadCoreSet(text, std::string("'") + c + "' is not a hex digit");
      for (size_t b = 0; b < 4; ++b) {
        if ((v >> b) & 1) {
          if (bit + b >= kMaxCores) return BadCoreSet(text, "core beyond " + std::to_string(kMaxCores - 1));
          set.Add(bit + b);
        }
      }
    }
  } else {
    while (!s.empty()) {
      size_t comma = s.find(',');
      std::string_view item = s.substr(0, comma);
      s = comma == std::string_view::npos ? std::string_view() : s.substr(comma + 1);
      size_t dash = item.find('-');
      size_t lo, hi;
      if (!ParseNumber(item.substr(0, dash), lo)) return BadCoreSet(text, "'" + std::string(item) + "' is not a core number");
      hi = lo;
      if (dash != std::string_view::npos && !ParseNumber(item.substr(dash + 1), hi))
        return BadCoreSet(text, "'" + std::string(item) + "' is not a range");
      if (hi < lo) return BadCoreSet(text, "range '" + std::string(item) + "' is reversed");
      if (hi >= kMaxCores) return BadCoreSet(text, "core beyond " + std::to_string(kMaxCores - 1));
      for (size_t c = lo; c <= hi; ++c) set.Add(c);
    }
  }
  if (set.Empty()) return BadCoreSet(text, "no cores selected");
  return set;
}

CoreSet CoreSet::CurrentAffinity() {
  CoreSet set;
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  if (pthread_getaffinity_np(pthread_self(), sizeof(cpus), &cpus) != 0) return set;
  for (size_t c = 0; c < kMaxCores && c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &cpus)) set.Add(c);
  return set;
}

size_t CoreSet::First() const {
  for (size_t c = 0; c < kMaxCores; ++c)
    if (bits_.test(c)) return c;
  return 0;
}

std::string CoreSet::ToMaskString() const {
  std::string hex;
  for (size_t nibble = 0; nibble < kMaxCores / 4; ++nibble) {
    int v = 0;
    for (size_t b = 0; b < 4; ++b) v |= bits_.test(nibble * 4 + b) ? (1 << b) : 0;
    hex.insert(hex.begin(), "0123456789abcdef"[v]);
  }
  size_t nz = hex.find_first_not_of('0');
  return "0x" + (nz == std::string::npos ? std::string("0") : hex.substr(nz));
}

std::string CoreSet::ToListString() const {
  std::string out;
  for (size_t c = 0; c < kMaxCores;) {
    if (!bits_.test(c)) { ++c; continue; }
    size_t end = c;
    while (end + 1 < kMaxCores && bits_.test(end + 1)) ++end;
    if (!out.empty()) out += ',';
    out += std::to_string(c);
    if (end > c) out += "-" + std::to_string(end);
    c = end + 1;
  }
  return out;
}

void CoreSet::ToWords(uint64_t (&words)[kMaxCores / 64]) const {
  for (size_t w = 0; w < kMaxCores / 64; ++w) {
    words[w] = 0;
    for (size_t b = 0; b < 64; ++b)
      if (bits_.test(w * 64 + b)) words[w] |= uint64_t{1} << b;
  }
}

CoreSet CoreSet::FromWords(const uint64_t (&words)[kMaxCores / 64]) {
  CoreSet set;
  for (size_t w = 0; w < kMaxCores / 64; ++w)
    for (size_t b = 0; b < 64; ++b)
      if ((words[w] >> b) & 1) set.Add(w * 64 + b);
  return set;
}

Status CoreSet::ApplyToThisThread() const {
  if (Empty()) return Fail(EINVAL, "cannot pin to an empty core set");
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  for (size_t c = 0; c < kMaxCores && c < CPU_SETSIZE; ++c)
    if (bits_.test(c)) CPU_SET(c, &cpus);
  int rc = pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
  if (rc != 0) return Fail(rc, "cannot pin thread to cores " + ToListString() + ": " + std::strerror(rc));
  return Ok();
}

}  // namespace nvmux::shm
