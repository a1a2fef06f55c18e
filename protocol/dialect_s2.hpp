// Seed S2's face (the streaming-analytics WebSocket server, its own
// listener and port): first-message auth, typed subscriptions with
// filters, `data` frames by `subscription_id`. Pure: decoding never
// throws, callers pass the time and the ids in.
//
// Client → server (`{"type",…,"data":{…}}`):
//   {"type":"auth","data":{"token":T}}      → s2_auth
//       answer: encode_s2_auth_success / encode_s2_auth_failed
//   {"type":"subscribe","data":{"type":S,"filters":{…}}} → s2_subscribe
//       answer: encode_s2_subscribed (a `data` frame, as S2's server sends)
//   {"type":"unsubscribe","data":{"subscription_id":I}} → s2_unsubscribe
//       answer: encode_s2_unsubscribed, or error SUBSCRIPTION_NOT_FOUND
//   {"type":"ping"} → s2_ping (answer encode_s2_pong); {"type":"pong"} →
//       s2_pong (answer to the server's own ping; nothing sent)
// Errors: encode_s2_error, `{"type":"error","data":{"error":<fixed text>,
// "error_code":…}}`; S2's own words where it has them ("Rate limit
// exceeded", "Unknown message type", "Authentication required",
// "Subscription not found", "Invalid credentials").
//
// The server, per connection (S2 semantics):
//  - require_auth: the first message must be `auth` within
//    auth_timeout_seconds; anything else → auth_failed ("Authentication
//    required") then close 1008 `auth_failed`; a bad token →
//    auth_failed ("Invalid credentials") then close 1008 `auth_failed`;
//    timeout → close 1008 `auth_timeout`. Later `auth` messages
//    re-authenticate (answer auth_success / auth_failed, no close).
//  - rate_limit_per_minute client messages per minute (sliding); beyond it
//    each message is answered with error RATE_LIMITED and dropped.
//  - max_connections reached → close 1013 `too_many_connections`; origin
//    not allowed → close 1008 `origin_not_allowed`.
//
// Events. An S2 subscription type is a stream; stream S is the room
// `stream:S` (s2_room), so publishers publish into `stream:events`,
// `stream:metrics`, … and ACL `rooms` grant them like any room. The
// connection subscribes to the room once however many S2 subscriptions
// share it, and for each publication sends one `data` frame per
// subscription of that stream whose filter matches s2_event_object(pub):
//  - for `events`, the event object is the publication's data object with
//    `event_type` (the publication's type[.event]), `event_id`
//    (publish_id, else `<epoch>:<offset>`) and `timestamp` filled in when
//    the publisher left them out; a non-object payload becomes
//    {"event_type",…,"payload":<data>};
//  - for the other streams it is the data as published.
// Filters apply to every stream (S2's server ignores them for non-event
// streams; applying them is the superset clients asked for).
#pragma once

#include "protocol/errors.hpp"
#include "protocol/publication.hpp"
#include "protocol/result.hpp"
#include "protocol/room_id.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace tidings::protocol {

enum class s2_stream : std::uint8_t {
  events,
  metrics,
  alerts,
  predictions,
  aggregations,
  system_status,
};

std::string_view s2_stream_name(s2_stream s);
std::optional<s2_stream> parse_s2_stream(std::string_view name);

/// The room kind of S2 streams.
constexpr std::string_view s2_room_kind = "stream";
/// `stream:<name>`.
room_id s2_room(s2_stream s);
/// The stream a room carries, when it is one.
std::optional<s2_stream> s2_stream_of(const room_id& room);

// -- filters ---------------------------------------------------------------

/// JSON values in S2 keep their keys' order (events are sent as
/// published).
using s2_json = nlohmann::ordered_json;

/// Bounds of one subscription's filters.
constexpr std::size_t max_s2_filter_keys = 32;
constexpr std::size_t max_s2_filter_path_size = 256;
constexpr std::size_t max_s2_filter_path_segments = 16;
constexpr std::size_t max_s2_filter_values = 64;  // per array
constexpr std::size_t max_s2_filters_size = 8192; // bytes, as JSON text
constexpr std::size_t max_s2_event_depth = 64;

/// A compiled `filters` object: every key is a dot path into the event
/// (`payload.user_id`), every value must equal the event's value there,
/// an array value means "any of its elements" (S2: "Dot notation
/// supported", "Array values for multiple matches", "Exact matches
/// only"). A missing path, or one that runs through a non-object, does not
/// match. Equality is JSON equality: 1 == 1.0, "1" != 1, true != 1, and
/// objects compare by content, in any key order. No filters match every
/// event. Immutable once compiled: one connection owns it, and `matches`
/// may run on any thread.
class s2_filter {
 public:
  bool matches(const s2_json& event) const;
  bool empty() const { return clauses_.empty(); }
  std::size_t size() const { return clauses_.size(); }

  friend std::variant<s2_filter, error_code>
  compile_s2_filter(const s2_json& filters);

 private:
  struct clause {
    std::vector<std::string> path;
    std::vector<s2_json> any_of;
  };
  std::vector<clause> clauses_;
};

