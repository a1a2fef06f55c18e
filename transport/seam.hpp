// The seam between transport/ (Beast) and the application (actors/). No
// Beast and no CAF headers: both sides include this and nothing of the other.
//
// Threads: transport calls `application` and `connection_handler` from its
// I/O threads; for one session, calls are never concurrent and arrive in
// order. The application calls `frame_sink` from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tidings::transport {

/// An encoded frame, shared by every session it goes to (encode once).
using frame = std::shared_ptr<const std::string>;

inline frame make_frame(std::string bytes) {
  return std::make_shared<const std::string>(std::move(bytes));
}

/// One client session as the application sees it. Thread-safe.
class frame_sink {
 public:
  virtual ~frame_sink() = default;

  /// Queues a text frame for sending. Returns false when the frame was not
  /// queued: the session is closing, or the queue's byte bound would be
  /// exceeded, in which case the session closes itself with 4001 (slow
  /// consumer). Never blocks.
  virtual bool deliver(frame f) = 0;

  /// Sends the frames queued so far, then closes with `code` and `reason`
  /// (a fixed text from protocol/errors). Idempotent.
  virtual void close(std::uint16_t code, std::string_view reason) = 0;

  /// Bytes queued and not yet written.
  virtual std::size_t queued_bytes() const = 0;

  /// The queue's bound in bytes (deliveries beyond it close the session
  /// with 4001); producers of bulk data, like a resume's replay, pace
  /// themselves below it.
  virtual std::size_t max_queued_bytes() const = 0;
};

/// The application's side of one WebSocket session.
class connection_handler {
 public:
  virtual ~connection_handler() = default;
  /// A complete text (or binary) message, at most `max_message_size` bytes.
  virtual void on_message(std::string msg) = 0;
  /// The session ended (either side closed, error, or timeout). Called once;
  /// the sink accepts and drops frames afterwards.
  virtual void on_closed() = 0;
};

/// An HTTP request, reduced to what the application needs.
struct http_request {
  std::string method;        // "GET", "POST", …
  std::string target;        // path and query, as received
  std::string authorization; // the Authorization header, or empty
  std::string content_type;
  std::string origin;        // the Origin header, or empty
  std::string host;          // the Host header
  std::string last_event_id; // the Last-Event-ID header, or empty
  std::string remote;        // peer address, for logs and limits
  std::string body;          // at most `max_http_body` bytes
};

struct http_response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

/// Completes an HTTP request. Thread-safe; call exactly once.
using http_responder = std::function<void(http_response)>;

/// What the transport serves. Implemented by actors/gateway.
class application {
 public:
  virtual ~application() = default;

  /// A plain HTTP request (not an upgrade).
  virtual void handle_http(http_request req, http_responder respond) = 0;

  /// Asked before a WebSocket handshake: nullopt accepts, a response
  /// rejects (e.g. 404 for an unknown path).
  virtual std::optional<http_response>
  check_upgrade(const http_request& req) = 0;

  /// The handshake completed; the returned handler receives the messages.
  virtual std::shared_ptr<connection_handler>
  open(const http_request& req, std::shared_ptr<frame_sink> sink) = 0;
};

} // namespace tidings::transport
