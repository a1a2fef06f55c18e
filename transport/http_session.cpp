#include "transport/http_session.hpp"

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
  deadline_timer_.expires_at(deadline_);
  deadline_timer_.async_wait(beast::bind_front_handler(
      &http_session::on_deadline, shared_from_this(), seq));
  auto once = std::make_shared<std::atomic<bool>>(false);
  // Holds nothing but a weak_ptr: the application may keep the responder
  // after the server is gone (an executor copy would then outlive its
  // io_context).
  http_responder respond = [weak = weak_from_this(), seq,
                            once](http_response res) {
    if (once->exchange(true))
      return;
    auto self = weak.lock();
    if (!self)
      return; // the session timed out or the peer went away
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
  if (!waiting_ || seq != seq_)
    return;
  waiting_ = false;
  deadline_timer_.cancel();
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
