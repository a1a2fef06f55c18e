// GET /api/v1/cluster: this node's view of the cluster, for operators and
// tests. The gateway checks the method and the bearer JWT (as for
// /api/v1/ws/stats) and hands the rest here. Called on a transport I/O
// thread; never blocks it: the membership actor and the room directory are
// asked from a short-lived actor that completes the responder.
//
// Reply (200):
//   {"enabled":bool, "node_id":str, "view_version":u64,
//    "live":[ids], "rooms_local":n,
//    "members":[{"node_id", "state":"alive"|"suspect"|"dead",
//                "address":"host:port"|null, "incarnation":u64,
//                "last_heard_ms":n, "self":bool, "rooms_owned":n}],
//    "placement_version":u64,
//    "rooms":[{"room_id","owner","replica"}]}   only with ?room=
// `rooms_owned` counts room actors live on THIS node whose placement owner
// (rendezvous over the live list) is that member: for this node, the rooms
// it owns and runs; for another member, rooms running here that placement
// gives to it (routing is not built yet, so nothing moves them). Each
// node's own figure is in its own reply.
// `?room=kind:id` (repeatable, at most max_room_queries) asks the placement
// component for owner and replica of each room; an invalid id is 400.
#pragma once

#include "actors/cluster_node.hpp"
#include "transport/seam.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <memory>
#include <string>
#include <string_view>

namespace tidings::actors {

class cluster_api {
 public:
  static constexpr std::size_t max_room_queries = 200;

  /// `membership` is null when the cluster is off.
  cluster_api(caf::actor_system& sys, std::string node_id,
              caf::actor membership, caf::actor directory,
              std::shared_ptr<const placement_table> placement);

  void handle(std::string_view query, transport::http_responder respond);

 private:
  caf::actor_system& sys_;
  std::string node_id_;
  caf::actor membership_;
  caf::actor directory_;
  std::shared_ptr<const placement_table> placement_;
};

} // namespace tidings::actors
