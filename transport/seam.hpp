// The seam between transport/ (Beast) and the application (actors/). No
// Beast and no CAF headers: both sides include this and nothing of the other.
//
// Threads: transport calls `application`, `connection_handler` and
// `stream_handler` from its I/O threads; for one session, calls are never
// concurrent and arrive in order. The application calls `frame_sink` from
// any thread.
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

/// The application's side of a streamed HTTP answer (Server-Sent Events).
///
/// The head goes out with `Transfer-Encoding: chunked` (HTTP/1.1; HTTP/1.0
/// gets a body that ends when the connection closes), then every frame
/// delivered to the sink is written as it is (one chunk per write, many
/// frames per chunk). The sink behaves as for a WebSocket session:
///  - deliver() never blocks; beyond `max_queue_bytes` queued the stream
///    ends at once (slow consumer: nothing more is written, counted in
///    slow_consumer_closes) and deliver() returns false;
///  - close() writes what is queued, then the last chunk, and ends the
///    connection; code and reason are not sent (HTTP has no place for
///    them).
/// Timeouts: http_timeout bounds each write (a client that stops reading
/// is dropped), never the stream's life; keeping a quiet stream alive is
/// the application's business (heartbeat comments), as is deciding when a
/// stream is idle. Streams count against max_connections (beyond it the
/// answer becomes 503) and end with the server's stop().
class stream_handler {
 public:
  virtual ~stream_handler() = default;
  /// The head (and the response body, as the first chunk) is written;
  /// `sink` carries the rest. Called at most once, before on_closed, on a
  /// transport I/O thread.
  virtual void on_open(std::shared_ptr<frame_sink> sink) = 0;
  /// The stream ended: the client went away, a write stalled or
  /// overflowed, close() finished, the server stops, or the stream was
  /// refused before on_open (connection limit, session already gone).
  /// Called exactly once for every response that carried the handler; the
  /// sink accepts and drops frames afterwards. Any thread.
  virtual void on_closed() = 0;
};

struct http_response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  /// Set: answer with a stream (see stream_handler); `body` is its first
  /// chunk.
  std::shared_ptr<stream_handler> stream = nullptr;
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
