// Small text helpers shared by the parsers of configuration strings and
// headers. Pure and allocation-free.
#pragma once

#include <cctype>
#include <string_view>

namespace tidings::protocol {

/// `s` without leading and trailing white space (std::isspace).
inline std::string_view trim_space(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return s;
}

/// `s` without HTTP's optional white space (SP and HTAB, RFC 9110 5.6.3)
/// around a header value.
inline std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

} // namespace tidings::protocol
