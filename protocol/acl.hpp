// Who may subscribe to what. Pure.
#pragma once

#include "protocol/claims.hpp"
#include "protocol/room_id.hpp"

#include <string_view>

namespace tidings::protocol {

/// The room kind that names one user's private room, `user:{sub}`.
constexpr std::string_view user_room_kind = "user";

/// True when `pattern` grants `room`: an exact room id, or `kind:*` for
/// every room of that kind. Nothing else is a pattern (no `*`, no prefixes).
bool pattern_grants(std::string_view pattern, const room_id& room);

/// Subscribe rule: admins may subscribe anywhere; `user:{id}` only when
/// id == sub (patterns never grant another user's room); any other room
/// when a `rooms` entry grants it.
bool may_subscribe(const claims& who, const room_id& room);

} // namespace tidings::protocol
