// Seed S0's face on `/api/v1/ws`: its frames translated to and from the
// native commands (native.hpp). Pure: decoding never throws, callers pass
// the time in. SSE and long-poll for S0 live in sse.hpp and longpoll.hpp.
//
// Client → server (one JSON object per message, `type` selects):
//   {"type":"subscribe","channel":C,"<C>_id":ID}   → cmd_subscribe{C:ID}
//   {"type":"unsubscribe","channel":C,"<C>_id":ID} → cmd_unsubscribe{C:ID}
//   {"type":"list_subscriptions"}  → cmd_list_subscriptions
//                                    (answer: encode_s0_subscriptions)
//   {"type":"ping"}                → cmd_ping (answer: encode_s0_pong)
//   {"type":"pong"}                → cmd_pong (a heartbeat's answer; none)
//   {"type":"auth","token":T}      → cmd_auth (S0's "initial message")
// Channels and rooms: pipeline, connector and project need `<C>_id` (a
// string) and map to room `<C>:<id>`. system and discovery are global: S0
// subscribes with no id (`{type:'subscribe', channel:'system'}`; its
// reconnecting client even sends `system_id: null`), so an absent or null
// id maps to `system:all` / `discovery:all`; a string id scopes the channel
// (`system:<id>`). Events of `<C>:all` carry no `<C>_id`, as S0's
// system.alert and connector.discovered examples show.
//
// Server → client: encode_s0_* below. S0 documents no subscribe
// confirmation, so none is sent; a failed (un)subscribe gets an error
// frame with `error_code` SUBSCRIPTION_FAILED.
//
// Telling S0 from native on the same endpoint: `classify_ws_message`. A
// connection starts undecided; the first subscribe/unsubscribe decides
// for good (`channel` → S0, `room_id` → native). Until then frames are
// decoded and answered the native way (ping, pong, auth and
// list_subscriptions mean the same in both).
#pragma once

#include "protocol/errors.hpp"
#include "protocol/native.hpp"
#include "protocol/publication.hpp"
#include "protocol/result.hpp"
#include "protocol/room_id.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tidings::protocol {

enum class ws_dialect : std::uint8_t { undecided, native, s0 };

/// Which dialect a client message on `/api/v1/ws` speaks: a subscribe or
/// unsubscribe with a `channel` key is S0, one with `room_id` is native;
/// anything else (other types, invalid JSON, both or neither key) is
/// `undecided` and leaves the connection's dialect as it is.
ws_dialect classify_ws_message(std::string_view text);

/// The id of the room a global channel maps to when no id is given.
constexpr std::string_view s0_global_id = "all";

/// pipeline, connector, project, system, discovery.
bool s0_channel(std::string_view channel);
/// system and discovery: channels whose id may be omitted.
bool s0_global_channel(std::string_view channel);

/// The room for an S0 subscription; `id` empty means "no id given".
/// Nullopt for an unknown channel, a missing id on a channel that needs
/// one, or an id that is not a valid room id part.
std::optional<room_id> s0_room(std::string_view channel, std::string_view id);

/// Why an S0 message could not be decoded; `channel`/`id` echo what was
/// sent (when short enough) for the error frame's `details`.
struct s0_decode_error {
  error_code code;
  std::string channel;
  std::string id;
};

using s0_decoded = std::variant<command, s0_decode_error>;

s0_decoded decode_s0(std::string_view text);

/// S0's event type for a publication: `type[.event]` when that already has
/// a dot (`pipeline.progress`, or `connector.discovered` on channel
/// discovery), else `<room kind>.<type[.event]>` (type `progress` in room
/// `pipeline:x` → `pipeline.progress`).
std::string s0_event_type(const publication& pub);

/// {"type":<s0_event_type>,"timestamp":"…Z","channel":<kind>,
///  "<kind>_id":<id>,"payload":<data>}; `<kind>_id` is left out for
/// `system:all` and `discovery:all`. The timestamp has whole seconds, like
/// S0's examples.
std::string encode_s0_event(const publication& pub);

/// {"type":"subscriptions","payload":{"subscriptions":[{"channel":…,
///  "<channel>_id":…},…]}} (no `system_id`/`discovery_id` for the
/// global rooms). S0's example has no timestamp, so none is sent.
std::string encode_s0_subscriptions(const std::vector<room_id>& rooms);

/// {"type":"heartbeat","timestamp":"…Z","server_time":"….mmmZ",
///  "active_connections":N}
std::string encode_s0_heartbeat(std::int64_t now_ms,
                                std::uint64_t active_connections);

/// {"type":"pong","timestamp":"…Z"}
std::string encode_s0_pong(std::int64_t now_ms);

/// The `error_code` S0 clients see for a failure `cause`: UNAUTHORIZED for
/// unauthorized / not_authenticated / invalid_credentials / auth_required,
/// CONNECTION_FAILED for unavailable / internal / connection_failed,
/// SUBSCRIPTION_FAILED for anything about a channel (`about_channel`),
/// else the cause itself (INVALID_JSON, RATE_LIMITED, …).
error_code s0_error_category(error_code cause, bool about_channel);

/// {"type":"error","error_code":<category>,"message":<cause's fixed text>,
///  "details"?:{"<channel>_id":<id>} or {"channel":<channel>},
///  "timestamp":"…Z"}; details only when a channel is given.
std::string encode_s0_error(error_code cause, std::string_view channel,
                            std::string_view id, std::int64_t now_ms);
std::string encode_s0_error(const s0_decode_error& err, std::int64_t now_ms);
/// For a failure the server reports about a room (e.g. access denied).
std::string encode_s0_room_error(error_code cause, const room_id& room,
                                 std::int64_t now_ms);

// -- plan limits -----------------------------------------------------------

/// S0's "Rate Limits" table: per plan, concurrent connections (per user,
/// counted on this node) and client messages per second (per connection).
struct plan_limit {
  std::string plan; // lower-case
  std::uint32_t max_connections = 0;
  std::uint32_t messages_per_second = 0;
};

/// A plain value: built once from configuration, then read from any
/// thread.
class plan_limits {
 public:
  /// free=5/10, pro=50/100, enterprise=500/1000 (S0's table).
  static plan_limits defaults();

  /// The limits for a token's `plan` claim, matched without regard to
  /// letter case. Nullopt for an empty claim (the node's own limits
  /// apply); an unknown plan gets the first entry (the most restrictive
  /// one, `free` by default), so a typo never lifts limits.
  std::optional<plan_limit> for_plan(std::string_view plan) const;

  const std::vector<plan_limit>& entries() const { return entries_; }

  /// The config string form, `free=5/10,pro=50/100,enterprise=500/1000`.
  std::string str() const;

  friend result<plan_limits> parse_plan_limits(std::string_view config);

 private:
  std::vector<plan_limit> entries_;
};

/// Parses `name=connections/messages_per_second,…`: names 1..32 of
/// [a-z0-9_-] (upper case is folded), unique, at most 16 entries, numbers
/// 1..1000000, spaces around items allowed. Error code "CONFIG".
result<plan_limits> parse_plan_limits(std::string_view config);

} // namespace tidings::protocol
