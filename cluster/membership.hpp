// The membership actor: this node's view of the cluster. It publishes
// itself on the cluster port, joins through seed addresses, keeps a full
// mesh of direct middleman connections, sends heartbeats and declares
// silent members dead, so every node converges on the same live set and
// rendezvous placement (placement.hpp) agrees everywhere.
//
// Runs on the CAF scheduler (event-based, not detached: a detached actor
// with a pending timer would hold up the actor system's shutdown). It never
// blocks: connections go through the middleman actor.
//
// Local protocol:
//   (cl_ready_atom)            -> uint16_t: the bound cluster port, once
//                                 published (an error if publishing failed)
//   (cl_members_atom)          -> membership_view: the current view
//   (cl_watch_atom, actor obs) -> bool: obs gets (cl_view_atom,
//                                 membership_view) now and on every change
//                                 of the live set; false when the observer
//                                 limit is reached. Watched; gone = removed.
//   (cl_endpt_atom, strong_actor_ptr ep) -> bool: the actor announced as this
//                                 node's endpoint from now on
//   (cl_leave_atom)            -> bool: tells every member we leave, closes
//                                 the port and quits
//   (cl_freeze_atom, bool on)  -> bool: test hook; while on, the actor sends
//                                 nothing and drops every peer message (a
//                                 SIGSTOP); off resumes like SIGCONT
// Peer protocol (between membership actors, one-way):
//   (cl_join_atom, member_info)          accept me; answered with a
//                                        heartbeat and our live list
//   (cl_hb_atom, member_info, u64 digest) every heartbeat_interval to live
//                                        members; a differing digest of the
//                                        live set is answered with gossip
//   (cl_gossip_atom, vector<member_addr>) the sender's live members; unknown
//                                        ones (or newer incarnations) are
//                                        connected to and sent a join
//   (cl_dead_atom, string id, u64 inc)   "you were declared dead": the
//                                        receiver takes a new incarnation
//                                        and joins everyone again
//   (cl_leave_atom, string id, u64 inc)  graceful leave
#pragma once

#include "cluster/membership_counters.hpp"
#include "cluster/membership_messages.hpp"

#include <caf/actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace tidings::cluster {

struct membership_config {
  std::string node_id;
  /// Where the cluster port listens; port 0 picks a free one.
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  /// The host other members connect to; empty: `host`, or 127.0.0.1 when
  /// `host` is empty or 0.0.0.0.
  std::string advertise_host;
  /// "host:port" of members to join through; may include this node.
  std::vector<std::string> seeds;
  std::chrono::milliseconds heartbeat_interval{500};
  /// Silence after which a member is dead (suspect after half of it).
  std::chrono::milliseconds failure_timeout{3000};
  /// Between connection attempts to a dead member or an unreached seed.
  std::chrono::milliseconds reconnect_interval{1000};
  /// Dead members are remembered this long, then forgotten.
  std::chrono::milliseconds forget_after{60000};
  /// Bound of one connection attempt through the middleman.
  std::chrono::milliseconds connect_timeout{5000};
  /// Members, this node included; joins beyond it are refused.
  std::size_t max_members = 64;
  std::size_t max_observers = 16;
  /// Announced to the other members as this node's endpoint (may be null;
  /// settable later with cl_endpt_atom).
  caf::strong_actor_ptr endpoint;
  /// Shared with /metrics; created when null.
  std::shared_ptr<membership_counters> counters;
  /// This node's first incarnation; 0: microseconds since the epoch, so a
  /// restarted node supersedes its previous life.
  std::uint64_t incarnation = 0;
};

/// Prepares an actor system config for the cluster: loads the middleman,
/// registers the membership types and turns on the middleman's own
/// heartbeats (`middleman.heartbeat-interval` = heartbeat_interval,
/// `middleman.connection-timeout` = failure_timeout; both are off in CAF
/// 0.17 by default). Call before constructing the actor system.
void configure_actor_system(caf::actor_system_config& sys_cfg,
                            const membership_config& cfg);

/// Spawns the membership actor; it publishes itself and starts joining
/// asynchronously. Ask (cl_ready_atom) for the bound port.
caf::actor spawn_membership(caf::actor_system& sys, membership_config cfg);

struct started_membership {
  caf::actor actor;
  std::uint16_t port = 0;
};

/// spawn_membership and wait until the port is bound. Blocks: call from a
/// thread that is not an actor (main, a test).
caf::expected<started_membership>
start_membership(caf::actor_system& sys, membership_config cfg,
                 std::chrono::milliseconds timeout = std::chrono::seconds(10));

/// Leaves the cluster (best effort) and waits until the actor is gone, so
/// the actor system can shut down. Blocks: call from a non-actor thread.
void stop_membership(
    caf::actor_system& sys, const caf::actor& membership,
    std::chrono::milliseconds timeout = std::chrono::seconds(2));

/// "host:port" → (host, port); port must be 1..65535. "[v6]:port" works.
caf::expected<std::pair<std::string, std::uint16_t>>
parse_host_port(const std::string& text);

} // namespace tidings::cluster
