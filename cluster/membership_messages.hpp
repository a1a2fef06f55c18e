// Atoms and payloads of the membership protocol. The `cl_` prefix keeps the
// atoms apart from the node's own ones (CAF 0.17: same text = same type,
// at most 10 characters). Everything here that crosses the middleman has
// an inspect() and is registered by add_membership_types(); an
// unregistered type would be dropped silently.
#pragma once

#include "cluster/member_table.hpp"

#include <caf/actor_control_block.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace tidings::cluster {

// Between membership actors (over the middleman).
using cl_join_atom = caf::atom_constant<caf::atom("cl_join")>;
using cl_hb_atom = caf::atom_constant<caf::atom("cl_hb")>;
using cl_gossip_atom = caf::atom_constant<caf::atom("cl_gossip")>;
using cl_dead_atom = caf::atom_constant<caf::atom("cl_dead")>;
using cl_leave_atom = caf::atom_constant<caf::atom("cl_leave")>;
// Local API.
using cl_ready_atom = caf::atom_constant<caf::atom("cl_ready")>;
using cl_members_atom = caf::atom_constant<caf::atom("cl_members")>;
using cl_watch_atom = caf::atom_constant<caf::atom("cl_watch")>;
using cl_view_atom = caf::atom_constant<caf::atom("cl_view")>;
using cl_endpt_atom = caf::atom_constant<caf::atom("cl_endpt")>;
using cl_freeze_atom = caf::atom_constant<caf::atom("cl_freeze")>;
// Internal timer.
using cl_tick_atom = caf::atom_constant<caf::atom("cl_tick")>;

/// What a member says about itself in joins and heartbeats: its address,
/// its incarnation and the actor the rest of its node receives on (may be
/// null). Sent only by the member itself, so the endpoint's proxy on the
/// receiving node routes over the direct connection.
struct member_info {
  member_addr addr;
  caf::strong_actor_ptr endpoint;
};

/// One member as this node sees it.
struct member_status {
  member_addr addr;
  member_state state = member_state::alive;
  std::int64_t silent_ms = 0; // since we last heard from it
  caf::strong_actor_ptr endpoint;
};

/// Answer to `members` and what observers receive. `version` grows by one
/// each time this node's live (id, incarnation) set changes; it is local
/// to the node (two nodes may number the same view differently).
struct membership_view {
  std::uint64_t version = 0;
  std::vector<std::string> live;      // sorted, this node included
  std::vector<member_status> members; // sorted by id, dead ones included
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, member_addr& x) {
  return f(caf::meta::type_name("member_addr"), x.node_id, x.incarnation,
           x.host, x.port);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, member_info& x) {
  return f(caf::meta::type_name("member_info"), x.addr, x.endpoint);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, member_status& x) {
  return f(caf::meta::type_name("member_status"), x.addr, x.state, x.silent_ms,
           x.endpoint);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, membership_view& x) {
  return f(caf::meta::type_name("membership_view"), x.version, x.live,
           x.members);
}

/// Registers the types above (and vectors of them). Every actor system of
/// the cluster must call this before it is constructed.
void add_membership_types(caf::actor_system_config& cfg);

} // namespace tidings::cluster
