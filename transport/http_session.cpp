#include "transport/http_session.hpp"

#include "transport/weak_sink.hpp"

#include "protocol/errors.hpp"
#include "protocol/publish_request.hpp"
#include "transport/origin.hpp"
#include "transport/ws_session.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include <algorithm>
#include <atomic>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>

namespace tidings::transport {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// After a response that ends the connection, unread request bytes are
// drained for a little while so that closing does not send a reset that
// could destroy the response before the client reads it.
constexpr std::chrono::seconds linger_time{2};
constexpr std::size_t linger_bytes = 1 << 20;

bool iequals(std::string_view a, std::string_view b) {
  return beast::iequals(a, b);
}

// The JSON error body for `code`, from the one table in protocol/errors.
std::string error_body(protocol::error_code code) {
  return protocol::encode_http_error(code);
}

template <class Field>
std::string header(const http::request<http::string_body>& req, Field f) {
  auto it = req.find(f);
  return it == req.end() ? std::string{} : std::string(it->value());
}

void append_hex(std::string& out, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  char buf[2 * sizeof(std::size_t)];
  std::size_t i = sizeof buf;
  do {
    buf[--i] = digits[n & 0xf];
    n >>= 4;
  } while (n != 0);
  out.append(buf + i, sizeof buf - i);
}

} // namespace

http_session::http_session(tcp::socket&& socket,
                           std::shared_ptr<shared_state> state)
    : stream_(std::move(socket)), strand_(stream_.get_executor()),
      state_(std::move(state)), deadline_timer_(strand_) {
  beast::error_code ec;
  auto ep = stream_.socket().remote_endpoint(ec);
  if (!ec)
    remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
  // Small frames are the norm; do not let Nagle hold them back.
  stream_.socket().set_option(tcp::no_delay(true), ec);
}

http_session::~http_session() {
  // Normally end_stream() ran on the strand; this covers a session dropped
  // with a stopped io_context.
  if (streamer_)
    end_stream();
}

void http_session::run() {
  net::dispatch(strand_, beast::bind_front_handler(&http_session::do_read,
                                                   shared_from_this()));
}

