// A node's actor side, behind a header without CAF or Beast: app/ starts it,
// hands its `application` to the transport, and shuts it down. Owns the
// actor system, the history writer and the room directory.
#pragma once

#include "actors/connection.hpp"
#include "actors/extension.hpp"
#include "persistence/retention.hpp"
#include "protocol/result.hpp"
#include "transport/seam.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace tidings::actors {

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
};

class runtime {
 public:
  /// Opens the history store and starts the actors.
  static result<std::unique_ptr<runtime>> start(node_config cfg);

  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  std::shared_ptr<transport::application> application();

  /// Retires every room (in-flight publishes finish), commits pending
  /// history and stops the actors. Call after the transport has stopped.
  void shutdown();

 private:
  runtime();
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace tidings::actors
