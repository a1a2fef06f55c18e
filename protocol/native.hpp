// The native WebSocket dialect (`/api/v1/ws`), a superset of seed S1's.
// Pure: decoding never throws and callers pass the time in.
//
// Client → server (one JSON object per message, `type` selects):
//   {"type":"command","room_id":…,"command":…,"args"?:{…}} → command_result
//   {"type":"auth","token":…}
//   {"type":"subscribe","room_id":…,"since"?:{"epoch":…,"offset":…}}
//   {"type":"unsubscribe","room_id":…}
//   {"type":"ping"}            → pong
//   {"type":"pong"}            accepted and ignored (heartbeat answers)
//   {"type":"list_subscriptions"} → subscriptions
// Server → client: see the encode_* functions below.
#pragma once

#include "protocol/errors.hpp"
#include "protocol/publication.hpp"
#include "protocol/room_id.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tidings::protocol {

struct cmd_auth {
  std::string token;
};
struct cmd_subscribe {
  room_id room;
  std::optional<stream_position> since;
};
struct cmd_unsubscribe {
  room_id room;
};
struct cmd_ping {};
struct cmd_pong {};
struct cmd_list_subscriptions {};
struct cmd_command {
  room_id room;
  std::string name; // [A-Za-z0-9_.:-]{1,64}
  std::string args; // compact JSON object, "{}" when absent
};

using command = std::variant<cmd_auth, cmd_subscribe, cmd_unsubscribe, cmd_ping,
                             cmd_pong, cmd_list_subscriptions, cmd_command>;

/// Why a message could not be decoded; `room` echoes a room id that was
/// present (even if invalid) so the error frame can name it.
struct decode_error {
  error_code code;
  std::string room;
};

using decoded = std::variant<command, decode_error>;

/// Longest accepted auth token, in bytes.
constexpr std::size_t max_token_size = 8192;

decoded decode_native(std::string_view text);

// -- server → client frames ---------------------------------------------

/// {"type":"connection","event":"connected","connection_id",…,"timestamp"}
std::string encode_connected(std::string_view connection_id,
                             std::int64_t now_ms);

/// {"type":"subscription","event":"subscribed"|"unsubscribed","room_id",
///  "epoch","offset","recovered"?,"timestamp"}; epoch/offset are the room's
/// position; `recovered` answers a subscribe that carried `since`: true when
/// every event after the cursor follows, false when the gap could not be
/// filled (the client continues from `offset`).
std::string encode_subscription(bool subscribed, const room_id& room,
                                const stream_position& pos, std::int64_t now_ms,
                                std::optional<bool> recovered = {});

/// {"type":"pong","timestamp"}
std::string encode_pong(std::int64_t now_ms);

/// {"type":"subscriptions","rooms":[…],"timestamp"}
std::string encode_subscriptions(const std::vector<std::string>& rooms,
                                 std::int64_t now_ms);

/// {"type":"command_result","room_id","command","offset","timestamp"}:
/// the command's event was committed at `offset` (0: nothing published).
std::string encode_command_result(const room_id& room, std::string_view name,
                                  std::uint64_t offset, std::int64_t now_ms);

/// {"type":"heartbeat","server_time","timestamp"}
std::string encode_heartbeat(std::int64_t now_ms);

/// {"type":"error","error_code","message","room_id"?,"timestamp"}; the
/// message is the table's fixed text for `code`.
std::string encode_error(error_code code, std::string_view room,
                         std::int64_t now_ms);

/// {"type",<"event">,"room_id","offset","epoch","timestamp","data"}; `data`
/// is spliced in as the JSON text it already is.
std::string encode_event(const publication& pub);

/// Appends `s` as a JSON string literal (quotes included) to `out`.
void append_json_string(std::string& out, std::string_view s);

} // namespace tidings::protocol
