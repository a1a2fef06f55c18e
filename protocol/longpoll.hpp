// S0's long-poll fallback:
//   GET /api/v1/runs/{run_id}/events?wait=30[&cursor=<epoch>:<offset>]
//                                           [&limit=N]
//   Authorization: Bearer <token>
// answers a JSON array of events (S0's client: `const events = await
// response.json(); for (const event of events) … event.event_type ===
// 'completed' || event.event_type === 'failed'`). Pure: query parsing and
// encoding only.
//
// The run's room is `run:{run_id}` (publishers publish a run's events
// there; S0 puts the run id in each pipeline event's payload but the
// long-poll URL names only the run). Each element:
//   {"event_type":"completed","type":"pipeline.completed","run_id":…,
//    "timestamp":"…Z","payload":{…},"cursor":"<epoch>:<offset>"}
// `event_type` is S0's event type without its channel (`completed`,
// `task_failed`), which is what the client compares with.
//
// What the server does with a query:
//  - with `cursor`: the events after it (at most `limit`) at once when
//    there are any; otherwise wait up to `wait` seconds for the first live
//    one and answer with what arrived (`[]` on timeout). A cursor of
//    another epoch, or older than the kept history, is answered from the
//    oldest kept event (the client sees the gap as a jump in offsets).
//  - without `cursor` (S0's own client never sends one): the same from
//    the start of the kept history when the run has ended (so a client
//    that polls after the end still sees `completed`/`failed`); for a run
//    still going, only events that arrive during the wait, so a client
//    that polls in a loop without a cursor is not handed the same history
//    again and again.
//  - always sets the next cursor in the `X-Tidings-Cursor` header (the last
//    event's cursor, or the one it was given on an empty answer); clients
//    that want no gaps pass it back as `cursor`.
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

constexpr std::uint32_t max_longpoll_wait_seconds = 60;
constexpr std::uint32_t default_longpoll_limit = 100;
constexpr std::uint32_t max_longpoll_limit = 1000;
constexpr std::string_view longpoll_cursor_header = "X-Tidings-Cursor";

struct longpoll_query {
  /// 0 when absent (answer at once); a larger value is cut to
  /// max_longpoll_wait_seconds.
  std::uint32_t wait_seconds = 0;
  std::optional<stream_position> cursor;
  std::uint32_t limit = default_longpoll_limit; // 1..max_longpoll_limit
};

/// Reads `wait`, `cursor` and `limit` from a query string (without '?');
/// other parameters (e.g. `token`) are left alone. `invalid_query` for a
/// non-numeric or empty wait/limit, or a limit of 0; `invalid_cursor` for
/// a cursor that does not parse. The first occurrence of a name counts.
std::variant<longpoll_query, error_code>
parse_longpoll_query(std::string_view query);

/// `run:{run_id}`; nullopt when run_id is not a valid room id part.
std::optional<room_id> longpoll_run_room(std::string_view run_id);

/// S0's `event_type` of a publication: `type[.event]` without what comes
/// before its first dot (`pipeline.completed` → `completed`).
std::string longpoll_event_type(const publication& pub);

/// The JSON array for `events` (in order; may be empty: `[]`).
std::string encode_longpoll_events(const std::vector<publication>& events);

} // namespace tidings::protocol
