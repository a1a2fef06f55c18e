// The membership table of one node: who is in the cluster, which
// incarnation of each member we believe in, and when we last heard from it.
// Pure and single-threaded (the membership actor owns one); time is always
// passed in, so the failure detector is tested without clocks or sockets.
//
// Incarnation rules (the heart of rejoining):
//   - a message from an older incarnation than the one we hold is stale;
//   - a newer incarnation replaces the entry (restart, or a return after
//     being declared dead) and counts as a join;
//   - a member declared dead stays dead for that incarnation: it must come
//     back with a higher one, so late messages of the dead incarnation can
//     never resurrect it on one node but not on another.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace tidings::cluster {

enum class member_state : std::uint8_t { alive = 0, suspect = 1, dead = 2 };

std::string_view to_string(member_state s);

/// Where a member listens for the cluster and which incarnation it is.
struct member_addr {
  std::string node_id;
  std::uint64_t incarnation = 0;
  std::string host;
  std::uint16_t port = 0;
};

bool operator==(const member_addr& a, const member_addr& b);
inline bool operator!=(const member_addr& a, const member_addr& b) {
  return !(a == b);
}

struct member_record {
  member_addr addr;
  member_state state = member_state::alive;
  std::chrono::steady_clock::time_point last_heard;
  std::chrono::steady_clock::time_point changed; // last state change
};

/// What a direct message from a member means for the table.
enum class contact_result {
  joined,    // unknown until now: added as alive
  rejoined,  // newer incarnation: entry replaced, alive
  refreshed, // same incarnation, alive or suspect: heard now, alive
  stale,     // older incarnation than ours: ignore the message
  dead,      // incarnation we declared dead: ignore, and tell the sender
  rejected,  // our own id, or the table is full of live members
};

struct failure_thresholds {
  std::chrono::steady_clock::duration suspect_after;
  std::chrono::steady_clock::duration dead_after;
  std::chrono::steady_clock::duration forget_after; // dead entries
};

struct sweep_result {
  std::vector<std::string> suspected;
  std::vector<std::string> died;
  std::vector<std::string> forgotten;
};

class member_table {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  /// `max_members` bounds the table, this node included (at least 2).
  member_table(member_addr self, std::size_t max_members);

  const member_addr& self() const { return self_; }
  /// This node's address changes when its port is bound and when it takes
  /// a new incarnation.
  void set_self(member_addr self);

  /// A message came straight from `who` (not gossip about it).
  contact_result heard_from(const member_addr& who, time_point now);

  /// A leave or a lost connection: true when a live member became dead.
  /// Ignored unless `incarnation` is the one we hold.
  bool declare_dead(std::string_view id, std::uint64_t incarnation,
                    time_point now);

  /// Suspects and kills silent members, forgets old dead ones.
  sweep_result sweep(time_point now, const failure_thresholds& t);

  /// Treat every live member as heard now: after this node itself was
  /// paused, its silence says nothing about the others.
  void touch_live(time_point now);

  const member_record* find(std::string_view id) const;
  /// Live (alive or suspect) ids, this node included, sorted.
  std::vector<std::string> live_ids() const;
  /// Live members, this node included, sorted by id.
  std::vector<member_addr> live_members() const;
  /// Every other member, dead ones included, sorted by id.
  std::vector<member_record> others() const;
  std::size_t live_count() const;
  std::size_t size() const { return members_.size() + 1; }

  /// Order-independent fingerprint of the live (id, incarnation) set: two
  /// nodes with equal digests see the same members.
  std::uint64_t digest() const;

 private:
  bool make_room();

  member_addr self_;
  std::size_t max_;
  std::map<std::string, member_record, std::less<>> members_; // not self
};

} // namespace tidings::cluster
