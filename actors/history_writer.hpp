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

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/fwd.hpp>

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

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tidings::persistence::stored_event)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tidings::persistence::snapshot_update)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tidings::persistence::operation_record)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<tidings::persistence::stored_event>)
