// Node-wide counters and the small registries behind /api/v1/ws/stats,
// /api/v1/ws/rooms and /metrics. Thread-safe: counters are atomics updated
// once per publication (not per delivery); the registries change only on
// connect, disconnect, subscribe and unsubscribe, under one mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace tidings::actors {

struct node_counters {
  std::atomic<std::uint64_t> connections_total{0};
  std::atomic<std::uint64_t> auth_failures{0};
  std::atomic<std::uint64_t> messages_in{0};  // client commands
  std::atomic<std::uint64_t> publications{0}; // committed publishes
  std::atomic<std::uint64_t> publish_errors{0};
  std::atomic<std::uint64_t> deliveries{0}; // frames handed to sessions
  std::atomic<std::uint64_t> delivery_bytes{0};
  std::atomic<std::uint64_t> dropped_deliveries{0}; // sink refused (closing)
  std::atomic<std::uint64_t> errors_sent{0};        // error frames to clients
  std::atomic<std::uint64_t> rate_limited{0};
  std::atomic<std::int64_t> rooms_alive{0}; // room actors
  std::atomic<std::uint64_t> history_commits{0};
  std::atomic<std::uint64_t> history_rows{0};
  // Cluster routing and replication.
  std::atomic<std::uint64_t> forwarded_publishes{0}; // sent to their owner
  std::atomic<std::uint64_t> forwarded_events{0};    // owner → other nodes
  std::atomic<std::uint64_t> mirrored_events{0};     // received from owners
  std::atomic<std::uint64_t> replicated_rows{0};     // stored as a replica
  std::atomic<std::uint64_t> replication_sent{0};    // rows sent to replicas
  std::atomic<std::uint64_t> replication_failures{0};
  std::atomic<std::uint64_t> takeovers{0}; // rooms this node began to own
  std::atomic<std::int64_t> owned_rooms{0};   // owner room actors
  std::atomic<std::int64_t> mirror_rooms{0};  // mirror room actors
  /// Largest number of events an owner here had sent its replica without an
  /// answer, since the last scrape (replication lag in events).
  std::atomic<std::uint64_t> replication_lag{0};
};

class node_state {
 public:
  node_counters counters;

  void connection_opened(const std::string& user);
  void connection_closed(const std::string& user);
  void joined(const std::string& user, const std::string& room);
  void left(const std::string& user, const std::string& room);
  /// A room got its first subscriber / lost its last one.
  void room_active(const std::string& room, bool active);

  std::uint64_t total_connections() const;
  std::uint64_t user_connections(const std::string& user) const;
  std::vector<std::string> user_rooms(const std::string& user) const;
  std::vector<std::string> active_rooms() const;
  std::size_t active_room_count() const;

  /// Prometheus text exposition (version 0.0.4) of everything above.
  std::string render_metrics() const;

 private:
  struct user_entry {
    std::uint64_t connections = 0;
    std::map<std::string, std::uint64_t> rooms; // room → subscriptions
  };
  mutable std::mutex mtx_;
  std::map<std::string, user_entry> users_;
  std::map<std::string, bool> active_rooms_;
  std::uint64_t connections_ = 0;
};

} // namespace tidings::actors
