// One HTTP/1.1 connection: reads a request, hands it to the application,
// writes the answer, and repeats while keep-alive holds (no pipelining: the
// next request is read after the answer is written). A WebSocket upgrade
// hands the socket to a ws_session. "Expect: 100-continue" is answered
// once the head is accepted (curl otherwise waits a second for it).
//
// Executor: the connection's strand (the executor of its socket); every
// member is touched only there. The responder given to the application may
// be called from any thread: it posts to the strand and holds only a
// weak_ptr, so a late answer to a dead session is dropped.
//
// Timeouts: http_timeout bounds reading a request (and so an idle keep-alive
// connection), and again writing its answer. The application gets
// answer_timeout to answer (long-poll waits); on expiry the connection is
// closed without an answer.
//
// Streams (an answer with a stream_handler, seam.hpp): the head goes out,
// then the session owns a bounded queue like a WebSocket session's:
// deliver() (any thread) appends under `inbox_mutex_` and posts a flush;
// the strand writes everything queued as one chunk. A read stays pending
// to notice the client going away; http_timeout bounds each write, nothing
// bounds the stream's life. A streaming session is registered in
// shared_state (max_connections, stop()).
#pragma once

#include "transport/seam.hpp"
#include "transport/shared_state.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tidings::transport {

class http_session : public session_base,
                     public std::enable_shared_from_this<http_session> {
 public:
  http_session(boost::asio::ip::tcp::socket&& socket,
               std::shared_ptr<shared_state> state);
  ~http_session() override;

  /// Starts reading. Call once, on the strand.
  void run();

  /// frame_sink of a stream. Any thread.
  bool deliver(frame f);
  std::size_t queued_bytes() const;
  std::size_t max_queued_bytes() const;

  /// session_base (and frame_sink::close of a stream): ends the stream after
  /// what is queued. Any thread.
  void close(std::uint16_t code, std::string_view reason) override;
  void abandon() override;

 private:
  using request_parser =
      boost::beast::http::request_parser<boost::beast::http::string_body>;
  using response_type =
      boost::beast::http::response<boost::beast::http::string_body>;

  void do_read();
  void on_header(boost::beast::error_code ec, std::size_t bytes);
  void read_body();
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  void start_upgrade();
  void start_request();
  void on_answer(std::uint64_t seq, http_response res);
  void on_deadline(std::uint64_t seq, boost::beast::error_code ec);
  void send(response_type res, bool close_after);
  void on_write(bool close_after, boost::beast::error_code ec, std::size_t);
  void linger();
  void on_linger(boost::beast::error_code ec, std::size_t bytes);
  http_request reduce_request(); // moves the body out of parser_
  response_type to_response(http_response res, bool& close_after) const;

  // Streams.
  void start_stream(http_response res);
  void on_head_written(boost::beast::error_code ec, std::size_t);
  void watch_peer();
  void stream_flush();
  void on_stream_write(boost::beast::error_code ec, std::size_t);
  void end_stream();

  boost::beast::tcp_stream stream_;
  const boost::asio::any_io_executor strand_;
  const std::shared_ptr<shared_state> state_;
  boost::beast::flat_buffer buffer_;
  std::optional<request_parser> parser_;
  std::optional<response_type> res_;
  boost::asio::steady_timer deadline_timer_;
  std::chrono::steady_clock::time_point deadline_;
  std::string remote_;
  std::uint64_t seq_ = 0;   // numbers requests; a stale answer is ignored
  bool waiting_ = false;    // the application has the current request
  bool keep_alive_ = false; // of the current request
  unsigned version_ = 11;
  std::array<char, 4096> drain_{}; // for linger() and a stream's reads
  std::size_t drained_ = 0;

  // Streams: the strand's side.
  std::shared_ptr<stream_handler> streamer_; // set once streaming
  shared_state::ticket ticket_;
  bool registered_ = false;
  bool stream_open_ = false; // the head is written
  bool stream_writing_ = false;
  bool stream_closing_ = false; // close(): last chunk after the queue
  bool stream_done_ = false;
  bool chunked_ = true;         // HTTP/1.1 (1.0: the body ends with the
                                // connection)
  std::string out_;             // the write in flight
  std::size_t out_payload_ = 0; // queued bytes it carries
  // Any thread.
  std::mutex inbox_mutex_;
  std::vector<frame> inbox_;
  bool armed_ = false; // a flush is posted
  std::atomic<std::size_t> queued_{0};
  std::atomic<bool> closing_{false};
};

} // namespace tidings::transport
