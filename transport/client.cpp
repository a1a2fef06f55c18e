// Blocking clients built from async operations on a private io_context, so
// that every wait has a deadline. Not thread-safe: one caller at a time.
#include "transport/client.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/error.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <algorithm>
#include <optional>

namespace tidings::transport {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr std::chrono::seconds ws_connect_timeout{10};
constexpr std::chrono::seconds ws_send_timeout{10};
constexpr std::chrono::seconds ws_close_timeout{2};
constexpr std::uint64_t http_reply_limit = 64 << 20;

error_info fail(std::string code, std::string message) {
  return error_info{std::move(code), std::move(message)};
}

// Runs handlers until `done()` or `deadline`. Returns whether `done()`.
template <class Predicate>
bool run_until(net::io_context& ioc, Predicate done,
               clock_type::time_point deadline) {
  while (!done()) {
    auto now = clock_type::now();
    if (now >= deadline)
      return false;
    if (ioc.stopped())
      ioc.restart();
    if (ioc.run_one_for(deadline - now) == 0 && ioc.stopped() && !done())
      return false; // no work left that could make `done()` true
  }
  return true;
}

std::string host_header(const std::string& host, std::uint16_t port) {
  return host + ":" + std::to_string(port);
}

} // namespace

result<http_reply>
http_call(const std::string& host, std::uint16_t port,
          const std::string& method, const std::string& target,
          const std::vector<std::pair<std::string, std::string>>& headers,
          const std::string& body, std::chrono::milliseconds timeout) {
  const auto deadline = clock_type::now() + timeout;
  net::io_context ioc;
  beast::error_code ec;
  tcp::resolver resolver{ioc};
  auto endpoints = resolver.resolve(host, std::to_string(port), ec);
  if (ec)
    return fail("CONNECT", "cannot resolve " + host + ": " + ec.message());

  beast::tcp_stream stream{ioc};
  http::request<http::string_body> req;
  auto verb = http::string_to_verb(method);
  if (verb == http::verb::unknown)
    req.method_string(method);
  else
    req.method(verb);
  req.target(target);
  req.version(11);
  req.set(http::field::host, host_header(host, port));
  req.set(http::field::user_agent, "tidings");
  for (const auto& [name, value] : headers)
    req.set(name, value);
  req.body() = body;
  req.keep_alive(false);
  req.prepare_payload();

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(http_reply_limit);
  bool done = false;
  std::optional<error_info> error;
  auto finish = [&](std::string code, beast::error_code e) {
    error =
        fail(std::move(code),
             e == beast::error::timeout ? std::string{"timeout"} : e.message());
    done = true;
  };

  stream.expires_at(deadline);
  stream.async_connect(
      endpoints, [&](beast::error_code e, const tcp::endpoint&) {
        if (e)
          return finish("CONNECT", e);
        http::async_write(stream, req, [&](beast::error_code e, std::size_t) {
          if (e)
            return finish("IO", e);
          http::async_read(stream, buffer, parser,
                           [&](beast::error_code e, std::size_t) {
                             if (e)
                               return finish("IO", e);
                             done = true;
                           });
        });
      });
  ioc.run(); // every operation above expires at `deadline`
  if (!done)
    return fail("IO", "timeout");
  if (error)
    return *error;
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  http_reply reply;
  reply.status = parser.get().result_int();
  reply.body = std::move(parser.get().body());
  return reply;
}

// A read that times out stays pending; the next read() waits for the same
// operation, so the client stays usable after a TIMEOUT.
struct ws_client::impl {
  net::io_context ioc;
  std::optional<websocket::stream<beast::tcp_stream>> ws;
  beast::flat_buffer buffer;
  bool reading = false;
  std::optional<result<std::string>> pending; // a completed read
  std::optional<error_info> ended;            // CLOSED or IO, sticky

  void disconnect() {
    if (ws)
      beast::get_lowest_layer(*ws).close();
    // Let the cancelled operations finish before their stream goes away.
    ioc.restart();
    ioc.run_for(std::chrono::milliseconds(100));
    ws.reset();
    ioc.restart();
    reading = false;
    pending.reset();
    buffer.clear();
  }
};

ws_client::ws_client() : impl_(std::make_unique<impl>()) {}

ws_client::~ws_client() {
  close();
}

