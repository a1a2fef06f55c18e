// Atoms and message payloads shared by the node's actors. CAF 0.17 atoms:
// at most 10 characters, same text = same type.
//
// Local-only payloads (a session's sink, publish requests) are marked as
// unsafe message types: they never cross the middleman. The cluster issue
// gives the ones that do an `inspect()`.
#pragma once

#include "protocol/publication.hpp"
#include "protocol/publish_request.hpp"
#include "transport/seam.hpp"

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tidings::actors {

using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
using unsub_atom = caf::atom_constant<caf::atom("unsub")>;
using publish_atom = caf::atom_constant<caf::atom("publish")>;
using append_atom = caf::atom_constant<caf::atom("append")>;
using position_atom = caf::atom_constant<caf::atom("position")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using idle_atom = caf::atom_constant<caf::atom("idle")>;
using retire_atom = caf::atom_constant<caf::atom("retire")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using text_atom = caf::atom_constant<caf::atom("text")>;
using closed_atom = caf::atom_constant<caf::atom("closed")>;
using auth_to_atom = caf::atom_constant<caf::atom("auth_to")>;
using heartbeat_atom = caf::atom_constant<caf::atom("heartbeat")>;
using shutdown_atom = caf::atom_constant<caf::atom("shutdown")>;
using read_atom = caf::atom_constant<caf::atom("read")>;
using op_create_atom = caf::atom_constant<caf::atom("op_create")>;
using op_get_atom = caf::atom_constant<caf::atom("op_get")>;
using snap_get_atom = caf::atom_constant<caf::atom("snap_get")>;
using state_atom = caf::atom_constant<caf::atom("state")>;
using command_atom = caf::atom_constant<caf::atom("command")>;
using pump_atom = caf::atom_constant<caf::atom("pump")>;
using sweep_atom = caf::atom_constant<caf::atom("sweep")>;
// Cluster (between nodes' directories and rooms, over the middleman). Every
// payload is built-in or registered (add_history_types).
using repl_atom = caf::atom_constant<caf::atom("repl")>;
using view_atom = caf::atom_constant<caf::atom("view")>;
using r_publish_atom = caf::atom_constant<caf::atom("r_publish")>;
using r_opcreate_atom = caf::atom_constant<caf::atom("r_opcreate")>;
using r_command_atom = caf::atom_constant<caf::atom("r_command")>;
using r_state_atom = caf::atom_constant<caf::atom("r_state")>;
using r_attach_atom = caf::atom_constant<caf::atom("r_attach")>;
using r_event_atom = caf::atom_constant<caf::atom("r_event")>;
using r_pos_atom = caf::atom_constant<caf::atom("r_pos")>;
// A read of the receiving node's own copy of a room's history (the writer
// treats it as read_atom; a directory does not route it to the owner).
using r_read_atom = caf::atom_constant<caf::atom("r_read")>;
// The directory hands a new room actor the subscribers it kept for the
// room while it had none (see room_directory.hpp, "parked" user rooms).
using adopt_atom = caf::atom_constant<caf::atom("adopt")>;

/// The wire shape a subscriber speaks; rooms encode each event once per
/// dialect in use and share the bytes.
/// s0: seed S0's `/api/v1/ws` frames; s3: seed S3's `/ws/operations/{id}`
/// frames (no subscribe confirmation, S3's current_state and status_update).
/// sse: S0's Server-Sent Events blocks (protocol/sse); s2: the `data`
/// member of seed S2's frames for a `stream:` room (protocol/dialect_s2),
/// which each S2 connection filters and wraps per subscription.
enum class dialect : std::uint8_t {
  native = 0,
  s0 = 1,
  s3 = 2,
  sse = 3,
  s2 = 4,
};
constexpr std::size_t dialect_count = 5;

/// Whether a dialect gets the native `subscription` confirmations (S0 and
/// S3 document none).
inline bool confirms(dialect wire) {
  return wire == dialect::native;
}

/// A session as a room sees it: where to put frames and whom to watch.
struct subscriber {
  std::uint64_t conn_id = 0;
  caf::actor conn; // watched, so a crashed connection leaves no entry
  std::shared_ptr<transport::frame_sink> sink;
  dialect wire = dialect::native;
  /// The client's cursor when it resumes (`since`); empty for a fresh join.
  std::optional<protocol::stream_position> since;
};

/// A request that can be retried (overload, a room moving between nodes,
/// a node shutting down): `unavailable` to the client.
inline caf::error unavailable() {
  return caf::make_error(caf::sec::request_timeout, "unavailable");
}

/// Actors report client-facing failures as `sec::invalid_argument` with an
/// error-table name as context; anything else is `unavailable`.
inline caf::error client_error(protocol::error_code code) {
  return caf::make_error(caf::sec::invalid_argument,
                         std::string{protocol::describe(code).name});
}

/// The table entry named in `err` (the longest name found, so
/// OPERATION_NOT_FOUND wins over NOT_FOUND), else `unavailable`.
inline protocol::error_code error_code_of(const caf::error& err) {
  if (err != caf::sec::invalid_argument)
    return protocol::error_code::unavailable;
  auto text = caf::to_string(err);
  const protocol::error_entry* best = nullptr;
  for (auto* e = protocol::error_table_begin();
       e != protocol::error_table_end(); ++e)
    if (text.find(e->name) != std::string::npos &&
        (!best || e->name.size() > best->name.size()))
      best = e;
  return best ? best->code : protocol::error_code::unavailable;
}

/// A session's handler that forwards each message to its connection actor
/// as (text_atom, message) and the session's end as (closed_atom).
class actor_handler final : public transport::connection_handler {
 public:
  explicit actor_handler(caf::actor conn) : conn_(std::move(conn)) {}
  void on_message(std::string msg) override {
    caf::anon_send(conn_, text_atom::value, std::move(msg));
  }
  void on_closed() override { caf::anon_send(conn_, closed_atom::value); }

 private:
  caf::actor conn_;
};

} // namespace tidings::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tidings::actors::subscriber)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<tidings::actors::subscriber>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tidings::protocol::publish_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tidings::protocol::room_id)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tidings::protocol::publication)
