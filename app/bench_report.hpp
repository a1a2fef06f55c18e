// What one `tidings bench` run measured, and its three renderings: a table
// for people, one JSON object, or one CSV line (for scripts that run many
// scenarios and peers and merge the lines). JSON and CSV share one flat,
// ordered field list so their names cannot drift apart.
#pragma once

#include "app/bench_proc.hpp"
#include "app/bench_stats.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace tidings::app::bench {

struct run_setup {
  std::string mode = "fanout";         // fanout, idle or storm
  std::string protocol = "native";     // native or socketio
  std::string publish_method = "http"; // http or ws
  bool sio_recovery = false;
  double idle_hold_seconds = 0;   // idle mode
  double storm_after_seconds = 0; // storm mode
  std::string host;
  std::uint16_t port = 0;
  std::uint64_t subscribers = 0;
  std::uint64_t rooms = 0;
  std::uint64_t events = 0;
  double rate = 0;
  std::uint64_t publishers = 0;
  std::uint64_t payload_bytes = 0;
};

struct run_results {
  run_setup setup;

  // Connect phase: first connect started -> last subscriber ready.
  std::uint64_t connected = 0;
  std::uint64_t connect_failed = 0;
  double connect_seconds = 0;
  histogram handshake_ns; // TCP connect + upgrade + subscribe reply
  std::map<std::string, std::uint64_t> connect_errors;

  // Publish phase.
  std::uint64_t published = 0; // requests answered, any status
  std::uint64_t acked = 0;     // 200 replies
  std::uint64_t publish_errors = 0;
  std::map<std::string, std::uint64_t> publish_error_kinds;
  histogram ack_ns;                // request written -> reply read
  std::uint64_t max_behind_ns = 0; // worst send delay past its schedule

  // Deliveries; the window runs from the first publish to the last
  // delivery.
  delivery_ledger::totals deliveries;
  histogram latency_ns;
  double window_seconds = 0;
  std::uint64_t disconnected = 0; // ready subscribers the server dropped
  std::map<std::string, std::uint64_t> disconnect_reasons;
  std::uint64_t error_frames = 0; // {"type":"error"} frames received

  // CPU from the first publish to the first tick after the last delivery.
  std::vector<int> server_pids;
  std::optional<double> server_cpu_seconds;
  double cpu_window_seconds = 0;
  double self_cpu_seconds = 0;
  memory_reading server_before_connect;
  memory_reading server_after_connect;
  memory_reading server_end;

  // Connections above one address's port range bind to 127.0.0.2, ...
  std::uint64_t source_addresses = 1;
  // Idle mode: the server after holding every connection --idle-hold s.
  memory_reading server_after_hold;
  std::optional<std::uint64_t> bench_rss; // this process, all connections up

  // Storm mode; see catchup_tracker for the catch-up definition.
  struct storm_results {
    bool happened = false;
    std::uint64_t dropped = 0;     // subscribers whose socket was closed
    std::uint64_t reconnected = 0; // subscribed again
    std::uint64_t reconnect_failed = 0;
    std::uint64_t recovered = 0; // the server said it resumed the session
    std::uint64_t caught_up = 0;
    std::uint64_t sent_before_drop = 0;        // events sent before the drop
    std::optional<std::uint64_t> reconnect_ns; // drop -> last resubscribed
    std::optional<std::uint64_t> catchup_ns;   // drop -> last caught up
  } storm;

  bool timed_out = false;

  /// Server memory growth per connected subscriber over the idle hold:
  /// (after hold - before connect) / connected.
  std::optional<double> rss_per_conn() const;
  std::optional<double> pss_per_conn() const;
  /// Deliveries per second over the window.
  double deliveries_per_second() const;
  /// Why the run does not count as clean; empty when it does.
  std::vector<std::string> failures() const;
};

void print_human(std::ostream& out, const run_results& r);
void print_json(std::ostream& out, const run_results& r);
/// One CSV line; with `header`, the column names first.
void print_csv(std::ostream& out, const run_results& r, bool header);

} // namespace tidings::app::bench
