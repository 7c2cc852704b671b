// Result<T> and Status: the error-return types of nvmux's public API and of
// every layer below the tools. Public and self-contained (standard headers
// only): applications include it through the other nvmux/ headers.
//
// A failed call carries an errno-valued code and a message naming the bad
// value and what is allowed. Fixed meanings across nvmux: EAGAIN queue or pool
// full, ENXIO controller or qpair failed, ETIMEDOUT, EINVAL, ENODEV, EPROTO
// transport error, EOWNERDEAD a process died holding a shared lock.
// GCC 12 has no std::expected in C++20; this keeps the same member names so
// the switch is mechanical later.
//
// Thread safety: values; no shared state.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace nvmux {

struct Error {
  int code = 0;         // positive errno value
  std::string message;  // names the bad value and what is allowed

  std::string ToString() const {
    return message + " (" + std::strerror(code) + ")";
  }
};

// Builds an Error; the usual way to fail: `return Fail(EINVAL, "...")`.
inline Error Fail(int code, std::string message) {
  return Error{code, std::move(message)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  // REQUIRES: has_value().
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // REQUIRES: !has_value().
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status Ok() { return Status(); }

// Error from the current errno, prefixed with what was being done.
inline Error ErrnoError(const std::string& what) {
  int code = errno;
  return Error{code, what + ": " + std::strerror(code)};
}

}  // namespace nvmux

// Propagates a failed Status/Result from an expression returning one.
#define NVMUX_TRY(expr)                               \
  do {                                                \
    auto nvmux_try_status_ = (expr);                  \
    if (!nvmux_try_status_) return nvmux_try_status_.error(); \
  } while (0)
