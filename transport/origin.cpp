#include "transport/origin.hpp"

#include <algorithm>
#include <cstddef>

namespace tidings::transport {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  auto lower = [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  };
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(),
                    [&](char x, char y) { return lower(x) == lower(y); });
}

// "scheme://host[:port]" -> "host[:port]"; empty when there is no scheme
// (e.g. the opaque origin "null").
std::string_view origin_authority(std::string_view origin) {
  auto sep = origin.find("://");
  if (sep == std::string_view::npos || sep == 0)
    return {};
  auto rest = origin.substr(sep + 3);
  return rest.substr(0, rest.find('/'));
}

} // namespace

bool origin_allowed(const std::vector<std::string>& allowed,
                    std::string_view origin, std::string_view host) {
  if (allowed.empty()) {
    auto authority = origin_authority(origin);
    return !authority.empty() && iequals(authority, host);
  }
  return std::any_of(allowed.begin(), allowed.end(), [&](const std::string& a) {
    return a == "*" || a == origin;
  });
}

} // namespace tidings::transport
