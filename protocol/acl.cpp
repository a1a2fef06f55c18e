#include "protocol/acl.hpp"

namespace tidings::protocol {

bool pattern_grants(std::string_view pattern, const room_id& room) {
  if (pattern.size() >= 2 && pattern.substr(pattern.size() - 2) == ":*")
    return pattern.substr(0, pattern.size() - 2) == room.kind();
  return pattern == room.str();
}

bool may_subscribe(const claims& who, const room_id& room) {
  if (who.admin)
    return true;
  if (room.kind() == user_room_kind)
    return !who.sub.empty() && room.id() == who.sub;
  for (const auto& p : who.rooms)
    if (pattern_grants(p, room))
      return true;
  return false;
}

} // namespace tidings::protocol
