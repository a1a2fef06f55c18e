// The extension point for new room kinds and socket kinds: register an
// operation kind with its own reducer, or an actor type that serves
// WebSockets under a path prefix, before the node starts (see
// docs/extending.md). The registry is immutable once the runtime has it,
// so every actor reads it without locks.
#pragma once

#include "protocol/claims.hpp"
#include "protocol/operation_state.hpp"
#include "transport/seam.hpp"

#include <caf/fwd.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace tidings::actors {

/// A WebSocket opening under a registered socket kind's path prefix.
struct socket_request {
  std::string rest;  // the path after the prefix, percent-decoded
  std::string query; // the raw query string (without `?`)
  std::shared_ptr<transport::frame_sink> sink;
  /// Claims of a valid `?token=`; a present but invalid token never gets
  /// here (the gateway closes 1008 `invalid_token`).
  std::optional<protocol::claims> claims;
};

/// Spawns the actor that serves one socket. It then receives
/// `(text_atom, std::string)` per client message and `(closed_atom)` once
/// when the session ends (then it should quit), and writes to the sink.
/// Called on a transport I/O thread: spawn, do not block.
using socket_factory =
    std::function<caf::actor(caf::actor_system&, socket_request)>;

class kind_registry {
 public:
  /// Rooms `<kind>:<id>` become operations: created through the API, with a
  /// current state folded by `r` from their events and sent first to every
  /// subscriber. Without `r`, the default reducer is used.
  /// `commands`, when given, answers clients' `command` messages on rooms
  /// of this kind (see protocol::command_handler).
  void add_operation_kind(
      std::string kind, std::shared_ptr<const protocol::reducer> r = {},
      std::shared_ptr<const protocol::command_handler> commands = {});

  /// The reducer of an operation kind; nullptr for plain rooms.
  const protocol::reducer* operation_reducer(std::string_view kind) const;

  /// The command handler of a kind; nullptr when it has none.
  const protocol::command_handler* commands(std::string_view kind) const;

  bool is_operation_kind(std::string_view kind) const {
    return operation_reducer(kind) != nullptr;
  }

  /// WebSockets whose path is `path_prefix` + a non-empty rest (e.g.
  /// "/ws/scan/" + scan id) are served by actors from `make`. Prefixes must
  /// start with '/' and end with '/'; built-in endpoints take precedence.
  void add_socket_kind(std::string path_prefix, socket_factory make);

  /// The factory for `path` and the rest after its prefix (the longest
  /// matching prefix); nullptr when none matches or the rest is empty.
  const socket_factory* socket_kind(std::string_view path,
                                    std::string_view* rest = nullptr) const;

 private:
  struct entry {
    std::shared_ptr<const protocol::reducer> reducer;
    std::shared_ptr<const protocol::command_handler> commands;
  };
  std::map<std::string, entry, std::less<>> operations_;
  std::map<std::string, socket_factory, std::less<>> sockets_;
};

} // namespace tidings::actors