/// `invalid_filter` when `filters` is not an object (null counts as none),
/// or exceeds a bound above. An empty array matches nothing.
std::variant<s2_filter, error_code> compile_s2_filter(const s2_json& filters);

// -- client messages -------------------------------------------------------

struct s2_auth {
  std::string token;
};
struct s2_subscribe {
  s2_stream stream = s2_stream::events; // S2's server defaults to events
  s2_filter filter;
};
struct s2_unsubscribe {
  std::string subscription_id;
};
struct s2_ping {};
struct s2_pong {};

using s2_command =
    std::variant<s2_auth, s2_subscribe, s2_unsubscribe, s2_ping, s2_pong>;
using s2_decoded = std::variant<s2_command, error_code>;

/// Longest subscription id accepted in an unsubscribe, in bytes.
constexpr std::size_t max_s2_subscription_id_size = 128;

/// Errors: invalid_json (also too deep), payload_too_large,
/// invalid_message (not an object / no string `type` / `data` not an
/// object), unknown_type, invalid_credentials (auth without a token),
/// invalid_channel (unknown subscription type), invalid_filter,
/// missing_field (unsubscribe without a subscription_id).
s2_decoded decode_s2(std::string_view text);

// -- server frames ---------------------------------------------------------
// Every frame ends with "timestamp" (S2's message format lists it; its
// examples leave it out).

/// {"type":"auth_success","data":{"client_id":…}}
std::string encode_s2_auth_success(std::string_view client_id,
                                   std::int64_t now_ms);
/// {"type":"auth_failed","data":{"error":…}}: invalid_credentials →
/// "Invalid credentials", auth_required → "Authentication required".
std::string encode_s2_auth_failed(error_code why, std::int64_t now_ms);
/// {"type":"data","data":{"status":"subscribed","subscription_id":I,
///  "type":S},"subscription_id":I}
std::string encode_s2_subscribed(std::string_view subscription_id,
                                 s2_stream stream, std::int64_t now_ms);
/// {"type":"data","data":{"status":"unsubscribed","subscription_id":I}}
std::string encode_s2_unsubscribed(std::string_view subscription_id,
                                   std::int64_t now_ms);

/// The event object filters are evaluated against (see above). Never
/// throws; a payload that does not parse counts as null.
s2_json s2_event_object(const publication& pub, s2_stream stream);

/// The `data` member of the frames for one publication, encoded once and
/// shared by every matching subscription:
/// {"event":<event>,"subscription_type":"events"}, {"metrics":…},
/// {"alert":…}, {"prediction":…}, {"aggregation":…}, {"status":…}.
std::string encode_s2_payload(const s2_json& event, s2_stream stream);

/// {"type":"data","data":<payload>,"subscription_id":I}
std::string encode_s2_data(std::string_view subscription_id,
                           std::string_view payload, std::int64_t now_ms);

/// {"type":"error","data":{"error":<fixed text>,"error_code":<name>}}
std::string encode_s2_error(error_code code, std::int64_t now_ms);

/// {"type":"ping"} (the server's keepalive, every ping_interval) and
/// {"type":"pong"}.
std::string encode_s2_ping(std::int64_t now_ms);
std::string encode_s2_pong(std::int64_t now_ms);

// -- configuration ---------------------------------------------------------

/// S2's environment variables (`STREAMING_WEBSOCKET__<FIELD>`, any letter
/// case) map to these `tidings serve` options:
///   HOST                  → s2-host                (listen address)
///   PORT                  → s2-port                (0..65535)
///   MAX_CONNECTIONS       → s2-max-connections
///   PING_INTERVAL         → s2-ping-interval       (seconds)
///   PING_TIMEOUT          → s2-ping-timeout        (seconds)
///   CLOSE_TIMEOUT         → s2-close-timeout       (seconds)
///   MAX_MESSAGE_SIZE      → s2-max-message-size    (bytes)
///   REQUIRE_AUTH          → s2-require-auth        (true/false)
///   AUTH_TIMEOUT_SECONDS  → s2-auth-timeout        (seconds)
///   ALLOWED_ORIGINS       → s2-allowed-origins     (comma list; "*" = any)
///   RATE_LIMIT_PER_MINUTE → s2-rate-limit-per-minute (0 = off)
///   ENABLE_RATE_LIMITING  → s2-rate-limit-per-minute=0 when false (wins
///                           over RATE_LIMIT_PER_MINUTE)
///   COMPRESSION           → ignored (permessage-deflate stays off)
/// Booleans take pydantic's words (true/false, 1/0, yes/no, on/off, t/f,
/// y/n); ALLOWED_ORIGINS takes a JSON array (pydantic-settings' form) or a
/// comma list. Variables without the prefix are skipped.
struct s2_env_mapping {
  std::vector<std::pair<std::string, std::string>> options;
  std::vector<std::string> ignored; // S2 variables with no Tidings meaning
};

/// Error code "CONFIG", naming the variable (never its value), for a value
/// of the wrong form or a field set twice; unknown fields are listed in
/// `ignored` (pydantic-settings ignores them too).
result<s2_env_mapping>
map_s2_env(const std::vector<std::pair<std::string, std::string>>& env);

} // namespace tidings::protocol
