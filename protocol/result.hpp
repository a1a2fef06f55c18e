// A value or an error, for the pure layers (protocol/, persistence/) that
// must not depend on CAF. Exceptions from libraries stop where these are made.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace tidings {

struct error_info {
  std::string code;    // stable, machine-readable (e.g. "INVALID_JSON")
  std::string message; // human-readable, never built from secrets
};

template <class T>
class result {
 public:
  result(T value) : v_(std::move(value)) {}
  result(error_info err) : v_(std::move(err)) {}

  explicit operator bool() const { return v_.index() == 0; }
  bool ok() const { return v_.index() == 0; }

  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const error_info& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, error_info> v_;
};

} // namespace tidings
