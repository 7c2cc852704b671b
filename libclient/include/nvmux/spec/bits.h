// Bit-field helpers for NVMe register and command dwords.
//
// NVMe registers are described by the spec as bit ranges of a 32- or 64-bit
// value. C++ bit-fields would give the spec's spelling for free but their
// layout is implementation-defined and -Wconversion flags every assignment,
// so register wrappers in this folder hold the raw value and expose one
// getter and one setter per field, named as in the spec (cap.mqes()).
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <type_traits>

namespace nvmux::spec {

// Returns bits [lo, lo + width) of raw, shifted down to bit 0.
template <typename T>
constexpr T GetBits(T raw, unsigned lo, unsigned width) {
  static_assert(std::is_unsigned_v<T>);
  const T mask = width >= sizeof(T) * 8 ? static_cast<T>(~T{0}) : static_cast<T>((T{1} << width) - 1);
  return static_cast<T>((raw >> lo) & mask);
}

// Returns raw with bits [lo, lo + width) replaced by the low bits of value.
template <typename T>
constexpr T SetBits(T raw, unsigned lo, unsigned width, T value) {
  static_assert(std::is_unsigned_v<T>);
  const T mask = width >= sizeof(T) * 8 ? static_cast<T>(~T{0}) : static_cast<T>((T{1} << width) - 1);
  return static_cast<T>((raw & static_cast<T>(~(mask << lo))) | static_cast<T>((value & mask) << lo));
}

}  // namespace nvmux::spec

// Declares a getter `name()` and a chaining setter `set_name(v)` for the
// field at bits [lo, lo + width) of the member `raw`.
#define NVMUX_SPEC_FIELD(type, name, lo, width)                                  \
  constexpr type name() const {                                                  \
    return static_cast<type>(::nvmux::spec::GetBits(raw, lo, width));            \
  }                                                                              \
  constexpr auto& set_##name(type v) {                                           \
    raw = ::nvmux::spec::SetBits(raw, lo, width, static_cast<decltype(raw)>(v)); \
    return *this;                                                                \
  }
