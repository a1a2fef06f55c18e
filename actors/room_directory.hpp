// The node's room directory: finds or spawns the room actor for a room id,
// forwards subscribes and publishes to it, and retires idle rooms.
//
// Runs on the CAF scheduler. Protocol:
//   (subscribe_atom, room_id, subscriber)  -> forwarded to the room
//   (publish_atom, publish_request)        -> forwarded to the room
//   (op_create_atom, room_id, operation_record), (state_atom, room_id)
//                                          -> forwarded to the room
//   (idle_atom, std::string key, uint64 n) from a room: retire it when the
//                                          directory forwarded exactly n
//                                          messages to it (none in flight)
//   (sweep_atom)                           every sweep_interval: asks the
//                                          writer to age out history
//   (shutdown_atom) -> bool: retires every room, waits until all are down,
//                      then tells the history writer to finish and quits.
//   (rooms_atom) -> vector<string>: keys of the rooms with a live room
//                      actor (not retired), for GET /api/v1/cluster
#pragma once

#include "actors/node_state.hpp"
#include "actors/room.hpp"

#include <caf/atom.hpp>
#include <caf/fwd.hpp>

namespace tidings::actors {

using rooms_atom = caf::atom_constant<caf::atom("rooms")>;

caf::actor spawn_room_directory(caf::actor_system& sys, caf::actor writer,
                                node_state& node, room_config cfg);

} // namespace tidings::actors
