// The HTTP + WebSocket listener. Beast stays inside server.cpp and the
// session files; this header is safe to include next to CAF.
#pragma once

#include "transport/seam.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tidings::transport {

struct server_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8000;             // 0 picks a free port
  unsigned threads = 1;                  // I/O threads
  std::size_t max_message_size = 65536;  // larger ws messages: close 1009
  std::size_t max_queue_bytes = 1 << 20; // per session; over it: 4001
  std::size_t max_http_body = 1 << 20;   // larger bodies: 413
  std::size_t max_header_bytes = 8192;   // larger request heads: 431
  std::size_t max_connections = 10000;   // ws + streams; beyond: 1013 / 503
  std::chrono::seconds idle_timeout{60}; // ws: ping at half, close after
  std::chrono::seconds handshake_timeout{10};
  std::chrono::seconds http_timeout{30}; // reading a request; each write
  /// How long the application may take to answer one request (long-poll
  /// answers wait up to a minute); then the connection is closed unanswered.
  std::chrono::seconds answer_timeout{90};
  /// Origins allowed to open WebSockets ("*" allows any). Empty: only the
  /// server's own host (Origin host == Host header). Requests without an
  /// Origin header (non-browser clients) are allowed.
  std::vector<std::string> allowed_origins;
};

/// Counters the transport keeps; read by /metrics.
struct transport_counters {
  std::uint64_t connections_open = 0;
  std::uint64_t connections_total = 0;
  std::uint64_t slow_consumer_closes = 0;
  std::uint64_t oversize_closes = 0;
  std::uint64_t frames_out = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t frames_in = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t http_requests = 0;
  std::uint64_t rejected_connections = 0;
};

class server {
 public:
  server(server_options opts, std::shared_ptr<application> app);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds and listens. Returns an error text when the address is unusable.
  std::optional<std::string> listen();

  /// The bound port (useful with port 0).
  std::uint16_t port() const;

  /// Runs the I/O threads; returns after `stop()`.
  void run();

  /// Closes the listener and every session with 1001, then ends `run()`.
  /// Thread-safe; safe to call from a signal-watching thread.
  void stop();

  transport_counters counters() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace tidings::transport
