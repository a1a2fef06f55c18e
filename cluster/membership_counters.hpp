// Counters of the membership actor, read by /metrics. Written only by the
// membership actor (one CAF worker at a time), read from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace tidings::cluster {

struct membership_counters {
  std::atomic<std::int64_t> members_alive{1}; // live members, this node too
  std::atomic<std::uint64_t> view_version{0};
  std::atomic<std::uint64_t> joins{0};  // members joined or rejoined
  std::atomic<std::uint64_t> deaths{0}; // live members declared dead
  std::atomic<std::uint64_t> leaves{0}; // members that left gracefully
  std::atomic<std::uint64_t> heartbeats_sent{0};
  std::atomic<std::uint64_t> heartbeats_received{0};
  std::atomic<std::uint64_t> self_rejoins{0}; // told we were declared dead
  std::atomic<std::uint64_t> connect_failures{0};
  std::atomic<std::uint64_t> rejected{0}; // joins refused: table full
};

/// Prometheus text exposition (0.0.4) of `c`, to append to /metrics.
std::string render_membership_metrics(const membership_counters& c);

} // namespace tidings::cluster
