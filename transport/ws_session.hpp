// One WebSocket session: handshake, read loop, bounded send queue, close.
//
// Executor: the session's strand (the executor of the socket it was built
// from). Every member is touched only there, except `queued_` and
// `closing_`, which deliver()/close() use from any thread before posting.
// The application never holds the session: it gets a frame_sink that holds a
// weak_ptr, so a session ends with its I/O whatever the application keeps.
//
// Life: run() registers the session and accepts the handshake. Rejected
// sessions (origin, connection limit) then close with their code; the others
// call application::open and read until the connection ends. end() runs
// exactly once, from whatever ended the session, and calls
// connection_handler::on_closed.
#pragma once

#include "protocol/errors.hpp"
#include "transport/seam.hpp"
#include "transport/shared_state.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace tidings::transport {

class ws_session : public std::enable_shared_from_this<ws_session> {
 public:
  using request_type =
      boost::beast::http::request<boost::beast::http::string_body>;

  ws_session(boost::asio::ip::tcp::socket&& socket,
             std::shared_ptr<shared_state> state);
  ~ws_session();

  /// Starts the handshake for `req`. With `reject`, the handshake is
  /// accepted and the session closes with that reason without opening.
  /// Call once, on the strand.
  void run(request_type req, http_request info,
           std::optional<protocol::close_reason> reject);

  /// frame_sink::deliver. Any thread.
  bool deliver(frame f);

  /// frame_sink::close. Any thread; the first call wins.
  void close(std::uint16_t code, std::string_view reason);

  /// frame_sink::queued_bytes. Any thread.
  std::size_t queued_bytes() const;
  std::size_t max_queued_bytes() const { return max_queue_; }

  /// Ends the session without further I/O. Only while no I/O thread runs
  /// (the server's io_context is stopped and run() has returned).
  void abandon();

 private:
  enum class phase { handshake, open, closing, done };

  void on_accept(boost::beast::error_code ec);
  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  void on_deliver(frame f);
  void do_write();
  void on_write(boost::beast::error_code ec, std::size_t bytes);
  void begin_close(std::uint16_t code, std::string reason, bool drop_backlog);
  void start_close();
  void on_close(boost::beast::error_code ec);
  void drop_queue();
  void end();

  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  const boost::asio::any_io_executor strand_;
  const std::shared_ptr<shared_state> state_;
  const std::size_t max_queue_;
  boost::beast::flat_buffer buffer_;
  boost::asio::steady_timer close_timer_;
  request_type req_;
  http_request info_;
  std::shared_ptr<connection_handler> handler_;
  shared_state::ticket ticket_;
  bool registered_ = false;

  phase phase_ = phase::handshake;
  std::optional<protocol::close_reason> reject_;
  std::optional<std::uint16_t> close_code_; // set once a close is requested
  std::string close_text_;
  bool reading_ = false;
  bool dropping_ = false;   // slow consumer: frames still arriving are dropped
  std::deque<frame> queue_; // waiting; the frame being written is in_flight_
  frame in_flight_;

  std::atomic<std::size_t> queued_{0}; // bytes in queue_, in_flight_, posts
  std::atomic<bool> closing_{false};   // deliver() refuses from now on
};

} // namespace tidings::transport