void http_session::do_read() {
  const auto& opts = state_->options();
  parser_.emplace();
  parser_->body_limit(opts.max_http_body);
  parser_->header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(
      opts.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
  // Also bounds how long an idle keep-alive connection stays open.
  stream_.expires_after(opts.http_timeout);
  http::async_read_header(
      stream_, buffer_, *parser_,
      beast::bind_front_handler(&http_session::on_header, shared_from_this()));
}

void http_session::on_header(beast::error_code ec, std::size_t bytes) {
  if (ec || parser_->is_done()) {
    on_read(ec, bytes);
    return;
  }
  // curl and others wait a second for this before sending a larger body.
  if (iequals(header(parser_->get(), http::field::expect), "100-continue")) {
    static constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
    net::async_write(
        stream_, net::buffer(go_on.data(), go_on.size()),
        [self = shared_from_this()](beast::error_code e, std::size_t n) {
          if (e)
            self->on_read(e, n);
          else
            self->read_body();
        });
    return;
  }
  read_body();
}

void http_session::read_body() {
  http::async_read(
      stream_, buffer_, *parser_,
      beast::bind_front_handler(&http_session::on_read, shared_from_this()));
}

void http_session::on_read(beast::error_code ec, std::size_t) {
  if (ec == http::error::end_of_stream) {
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.close();
    return;
  }
  // From here the request's answer and its writing get their own deadline.
  deadline_ = std::chrono::steady_clock::now() + state_->options().http_timeout;
  if (ec == http::error::body_limit) {
    counter_set::add(state_->counters().http_requests);
    version_ = parser_->get().version();
    response_type res{http::status::payload_too_large, version_};
    res.set(http::field::server, "tidings");
    res.set(http::field::content_type, "application/json");
    res.body() = error_body(protocol::error_code::payload_too_large);
    send(std::move(res), true);
    return;
  }
  if (ec == http::error::header_limit) {
    // protocol/errors has no entry for 431, so the body stays empty.
    counter_set::add(state_->counters().http_requests);
    response_type res{http::status::request_header_fields_too_large, 11};
    res.set(http::field::server, "tidings");
    send(std::move(res), true);
    return;
  }
  if (ec) { // timeout, reset, malformed request
    stream_.close();
    return;
  }
  counter_set::add(state_->counters().http_requests);
  version_ = parser_->get().version();
  keep_alive_ = parser_->get().keep_alive();
  if (websocket::is_upgrade(parser_->get()))
    start_upgrade();
  else
    start_request();
}

http_request http_session::reduce_request() {
  auto& req = parser_->get();
  http_request r;
  r.method = std::string(req.method_string());
  r.target = std::string(req.target());
  r.authorization = header(req, http::field::authorization);
  r.content_type = header(req, http::field::content_type);
  r.origin = header(req, http::field::origin);
  r.host = header(req, http::field::host);
  r.last_event_id = header(req, std::string_view{"Last-Event-ID"});
  r.remote = remote_;
  r.body = std::move(req.body());
  return r;
}

void http_session::start_upgrade() {
  auto info = reduce_request();
  std::optional<protocol::close_reason> reject;
  if (!info.origin.empty() && !origin_allowed(state_->options().allowed_origins,
                                              info.origin, info.host)) {
    // Accepted and then closed, so that browsers see the reason.
    reject = protocol::close_reason::origin_not_allowed;
  } else if (auto res = state_->app().check_upgrade(info)) {
    bool close_after = true;
    send(to_response(std::move(*res), close_after), true);
    return;
  }
  stream_.expires_never();
  std::string early(static_cast<const char*>(buffer_.data().data()),
                    buffer_.size());
  buffer_.consume(buffer_.size());
  auto session = std::make_shared<ws_session>(stream_.release_socket(), state_);
  session->run(parser_->release(), std::move(info), reject, std::move(early));
}

void http_session::start_request() {
  waiting_ = true;
  const auto seq = ++seq_;
  deadline_timer_.expires_after(state_->options().answer_timeout);
  deadline_timer_.async_wait(beast::bind_front_handler(
      &http_session::on_deadline, shared_from_this(), seq));
  auto once = std::make_shared<std::atomic<bool>>(false);
  // Holds nothing but a weak_ptr: the application may keep the responder
  // after the server is gone (an executor copy would then outlive its
  // io_context).
  http_responder respond = [weak = weak_from_this(), seq,
                            once](http_response res) {
    if (once->exchange(true)) {
      if (res.stream)
        res.stream->on_closed();
      return;
    }
    auto self = weak.lock();
    if (!self) { // the session timed out or the peer went away
      if (res.stream)
        res.stream->on_closed();
      return;
    }
    auto ex = self->strand_;
    net::post(ex,
              [self = std::move(self), seq, res = std::move(res)]() mutable {
                self->on_answer(seq, std::move(res));
              });
  };
  state_->app().handle_http(reduce_request(), std::move(respond));
}

void http_session::on_deadline(std::uint64_t seq, beast::error_code ec) {
  if (ec || !waiting_ || seq != seq_)
    return;
  waiting_ = false;
  stream_.close();
}

void http_session::on_answer(std::uint64_t seq, http_response res) {
  if (!waiting_ || seq != seq_) {
    if (res.stream)
      res.stream->on_closed();
    return;
  }
  waiting_ = false;
  deadline_timer_.cancel();
  deadline_ = std::chrono::steady_clock::now() + state_->options().http_timeout;
  if (res.stream)
    return start_stream(std::move(res));
  bool close_after = !keep_alive_;
  auto r = to_response(std::move(res), close_after);
  send(std::move(r), close_after);
}

http_session::response_type http_session::to_response(http_response res,
                                                      bool& close_after) const {
  response_type r;
  r.version(version_);
  // Informational answers are the transport's business, not the
  // application's; 204 and 304 carry no body (Beast throws otherwise).
  r.result(res.status >= 200 && res.status <= 999 ? res.status : 500);
  if (r.result() == http::status::no_content ||
      r.result() == http::status::not_modified)
    res.body.clear();
  r.set(http::field::server, "tidings");
  if (!res.content_type.empty())
    r.set(http::field::content_type, res.content_type);
  for (auto& [name, value] : res.headers) {
    if (name.empty() || value.find_first_of("\r\n") != std::string::npos ||
        name.find_first_of("\r\n: ") != std::string::npos)
      continue;
    if (iequals(name, "content-length") || iequals(name, "transfer-encoding"))
      continue; // computed here
    if (iequals(name, "connection")) {
      if (iequals(value, "close"))
        close_after = true;
      continue;
    }
    if (iequals(name, "content-type") || iequals(name, "server"))
      r.set(name, value);
    else
      r.insert(name, value);
  }
  r.body() = std::move(res.body);
  return r;
}

void http_session::send(response_type res, bool close_after) {
  res.keep_alive(!close_after);
  res.prepare_payload();
  res_ = std::move(res);
  stream_.expires_at(deadline_);
  http::async_write(stream_, *res_,
                    beast::bind_front_handler(&http_session::on_write,
                                              shared_from_this(), close_after));
}

void http_session::on_write(bool close_after, beast::error_code ec,
                            std::size_t) {
  res_.reset();
  if (ec) {
    stream_.close();
    return;
  }
  if (close_after)
    linger();
  else
    do_read();
}

void http_session::linger() {
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (ec) {
    stream_.close();
    return;
  }
  drained_ = 0;
  stream_.expires_after(linger_time);
  stream_.async_read_some(
      net::buffer(drain_),
      beast::bind_front_handler(&http_session::on_linger, shared_from_this()));
}

void http_session::on_linger(beast::error_code ec, std::size_t bytes) {
  drained_ += bytes;
  if (ec || drained_ >= linger_bytes) {
    stream_.close();
    return;
  }
  stream_.async_read_some(
      net::buffer(drain_),
      beast::bind_front_handler(&http_session::on_linger, shared_from_this()));
}

} // namespace tidings::transport

