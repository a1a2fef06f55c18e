// The node's one history writer: owns the history store and batches appends
// from every room into one transaction (group commit). Runs detached (its
// own thread), since SQLite blocks.
//
// Protocol:
//   (position_atom, std::string room)  -> (std::string epoch, uint64 offset)
//   (append_atom, stored_event)        -> uint64 offset, after the commit
//   (append_atom, stored_event, snapshot_update)
//                                      -> uint64 offset; the event and the
//                                         room's new snapshot commit together
//   (snap_get_atom, std::string room)  -> (bool found, uint64 offset,
//                                          std::string state)
//   (op_create_atom, operation_record) -> bool (false: an identical record
//                                         existed); error OPERATION_EXISTS
//   (op_get_atom, std::string id)      -> (bool found, operation_record)
//   (sweep_atom)                       trims every room with an age bound
//                                      (sent periodically by the directory:
//                                      rooms no longer written age out too)
//   (read_atom, std::string room, uint64 after, uint64 limit)
//                                      -> std::vector<stored_event>, the
//                                         committed events after `after`
//   (repl_atom, replica_batch)         -> (bool ok, uint64 last): applies a
//                                         batch the room's owner sent this
//                                         node as its replica (see
//                                         history_store::replicate); group
//                                         committed like appends
//   (shutdown_atom)                    -> commits what is pending and quits
//
// Group commit: an append is queued, and the first append of a batch sends
// the writer a flush message. Appends already in the mailbox are handled
// before that flush, so under load one transaction carries many rows and
// when idle a lone append commits at once. A batch holds at most
// `max_batch` rows; replies leave in the order the appends arrived.
#pragma once

#include "actors/node_state.hpp"
#include "persistence/history_store.hpp"
#include "persistence/retention.hpp"
#include "protocol/publication.hpp"

#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>

#include <chrono>
#include <memory>
#include <vector>

namespace tidings::actors {

struct history_writer_config {
  std::size_t max_batch = 4096;
  /// Own thread (production). Tests run it on the deterministic scheduler.
  bool detached = true;
  /// History kept per room kind; applied after a commit, at most once per
  /// `trim_interval`, to the rooms written since the last pass. A resume that
  /// reaches into trimmed history gets `recovered: false`, never a gap (see
  /// room.hpp).
  persistence::retention_rules retention;
  std::chrono::milliseconds trim_interval{5000};
};

/// A stored event as the publication it was, for replay and history reads.
protocol::publication to_publication(const protocol::room_id& room,
                                     const std::string& epoch,
                                     persistence::stored_event&& ev);

caf::actor
spawn_history_writer(caf::actor_system& sys,
                     std::shared_ptr<persistence::history_store> store,
                     node_state& node, history_writer_config cfg = {});

} // namespace tidings::actors

// History rows cross the middleman (replication, remote history reads), so
// they have an inspect(); the cluster registers them (add_history_types).
namespace tidings::persistence {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stored_event& x) {
  return f(caf::meta::type_name("stored_event"), x.room, x.offset,
           x.timestamp_ms, x.type, x.event, x.data, x.publish_id);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, snapshot_update& x) {
  return f(caf::meta::type_name("snapshot_update"), x.room, x.offset, x.state);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, operation_record& x) {
  return f(caf::meta::type_name("operation_record"), x.id, x.kind, x.owner,
           x.meta_json, x.created_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, replica_batch& x) {
  return f(caf::meta::type_name("replica_batch"), x.room, x.epoch, x.after,
           x.reset, x.events, x.snapshots);
}

} // namespace tidings::persistence

namespace tidings::actors {

/// Registers the history types above for the middleman.
void add_history_types(caf::actor_system_config& cfg);

} // namespace tidings::actors
