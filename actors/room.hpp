// One actor per room on the room's owner node. It assigns each event a
// dense offset in the room's epoch, has the history writer commit it, and
// then fans it out: encoded once per dialect in use, the same bytes handed
// to every subscriber's session (no actor message per subscriber).
//
// Runs on the CAF scheduler. Protocol:
//   (subscribe_atom, subscriber)   -> (actor room, std::string epoch,
//                                      uint64 offset)
//       adds (or refreshes) the subscriber and puts the `subscribed` frame
//       into its session first, so no event can overtake the confirmation.
//       With a `since` cursor in this epoch and at most `replay_limit`
//       behind, the room reads the missed events from history, buffers
//       live events meanwhile, and hands over: confirmation with
//       `recovered: true`, the missed events, the buffered ones, then live.
//       The replay is paced below half the session's queue bound (a pump
//       timer), so a large resume never trips the slow-consumer close.
//       Otherwise (other epoch, trimmed history, too far behind) the
//       confirmation says `recovered: false` and live events follow.
//   (unsub_atom, uint64 conn_id)   -> bool (was subscribed)
//       puts the `unsubscribed` frame into the session after removing it.
//   (publish_atom, publish_request)-> uint64 offset, after the commit
//       fails with `unavailable` when too many publishes are in flight;
//       a repeated `publish_id` (see dedupe_window) answers the first
//       offset, waiting for its commit if it is still in flight.
//   (op_create_atom, operation_record) -> (state, uint64 offset, epoch)
//       operation kinds only: creates the operation (idempotent)
//   (command_atom, name, args_json, caller) -> uint64 offset (0: no event)
//       runs the kind's command handler; its event is published like any
//   (state_atom)                   -> (bool exists, std::string state,
//                                      uint64 offset, std::string epoch)
//   (retire_atom)                  quits once in-flight publishes are done
//   (tick_atom)                    idle check; an empty, quiet room asks
//                                  the directory (idle_atom) to retire it
//   (pump_atom, uint64 conn_id)    continues a paced replay (self-sent)
//
// Operation rooms (kinds registered in `kind_registry`) fold every event
// into a current state at publish time and store it with the event in one
// commit. A subscriber gets the confirmation, then `current_state` at the
// committed offset, then events with larger offsets. Nothing is replayed:
// the state already holds the missed events, so `recovered` is true only
// for a cursor at the room's position; otherwise it is false and
// current_state covers the gap. Subscribing or publishing to an operation
// that was not created fails with OPERATION_NOT_FOUND.
//
// Messages from the directory are counted, and the idle request carries the
// count: the directory retires the room only if it has forwarded nothing
// the room has not seen, so no subscribe or publish is ever lost to a
// retiring room.
#pragma once

#include "actors/extension.hpp"
#include "actors/node_state.hpp"
#include "persistence/retention.hpp"
#include "protocol/room_id.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <cstddef>

namespace tidings::actors {

class placement_table;

struct room_config {
  std::chrono::milliseconds idle_timeout{30000};
  std::size_t max_pending_publishes = 10000;
  std::uint64_t replay_limit = 10000; // most events one resume replays
  /// A publish whose `publish_id` matches one of the room's last this many
  /// events gets that event's offset instead of storing a duplicate. Loaded
  /// from history when the room starts, so it holds across restarts.
  std::size_t dedupe_window = 1000;
  /// Which kinds are operations, with their reducers.
  std::shared_ptr<const kind_registry> kinds;
  /// How often the directory asks the writer to age out history of rooms
  /// no longer written (0: never).
  std::chrono::milliseconds sweep_interval{60000};
  /// The cluster's placement (null: a single node owning every room).
  std::shared_ptr<placement_table> placement;
  /// Replicate each event to the room's replica and acknowledge only after
  /// it stored it (false: the owner's commit alone acknowledges).
  bool replicate = true;
  /// History retention (null: keep everything). A resume is served from
  /// the room's recent events in memory only where history still holds
  /// them, so what a client can recover does not depend on the memory.
  std::shared_ptr<const persistence::retention_rules> retention;
  /// Bound on one request to another node (attach, replication, reads).
  std::chrono::milliseconds remote_timeout{2000};
};

/// Spawned by the directory; `directory` receives idle requests.
caf::actor spawn_room(caf::local_actor* parent, protocol::room_id id,
                      caf::actor directory, caf::actor writer, node_state& node,
                      room_config cfg);

} // namespace tidings::actors
