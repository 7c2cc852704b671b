// CoreSet: a set of CPU cores, parsed from SPDK-style masks ("0x3") or lists
// ("[0-3,6]", "0-3,6", "5"). Used for process core masks recorded in the
// process table and for pinning.
//
// Thread safety: value type.
#pragma once

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>

#include "shm/base/result.h"

namespace nvmux::shm {

class CoreSet {
 public:
  static constexpr size_t kMaxCores = 256;

  CoreSet() = default;
  // Parses a hex mask ("0x3", "3") or a list ("[0-3,6]", "0,2").
  // Errors: EINVAL naming the text and the accepted forms, or a core >= kMaxCores.
  static Result<CoreSet> Parse(std::string_view text);
  // The cores this thread may currently run on.
  static CoreSet CurrentAffinity();

  void Add(size_t core) { bits_.set(core); }
  bool Has(size_t core) const { return core < kMaxCores && bits_.test(core); }
  bool Empty() const { return bits_.none(); }
  size_t Count() const { return bits_.count(); }
  // Lowest core; REQUIRES: !Empty().
  size_t First() const;
  bool Overlaps(const CoreSet& other) const { return (bits_ & other.bits_).any(); }
  bool operator==(const CoreSet& other) const { return bits_ == other.bits_; }

  // "0x..." mask form, as SPDK prints it.
  std::string ToMaskString() const;
  // "0-3,6" list form, as EAL's -l takes it.
  std::string ToListString() const;

  // Packs into four 64-bit words (for shared-memory records) and back.
  void ToWords(uint64_t (&words)[kMaxCores / 64]) const;
  static CoreSet FromWords(const uint64_t (&words)[kMaxCores / 64]);

  // Pins the calling thread to these cores. Errors: EINVAL if empty or not allowed.
  Status ApplyToThisThread() const;

 private:
  std::bitset<kMaxCores> bits_;
};

}  // namespace nvmux::shm