result<bool> ws_client::connect(const std::string& host, std::uint16_t port,
                                const std::string& target) {
  auto& m = *impl_;
  if (m.ws)
    m.disconnect();
  m.ended.reset();
  const auto deadline = clock_type::now() + ws_connect_timeout;
  beast::error_code ec;
  tcp::resolver resolver{m.ioc};
  auto endpoints = resolver.resolve(host, std::to_string(port), ec);
  if (ec)
    return fail("CONNECT", "cannot resolve " + host + ": " + ec.message());
  m.ws.emplace(m.ioc);
  auto& ws = *m.ws;

  bool done = false;
  std::optional<error_info> error;
  websocket::response_type res;
  beast::get_lowest_layer(ws).expires_at(deadline);
  beast::get_lowest_layer(ws).async_connect(
      endpoints, [&](beast::error_code e, const tcp::endpoint&) {
        if (e) {
          error = fail("CONNECT", e.message());
          done = true;
          return;
        }
        // The websocket stream keeps its own timers from here on.
        beast::get_lowest_layer(ws).expires_never();
        auto opt = websocket::stream_base::timeout::suggested(
            beast::role_type::client);
        opt.handshake_timeout = std::max<clock_type::duration>(
            deadline - clock_type::now(), std::chrono::milliseconds(1));
        ws.set_option(opt);
        ws.async_handshake(
            res, host_header(host, port), target, [&](beast::error_code e) {
              if (e) {
                error = fail("HANDSHAKE", "status " +
                                              std::to_string(res.result_int()) +
                                              ": " + e.message());
              }
              done = true;
            });
      });
  if (!run_until(
          m.ioc, [&done] { return done; }, deadline + std::chrono::seconds(1)))
    error = fail("CONNECT", "timeout");
  if (error) {
    m.disconnect();
    return *error;
  }
  ws.text(true);
  return true;
}

result<bool> ws_client::send(const std::string& text) {
  auto& m = *impl_;
  if (!m.ws)
    return fail("IO", "not connected");
  if (m.ended)
    return *m.ended;
  bool done = false;
  beast::error_code ec;
  m.ws->async_write(net::buffer(text), [&](beast::error_code e, std::size_t) {
    ec = e;
    done = true;
  });
  if (!run_until(
          m.ioc, [&done] { return done; },
          clock_type::now() + ws_send_timeout)) {
    // A write cannot be abandoned halfway: the stream is unusable now.
    m.disconnect();
    m.ended = fail("IO", "send timeout");
    return *m.ended;
  }
  if (ec)
    return fail("IO", ec.message());
  return true;
}

result<std::string> ws_client::read(std::chrono::milliseconds timeout) {
  auto& m = *impl_;
  if (!m.ws)
    return m.ended ? *m.ended : fail("IO", "not connected");
  if (!m.pending && !m.reading) {
    if (m.ended)
      return *m.ended;
    m.reading = true;
    m.ws->async_read(m.buffer, [&m](beast::error_code e, std::size_t) {
      m.reading = false;
      if (!e) {
        m.pending.emplace(beast::buffers_to_string(m.buffer.data()));
        m.buffer.consume(m.buffer.size());
        return;
      }
      // A close frame may arrive and the teardown after it still fail: a
      // Beast 1.74 server closes its socket after one read in teardown, so
      // a reset can follow the close frame. The frame is what counts.
      if (e == websocket::error::closed ||
          m.ws->reason().code != websocket::close_code::none) {
        const auto& r = m.ws->reason();
        std::string text = std::to_string(r.code);
        if (!r.reason.empty())
          text += " " + std::string(r.reason.data(), r.reason.size());
        m.ended = fail("CLOSED", std::move(text));
      } else {
        m.ended = fail("IO", e.message());
      }
      m.pending.emplace(*m.ended);
    });
  }
  if (!run_until(
          m.ioc, [&m] { return m.pending.has_value(); },
          clock_type::now() + timeout))
    return fail("TIMEOUT", "no message within the timeout");
  auto r = std::move(*m.pending);
  m.pending.reset();
  return r;
}

void ws_client::close() {
  auto& m = *impl_;
  if (!m.ws)
    return;
  if (!m.ended) {
    bool done = false;
    m.ws->async_close(websocket::close_code::normal,
                      [&](beast::error_code) { done = true; });
    run_until(
        m.ioc, [&done] { return done; }, clock_type::now() + ws_close_timeout);
    m.ended = fail("CLOSED", "closed by client");
  }
  m.disconnect();
}

} // namespace tidings::transport
