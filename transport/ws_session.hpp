// One WebSocket session: handshake answer, read loop, bounded send queue with
// batched writes, keepalive, close handshake.
//
// Framing is the session's own (transport/ws_frame): a session owns every
// byte written to its socket, so it can put many queued frames into one
// gather write (one syscall), and control frames (pong, ping, close) go
// between batches, never inside one.
//
// Executor: the session's executor (one I/O thread per io_context, so its
// handlers never run concurrently). Every member is touched only there,
// except the inbox (guarded by `inbox_mutex_`), `queued_` and `closing_`,
// which deliver()/close() use from any thread.
// The application never holds the session: it gets a frame_sink holding a
// weak_ptr, so a session ends with its I/O whatever the application keeps.
//
// Memory: an idle session holds no read buffer. Reads wait for readability
// and then read into a buffer owned by the I/O thread; only bytes of an
// incomplete frame or message are kept per session.
//
// Life: run() registers the session and answers the handshake (101, or 400 /
// 426 for a malformed one). Rejected sessions (origin, connection limit) then
// close with their code; the others call application::open and read until
// the connection ends. end() runs exactly once, from whatever ended the
// session, and calls connection_handler::on_closed.
#pragma once

#include "protocol/errors.hpp"
#include "transport/seam.hpp"
#include "transport/shared_state.hpp"
#include "transport/ws_frame.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tidings::transport {

class ws_wake_service;

class ws_session : public session_base,
                   public std::enable_shared_from_this<ws_session> {
 public:
  using request_type =
      boost::beast::http::request<boost::beast::http::string_body>;

  ws_session(boost::asio::ip::tcp::socket&& socket,
             std::shared_ptr<shared_state> state);
  ~ws_session();

  /// Answers the handshake for `req`. With `reject`, the handshake is
  /// accepted and the session closes with that reason without opening.
  /// Call once, on the session's executor.
  /// `early` holds bytes the HTTP layer read past the request head (a
  /// client that did not wait for the 101); they are parsed first.
  void run(const request_type& req, http_request info,
           std::optional<protocol::close_reason> reject,
           std::string early = {});

  /// frame_sink::deliver. Any thread.
  bool deliver(frame f);

  /// frame_sink::close. Any thread; the first call wins.
  void close(std::uint16_t code, std::string_view reason) override;

  /// frame_sink::queued_bytes. Any thread.
  std::size_t queued_bytes() const;
  std::size_t max_queued_bytes() const { return max_queue_; }

  /// Ends the session without further I/O. Only while no I/O thread runs
  /// (the server's io_context is stopped and run() has returned).
  void abandon() override;

 private:
  enum class phase { handshake, open, closing, done };

  // One frame to send: a shared payload (data) or an owned one (control).
  struct out_frame {
    frame payload;
    wsproto::opcode op = wsproto::opcode::text;
  };

  void on_handshake_written(boost::beast::error_code ec, std::size_t);
  void open_session();
  void wait_readable();
  void on_readable(boost::beast::error_code ec);
  // Parses the frames in [p, p+n) and returns how many bytes were used;
  // the rest is an incomplete frame. Stops early when the session ends.
  std::size_t consume(std::uint8_t* p, std::size_t n);
  void on_frame(const wsproto::frame_header& h, std::uint8_t* payload);
  void on_control(wsproto::opcode op, std::string_view payload);
  void protocol_failure(protocol::close_reason reason);

  friend class ws_wake_service;
  void flush();      // woken by deliver(): runs the write loop if idle
  bool take_inbox(); // moves the inbox to queue_; false when it was empty
  void send_control(wsproto::opcode op, std::string payload);
  struct batch_storage {
    std::vector<std::array<std::uint8_t, wsproto::max_server_header>> headers;
    std::vector<boost::asio::const_buffer> buffers;
  };
  void pump();        // the write loop: batches until nothing is left
  void plan_batch();
  std::size_t build_batch(batch_storage& out, std::size_t skip = 0) const;
  void write_batch(); // one gather write of control frames, then data
  void on_write(boost::beast::error_code ec, std::size_t bytes);
  void written();     // the batch in flight completed

  void arm_keepalive();
  void on_keepalive();
  void begin_close(std::uint16_t code, std::string reason, bool drop_backlog);
  void send_close_frame();
  void drop_queue();
  void end();

  boost::asio::ip::tcp::socket socket_;
  const boost::asio::any_io_executor ex_;
  const std::shared_ptr<shared_state> state_;
  const std::size_t max_queue_;
  boost::asio::steady_timer timer_; // handshake, keepalive, then close
  std::uint64_t timer_gen_ = 0;     // a wait whose generation is old is void
  std::unique_ptr<http_request> info_; // until open; then released
  std::shared_ptr<connection_handler> handler_;
  shared_state::ticket ticket_;
  bool registered_ = false;

  phase phase_ = phase::handshake;
  std::optional<protocol::close_reason> reject_;
  std::optional<std::uint16_t> close_code_; // set once a close is requested
  std::string close_text_;
  bool close_sent_ = false;    // our close frame is queued
  bool close_written_ = false; // … and written
  bool close_received_ = false;
  bool failing_ = false;       // a protocol error: input is ignored
  bool dropping_ = false;      // slow consumer: data frames are dropped

  // Reading.
  bool waiting_read_ = false;
  bool got_data_ = false;      // something arrived since the last tick
  bool ping_sent_ = false;     // keepalive ping outstanding
  std::string partial_;        // an incomplete frame's bytes, if any
  std::string message_;        // a fragmented message being assembled
  bool in_message_ = false;
  wsproto::opcode message_op_ = wsproto::opcode::text;

  // Writing. Control frames go before data frames, between batches.
  std::vector<out_frame> control_;
  std::vector<frame> queue_; // [queue_head_, end) waits or is being written
  std::size_t queue_head_ = 0;
  bool writing_ = false;
  std::size_t batch_frames_ = 0;   // data frames in the write in flight
  std::size_t batch_bytes_ = 0;    // their payload bytes
  std::size_t batch_control_ = 0;  // control frames in the write in flight
  std::unique_ptr<batch_storage> async_batch_; // a write the kernel deferred
  std::string handshake_;          // the 101 answer while it is written

  ws_wake_service* const wake_; // of the session's io_context
  std::mutex inbox_mutex_;
  std::vector<frame> inbox_; // delivered, not yet seen by the executor
  std::vector<frame> taken_; // the executor's side of an inbox swap
  bool armed_ = false;       // a flush is posted or the write loop runs

  std::atomic<std::size_t> queued_{0}; // payload bytes inbox + queue + write
  std::atomic<bool> closing_{false};   // deliver() refuses from now on
  std::atomic<bool> overflowed_{false}; // slow consumer: drop, don't send
};

} // namespace tidings::transport
