// Request-target helpers. Pure.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tidings::protocol {

struct target_parts {
  std::string_view path;
  std::string_view query; // without '?'
};

target_parts split_target(std::string_view target);

/// Percent-decodes (and '+' → ' '); nullopt on a malformed escape.
std::optional<std::string> percent_decode(std::string_view in);

/// The decoded value of the first `name=` in `query`.
std::optional<std::string> query_param(std::string_view query,
                                       std::string_view name);

/// The token of an `Authorization: Bearer <token>` header value.
std::optional<std::string_view> bearer_token(std::string_view header);

} // namespace tidings::protocol
