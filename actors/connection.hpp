// One actor per client connection. It owns the connection's identity (the
// verified claims), its dialect, its subscriptions and its limits; its
// session only moves bytes. Frames it sends itself (pong, errors, lists) go
// straight into the session's sink; events reach the sink from the rooms
// directly, encoded by the room for the connection's dialect.
//
// Two kinds of sockets:
//  - `/api/v1/ws` (`socket_kind::ws`): native and seed S0 on one endpoint.
//    The dialect starts undecided and is fixed by the first message that
//    protocol::classify_ws_message decides (a subscribe/unsubscribe with
//    `channel` → S0, with `room_id` → native); until then the connection
//    answers the native way. When S0 is chosen, rooms already joined (the
//    auto-joined `user:{sub}`) are re-joined with S0 encoding.
//    A token with a `plan` claim gets that plan's limits
//    (protocol::plan_limits): connections of the user on this node (over:
//    S0 error CONNECTION_FAILED, then close 1013) and messages per second.
//  - `/ws/operations/{id}` (`socket_kind::s3_operation`, seed S3): the
//    token came in the query; the actor looks the operation up, checks
//    access (owner or the room ACL) and the per-user/per-operation limits
//    (close 1008 with the fixed reasons), then joins the operation's room
//    with S3 encoding: current_state first, then events.
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
#include "protocol/dialect_s0.hpp"
#include "protocol/dialect_s3.hpp"
#include "protocol/jwt.hpp"
#include "transport/seam.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace tidings::actors {

/// Connection counts behind the per-user and per-operation limits.
/// Thread-safe (one mutex; changes only on connect and disconnect); entries
/// that reach zero are removed.
class connection_counts {
 public:
  /// Counts one more plan-limited `/api/v1/ws` connection of `user`,
  /// unless it already has `limit`.
  bool try_open_plan(const std::string& user, std::uint32_t limit);
  void close_plan(const std::string& user);

  /// Counts one more S3 operation socket unless s3_admit refuses it; the
  /// refusal's close reason otherwise.
  std::optional<protocol::close_reason>
  try_open_s3(const std::string& user, const std::string& operation,
              const protocol::s3_limits& limits);
  void close_s3(const std::string& user, const std::string& operation);

  std::uint32_t plan_connections(const std::string& user) const;

 private:
  mutable std::mutex mtx_;
  std::map<std::string, std::uint32_t> plan_users_;
  std::map<std::string, std::uint32_t> s3_users_;
  std::map<std::string, std::uint32_t> s3_operations_;
};

struct connection_config {
  std::shared_ptr<const protocol::jwt_key> key;
  protocol::jwt_policy policy;
  std::chrono::milliseconds auth_timeout{10000};
  std::chrono::milliseconds heartbeat_interval{0}; // 0: no heartbeat frames
  std::size_t max_subscriptions = 100;
  double commands_per_second = 50; // sustained; bursts up to 2x
  /// Limits by the token's `plan` claim (S0's table by default).
  protocol::plan_limits plans = protocol::plan_limits::defaults();
  /// S3's per-user and per-operation socket limits.
  protocol::s3_limits s3;
  /// Shared by every connection of the node.
  std::shared_ptr<connection_counts> counts =
      std::make_shared<connection_counts>();
};

enum class socket_kind : std::uint8_t { ws, s3_operation };

struct connection_args {
  std::uint64_t conn_id = 0;
  std::string connection_id; // printable, sent in the `connected` frame
  std::shared_ptr<transport::frame_sink> sink;
  std::optional<protocol::claims> claims; // set when the query had a token
  socket_kind kind = socket_kind::ws;
  std::string operation_id; // s3_operation: from the path (decoded)
};

/// `writer` (the history writer) answers operation look-ups of S3 sockets.
caf::actor spawn_connection(caf::actor_system& sys, connection_args args,
                            caf::actor directory, caf::actor writer,
                            node_state& node,
                            std::shared_ptr<const connection_config> cfg);

} // namespace tidings::actors
