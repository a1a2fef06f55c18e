// One connection of seed S2's listener (its own port, bare `ws://host:port`):
// first-message auth, typed subscriptions with filters, `data` frames per
// subscription id. The codec is protocol/dialect_s2; this actor applies
// S2's rules (see that header's "The server, per connection").
//
// Runs on the CAF scheduler. Protocol (from the session's handler):
//   (text_atom, std::string)  a client message
//   (closed_atom)             the session ended: unsubscribe all, quit
// Timers it sets itself:
//   (auth_to_atom)            require_auth and no successful auth in time:
//                             close 1008 `auth_timeout`
//
// Rooms: S2 stream S is room `stream:S`. The connection subscribes to a room
// once, however many S2 subscriptions share it, with a sink of its own
// (s2_stream_sink in the .cpp) that the room calls with the publication's
// S2 payload (dialect s2, encoded once per room); that sink matches each
// subscription's filter and wraps the payload in one `data` frame per
// matching subscription. A subscription is added to the sink only after its
// confirmation is queued, and removed before the unsubscribe answer, so no
// data frame precedes its confirmation or follows its removal.
#pragma once

#include "actors/node_state.hpp"
#include "protocol/jwt.hpp"
#include "transport/seam.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace tidings::actors {

/// S2's per-connection rules (transport settings live in server_options).
struct s2_config {
  /// The first message must be a successful `auth`; off: anonymous clients
  /// may subscribe to every `stream:` room.
  bool require_auth = true;
  std::chrono::milliseconds auth_timeout{30000};
  /// Client messages per minute (sliding window); 0: no limit.
  std::uint32_t rate_limit_per_minute = 60;
  /// Streams (subscription types) one connection may subscribe to at once
  /// is bounded by the six types; subscriptions per connection by this.
  std::size_t max_subscriptions = 100;
};

struct s2_connection_args {
  std::uint64_t conn_id = 0;
  std::string client_id; // sent in auth_success
  std::shared_ptr<transport::frame_sink> sink;
  std::shared_ptr<const protocol::jwt_key> key;
  protocol::jwt_policy policy;
  /// The publish API key: also accepted as an S2 token (a trusted backend;
  /// every stream). Empty: JWTs only.
  std::string api_key;
  s2_config cfg;
};

caf::actor spawn_s2_connection(caf::actor_system& sys, s2_connection_args args,
                               caf::actor directory, node_state& node);

} // namespace tidings::actors
