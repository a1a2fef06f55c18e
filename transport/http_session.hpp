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
// connection), and again answering plus writing it. While the application
// works, the deadline timer keeps the session alive; on expiry the
// connection is closed without an answer.
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
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

namespace tidings::transport {

class http_session : public std::enable_shared_from_this<http_session> {
 public:
  http_session(boost::asio::ip::tcp::socket&& socket,
               std::shared_ptr<shared_state> state);

  /// Starts reading. Call once, on the strand.
  void run();

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
  std::array<char, 4096> drain_{}; // for linger()
  std::size_t drained_ = 0;
};

} // namespace tidings::transport
