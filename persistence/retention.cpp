#include "persistence/retention.hpp"

#include "protocol/text.hpp"

namespace tidings::persistence {

namespace {

bool parse_uint(std::string_view s, std::uint64_t& out) {
  if (s.empty() || s.size() > 18)
    return false;
  out = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return false;
    out = out * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return true;
}

bool parse_age(std::string_view s, std::int64_t& out) {
  std::int64_t unit = 1;
  if (!s.empty()) {
    switch (s.back()) {
    case 's':
      unit = 1;
      s.remove_suffix(1);
      break;
    case 'm':
      unit = 60;
      s.remove_suffix(1);
      break;
    case 'h':
      unit = 3600;
      s.remove_suffix(1);
      break;
    case 'd':
      unit = 86400;
      s.remove_suffix(1);
      break;
    default:
      break;
    }
  }
  std::uint64_t n = 0;
  if (!parse_uint(s, n) || n > 100ULL * 365 * 86400)
    return false;
  out = static_cast<std::int64_t>(n) * unit;
  return true;
}

error_info bad(std::string why) {
  return error_info{"CONFIG", "--retention: " + why};
}

result<retention_policy> parse_policy(std::string_view text) {
  retention_policy p;
  while (!text.empty()) {
    auto comma = text.find(',');
    auto item = protocol::trim_space(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view{}
                                           : text.substr(comma + 1);
    auto eq = item.find('=');
    if (eq == std::string_view::npos)
      return bad("expected key=value, got '" + std::string{item} + "'");
    auto key = protocol::trim_space(item.substr(0, eq));
    auto val = protocol::trim_space(item.substr(eq + 1));
    if (key == "events") {
      if (!parse_uint(val, p.max_events))
        return bad("events must be a whole number");
    } else if (key == "age") {
      if (!parse_age(val, p.max_age_seconds))
        return bad("age must be seconds or a number with s/m/h/d");
    } else {
      return bad("unknown key '" + std::string{key} + "'");
    }
  }
  return p;
}

} // namespace

const retention_policy& retention_rules::for_room(std::string_view room) const {
  auto colon = room.find(':');
  if (colon != std::string_view::npos) {
    auto i = by_kind.find(std::string{room.substr(0, colon)});
    if (i != by_kind.end())
      return i->second;
  }
  return fallback;
}

result<retention_rules> parse_retention(std::string_view text) {
  retention_rules rules;
  bool first = true;
  while (!text.empty() || first) {
    auto semi = text.find(';');
    auto part = protocol::trim_space(text.substr(0, semi));
    text = semi == std::string_view::npos ? std::string_view{}
                                          : text.substr(semi + 1);
    auto colon = part.find(':');
    auto eq = part.find('=');
    if (colon != std::string_view::npos &&
        (eq == std::string_view::npos || colon < eq)) {
      auto kind = std::string{protocol::trim_space(part.substr(0, colon))};
      if (kind.empty())
        return bad("empty room kind");
      auto p = parse_policy(part.substr(colon + 1));
      if (!p)
        return p.error();
      rules.by_kind[kind] = *p;
    } else if (!part.empty()) {
      if (!first)
        return bad("the default policy must come first");
      auto p = parse_policy(part);
      if (!p)
        return p.error();
      rules.fallback = *p;
    }
    first = false;
  }
  return rules;
}

} // namespace tidings::persistence