namespace tidings::transport {

// ---------------------------------------------------------------- streams

void http_session::start_stream(http_response res) {
  auto handler = std::move(res.stream);
  res.stream = nullptr;
  ticket_ = state_->enter(weak_from_this(), true);
  registered_ = true;
  if (state_->stopping() || !ticket_.admitted) {
    state_->leave(ticket_);
    registered_ = false;
    counter_set::add(state_->counters().rejected_connections);
    handler->on_closed();
    response_type r{http::status::service_unavailable, version_};
    r.set(http::field::server, "tidings");
    r.set(http::field::content_type, "application/json");
    r.body() = error_body(protocol::error_code::unavailable);
    send(std::move(r), true);
    return;
  }
  counter_set::add(state_->counters().connections_total);
  streamer_ = std::move(handler);
  chunked_ = version_ >= 11;
  std::string first = std::move(res.body);
  bool close_after = true;
  auto r = to_response(std::move(res), close_after);
  r.body().clear();
  if (chunked_)
    r.chunked(true);
  r.keep_alive(false); // the connection ends with the stream
  std::ostringstream head;
  head << r.base();
  out_ = head.str();
  if (!first.empty()) {
    if (chunked_) {
      append_hex(out_, first.size());
      out_ += "\r\n";
    }
    out_ += first;
    if (chunked_)
      out_ += "\r\n";
  }
  out_payload_ = 0;
  stream_writing_ = true;
  stream_.expires_after(state_->options().http_timeout);
  net::async_write(stream_, net::buffer(out_),
                   beast::bind_front_handler(&http_session::on_head_written,
                                             shared_from_this()));
}

void http_session::on_head_written(beast::error_code ec, std::size_t) {
  stream_writing_ = false;
  std::string().swap(out_);
  if (ec || stream_done_) {
    end_stream();
    return;
  }
  stream_.expires_never();
  stream_open_ = true;
  watch_peer();
  streamer_->on_open(
      std::make_shared<weak_sink<http_session>>(weak_from_this()));
  stream_flush();
}

// A stream's client sends nothing; a read stays pending so that its going
// away (EOF, reset) ends the stream at once. Whatever it does send is
// dropped.
void http_session::watch_peer() {
  stream_.socket().async_read_some(
      net::buffer(drain_),
      [self = shared_from_this()](beast::error_code ec, std::size_t) {
        if (self->stream_done_)
          return;
        if (ec) {
          self->end_stream();
          return;
        }
        self->watch_peer();
      });
}

bool http_session::deliver(frame f) {
  if (!f || closing_.load(std::memory_order_acquire))
    return false;
  const auto n = f->size();
  const auto before = queued_.fetch_add(n, std::memory_order_acq_rel);
  if (before + n > max_queued_bytes()) {
    queued_.fetch_sub(n, std::memory_order_acq_rel);
    if (!closing_.exchange(true)) {
      // A slow consumer: nothing more is written, the connection ends.
      counter_set::add(state_->counters().slow_consumer_closes);
      net::post(strand_, [self = shared_from_this()] { self->end_stream(); });
    }
    return false;
  }
  bool post = false;
  {
    std::lock_guard<std::mutex> lock(inbox_mutex_);
    inbox_.push_back(std::move(f));
    post = !armed_;
    armed_ = true;
  }
  if (post)
    net::post(strand_, [self = shared_from_this()] { self->stream_flush(); });
  return true;
}

std::size_t http_session::queued_bytes() const {
  return queued_.load(std::memory_order_acquire);
}

std::size_t http_session::max_queued_bytes() const {
  return state_->options().max_queue_bytes;
}

void http_session::close(std::uint16_t, std::string_view) {
  if (closing_.exchange(true))
    return;
  net::post(strand_, [self = shared_from_this()] {
    self->stream_closing_ = true;
    self->stream_flush();
  });
}

void http_session::abandon() {
  end_stream();
}

void http_session::stream_flush() {
  if (stream_done_ || !stream_open_ || stream_writing_)
    return;
  std::vector<frame> taken;
  {
    std::lock_guard<std::mutex> lock(inbox_mutex_);
    taken.swap(inbox_);
    armed_ = false;
  }
  std::size_t n = 0;
  for (const auto& f : taken)
    n += f->size();
  if (n == 0) {
    if (!stream_closing_)
      return;
    // Everything queued before close() is written: the last chunk, then
    // the end of the connection.
    stream_writing_ = true;
    out_ = chunked_ ? "0\r\n\r\n" : "";
    stream_.expires_after(state_->options().http_timeout);
    net::async_write(
        stream_, net::buffer(out_),
        [self = shared_from_this()](beast::error_code, std::size_t) {
          self->stream_writing_ = false;
          self->end_stream();
        });
    return;
  }
  out_.clear();
  out_.reserve(n + 24);
  if (chunked_) {
    append_hex(out_, n);
    out_ += "\r\n";
  }
  for (const auto& f : taken)
    out_ += *f;
  if (chunked_)
    out_ += "\r\n";
  out_payload_ = n;
  stream_writing_ = true;
  auto& c = state_->counters();
  counter_set::add(c.frames_out, taken.size());
  stream_.expires_after(state_->options().http_timeout);
  net::async_write(stream_, net::buffer(out_),
                   beast::bind_front_handler(&http_session::on_stream_write,
                                             shared_from_this()));
}

void http_session::on_stream_write(beast::error_code ec, std::size_t) {
  stream_writing_ = false;
  queued_.fetch_sub(out_payload_, std::memory_order_acq_rel);
  counter_set::add(state_->counters().bytes_out, out_payload_);
  out_payload_ = 0;
  if (ec || stream_done_) { // a stalled client (timeout) or a reset
    end_stream();
    return;
  }
  stream_.expires_never();
  if (out_.capacity() > 64 * 1024)
    std::string().swap(out_);
  stream_flush();
}

void http_session::end_stream() {
  if (stream_done_ || !streamer_)
    return;
  stream_done_ = true;
  closing_.store(true);
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream_.socket().close(ignored);
  std::vector<frame> pending;
  {
    std::lock_guard<std::mutex> lock(inbox_mutex_);
    pending.swap(inbox_);
  }
  std::size_t n = 0;
  for (const auto& f : pending)
    n += f->size();
  if (n)
    queued_.fetch_sub(n, std::memory_order_acq_rel);
  if (registered_) {
    registered_ = false;
    state_->leave(ticket_);
  }
  auto h = std::move(streamer_);
  h->on_closed();
}

} // namespace tidings::transport
