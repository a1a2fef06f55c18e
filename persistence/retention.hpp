// How much history each room keeps, by room kind. Pure.
//
// Text form (flag --retention, env TIDINGS_RETENTION):
//   "events=N[,age=D]" for the default, then ";kind:events=N,age=D" per
//   kind, e.g. "events=10000,age=7d;execution:events=1000;audit:age=90d".
//   N = 0 keeps every event; D is seconds or a number with s/m/h/d.
#pragma once

#include "protocol/result.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace tidings::persistence {

struct retention_policy {
  std::uint64_t max_events = 0;     // 0: no count bound
  std::int64_t max_age_seconds = 0; // 0: no age bound
  bool bounded() const { return max_events > 0 || max_age_seconds > 0; }
};

struct retention_rules {
  retention_policy fallback;
  std::map<std::string, retention_policy> by_kind;

  /// The policy for a room id `kind:id`.
  const retention_policy& for_room(std::string_view room) const;
};

result<retention_rules> parse_retention(std::string_view text);

} // namespace tidings::persistence
