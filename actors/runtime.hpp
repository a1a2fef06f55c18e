// A node's actor side, behind a header without CAF or Beast: app/ starts it,
// hands its `application` to the transport, and shuts it down. Owns the
// actor system, the history writer and the room directory.
#pragma once

#include "actors/connection.hpp"
#include "actors/extension.hpp"
#include "actors/s2_connection.hpp"
#include "actors/stream_http.hpp"
#include "persistence/retention.hpp"
#include "protocol/result.hpp"
#include "transport/seam.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace tidings::actors {

/// Cluster membership (cluster/membership.hpp); off when `listen` is empty.
struct cluster_options {
  /// "host:port" of this node's cluster port; port 0 picks a free one.
  std::string listen;
  /// Host the other members connect to; empty: the listen host (127.0.0.1
  /// for 0.0.0.0).
  std::string advertise;
  /// "host:port" cluster ports of members to join through.
  std::vector<std::string> join;
  std::chrono::milliseconds heartbeat_interval{500};
  std::chrono::milliseconds failure_timeout{3000};
  /// Acknowledge a publish only after the room's replica stored it too
  /// (`--replication sync`); false: the owner's commit alone (`off`).
  bool replicate = true;
};

struct node_config {
  std::string node_id = "node-1";
  std::string data_dir = "./data";
  bool durability_normal = false; // SQLite synchronous=NORMAL (see README)
  std::string api_key;
  connection_config conn;
  std::chrono::milliseconds room_idle_timeout{30000};
  std::size_t max_pending_publishes = 10000; // per room
  std::uint64_t replay_limit = 10000;        // events one resume may replay
  persistence::retention_rules retention;
  /// Room kinds that are operations; add custom reducers here before
  /// `start` (the extension point, docs/extending.md).
  kind_registry kinds;
  unsigned actor_threads = 2;
  /// Appended to /metrics (the transport's counters).
  std::function<std::string()> extra_metrics;
  /// Use an in-memory store instead of SQLite (tests).
  bool memory_store = false;
  cluster_options cluster;
  /// SSE and long-poll (actors/stream_http.hpp).
  stream_http_config streams;
  /// Seed S2's per-connection rules, for s2_application().
  s2_config s2;
};

class runtime {
 public:
  /// Opens the history store and starts the actors.
  static result<std::unique_ptr<runtime>> start(node_config cfg);

  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  std::shared_ptr<transport::application> application();

  /// What seed S2's own listener serves (actors/s2_gateway.hpp); the
  /// caller runs a second transport server with it (--s2-port).
  std::shared_ptr<transport::application> s2_application();

  /// The bound cluster port, 0 when the cluster is off.
  std::uint16_t cluster_port() const;

  /// Retires every room (in-flight publishes finish), commits pending
  /// history and stops the actors. Call after the transport has stopped.
  void shutdown();

 private:
  runtime();
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace tidings::actors
