// The node's placement component: watches the membership view and answers
// "which node owns room X" and "which node holds its replica" for the rest
// of the node. Owners come from rendezvous hashing (cluster/placement.hpp)
// over the live members, so every node that sees the same live set agrees
// without talking.
//
// Two ways to ask:
//   - `placement_table::current()`: a snapshot, from any thread, without a
//     message round trip (what routing on the hot path will use);
//   - the cluster_node actor, for actors that prefer messages.
//
// The cluster_node actor runs on the CAF scheduler (event-based). Protocol:
//   (cn_attach_atom, actor membership) -> bool: watch this membership actor
//                                 (sends it cl_watch); false if refused
//   (cl_view_atom, membership_view)   from the membership actor: a new live
//                                 set; the table's snapshot is replaced
//   (cn_owner_atom, string room)   -> string: the owner ("" if no members)
//   (cn_replica_atom, string room) -> string: the replica holder ("" when
//                                 fewer than two members are live)
//   (cn_rank_atom, string room)    -> vector<string>: live members, best
//                                 first ([0] owner, [1] replica)
// After each new view it tells the room directory `(view_atom)`, which
// passes it to every room (roles change: owner, mirror, replica). The
// directory, not this actor, is the endpoint the node announces.
//
// With the cluster off there is no actor; the table holds this node alone,
// so every room is owned here.
#pragma once

#include <caf/actor.hpp>
#include <caf/actor_control_block.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace tidings::actors {

using cn_attach_atom = caf::atom_constant<caf::atom("cn_attach")>;
using cn_owner_atom = caf::atom_constant<caf::atom("cn_owner")>;
using cn_replica_atom = caf::atom_constant<caf::atom("cn_replica")>;
using cn_rank_atom = caf::atom_constant<caf::atom("cn_rank")>;

/// One immutable placement snapshot. Keys are canonical room ids
/// (`protocol::room_id::str()`).
struct placement_view {
  /// Bumped by one for each view this node applied (local numbering).
  std::uint64_t version = 0;
  std::string self;
  std::vector<std::string> live; // sorted, this node included when alive
  /// Each live member's announced endpoint (its cluster_node actor; null
  /// for this node and for members that announced none).
  std::map<std::string, caf::strong_actor_ptr> endpoints;

  std::string owner(std::string_view room) const;
  std::string replica(std::string_view room) const;
  std::vector<std::string> rank(std::string_view room) const;
  bool owned_here(std::string_view room) const { return owner(room) == self; }
};

/// The current snapshot, shared between the cluster_node actor (the only
/// writer) and readers on any thread.
class placement_table {
 public:
  /// Starts with `self` as the only member.
  explicit placement_table(std::string self);

  std::shared_ptr<const placement_view> current() const;
  void replace(std::shared_ptr<const placement_view> next);

 private:
  mutable std::mutex mtx_;
  std::shared_ptr<const placement_view> view_;
};

/// `directory` (may be null) hears `(view_atom)` after each new view.
caf::actor spawn_cluster_node(caf::actor_system& sys,
                              std::shared_ptr<placement_table> table,
                              caf::actor directory = {});

} // namespace tidings::actors
