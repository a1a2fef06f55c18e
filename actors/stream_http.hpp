// Seed S0's HTTP fallbacks, served on the gateway's port: Server-Sent
// Events and long-polling. Called by the gateway on transport I/O threads;
// never blocks them (anything that needs an actor runs in one).
//
// Routes:
//   GET /api/v1/sse/{channel}/{id}   (and /api/v1/sse/{channel} for S0's
//       global channels) `?token=` or `Authorization: Bearer` (JWT, the
//       WebSocket subscribe ACL). The channel maps to a room as S0's
//       subscribe does (protocol/dialect_s0 s0_room); any other
//       `{kind}/{id}` names room `kind:id`. Answers a stream
//       (transport::stream_handler): `retry:` first, then every event as a
//       named SSE event with its cursor as `id:` (protocol/sse), preceded by
//       `current_state` for operation rooms, and `: heartbeat` comments
//       every `sse_heartbeat`. `Last-Event-ID` (or `?last_event_id=`)
//       resumes through the room's resume path (since → replay → live): no
//       gap, no duplicate; a position the room cannot replay from goes live
//       at the room's position, so the next id jumps.
//   GET /api/v1/runs/{run_id}/events?wait=&cursor=&limit=
//       `Authorization: Bearer` (or `?token=`), subscribe ACL on room
//       `run:{run_id}`. Answers a JSON array (protocol/longpoll) read from
//       history, at once when events exist after the cursor, else after the
//       first live event or `wait` seconds; the next cursor in
//       X-Tidings-Cursor. At most `max_longpoll_waiters` requests wait at a
//       time; beyond, 503.
//
// No CAF types in this header beyond forward declarations: runtime.hpp
// includes it for the config.
//
// Actors it spawns (one per stream or waiting request), each a subscriber
// of one room with its own conn_id (a range of its own, apart from the
// gateway's WebSocket connections):
//   sse stream:  (closed_atom) the client went away: unsubscribe, quit;
//                (heartbeat_atom) self-sent: a comment, re-armed.
//   long-poll:   self-sent wake-ups when the room commits an event and a
//                timer for `wait`; answers once, unsubscribes, quits.
#pragma once

#include "actors/connection.hpp"
#include "actors/node_state.hpp"
#include "transport/seam.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace tidings::actors {

struct stream_http_config {
  /// Comment frames on a quiet SSE stream (keeps proxies and the transport's
  /// write check busy); 0 disables them.
  std::chrono::milliseconds sse_heartbeat{15000};
  /// The `retry:` hint sent first: how long a browser waits to reconnect.
  std::uint32_t sse_retry_ms = 3000;
  /// Long-poll requests waiting at once on this node; beyond: 503.
  std::size_t max_longpoll_waiters = 1000;
};

/// Thread-safe: `handle` runs on any transport I/O thread.
class stream_http {
 public:
  stream_http(caf::actor_system& sys, caf::actor directory, caf::actor writer,
              node_state& node, std::shared_ptr<const connection_config> conn,
              stream_http_config cfg);
  ~stream_http();
  stream_http(const stream_http&) = delete;
  stream_http& operator=(const stream_http&) = delete;

  /// Serves `req` when `path` is one of the routes above (and returns
  /// true); leaves `respond` alone otherwise.
  bool handle(const transport::http_request& req, std::string_view path,
              std::string_view query, transport::http_responder& respond);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace tidings::actors
