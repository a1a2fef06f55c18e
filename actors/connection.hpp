// One actor per client connection. It owns the connection's identity (the
// verified claims), its subscriptions and its limits; its session only moves
// bytes. Frames it sends itself (pong, errors, lists) go straight into the
// session's sink; events reach the sink from the rooms directly.
//
// Runs on the CAF scheduler. Protocol (from the session's handler):
//   (text_atom, std::string)  a client message, decoded here
//   (closed_atom)             the session ended: unsubscribe all, quit
// Timers it sets itself:
//   (auth_to_atom)            no valid auth in time: close 1008, quit
//   (heartbeat_atom)          sends a heartbeat frame, re-arms
#pragma once

#include "actors/clock.hpp"
#include "actors/node_state.hpp"
#include "protocol/claims.hpp"
#include "protocol/jwt.hpp"
#include "transport/seam.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

namespace tidings::actors {

struct connection_config {
  std::shared_ptr<const protocol::jwt_key> key;
  protocol::jwt_policy policy;
  std::chrono::milliseconds auth_timeout{10000};
  std::chrono::milliseconds heartbeat_interval{0}; // 0: no heartbeat frames
  std::size_t max_subscriptions = 100;
  double commands_per_second = 50; // sustained; bursts up to 2x
};

struct connection_args {
  std::uint64_t conn_id = 0;
  std::string connection_id; // printable, sent in the `connected` frame
  std::shared_ptr<transport::frame_sink> sink;
  std::optional<protocol::claims> claims; // set when the query had a token
};

caf::actor spawn_connection(caf::actor_system& sys, connection_args args,
                            caf::actor directory, node_state& node,
                            std::shared_ptr<const connection_config> cfg);

} // namespace tidings::actors
