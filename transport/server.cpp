// The listener and server::impl. One io_context per I/O thread, each run by
// exactly that thread, so a session's handlers never run concurrently and
// need no strand; the listener hands connections to the contexts in turn.
#include "transport/server.hpp"

#include "protocol/errors.hpp"
#include "transport/http_session.hpp"
#include "transport/shared_state.hpp"
#include "transport/ws_session.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/bind_handler.hpp>

#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

namespace tidings::transport {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// After stop() asks every WebSocket session to close, how long they get to
// finish the close handshake before the io_context is stopped anyway.
constexpr std::chrono::milliseconds stop_grace{1500};

// Accepts connections and starts an http_session for each.
// Executor: its own strand; stop() posts there.
class listener : public std::enable_shared_from_this<listener> {
 public:
  listener(std::vector<net::io_context*> iocs,
           std::shared_ptr<shared_state> state)
      : iocs_(std::move(iocs)), acceptor_(*iocs_.front()),
        retry_(acceptor_.get_executor()), state_(std::move(state)) {}

  /// Binds; call before run(), from one thread.
  std::optional<std::string> open(const std::string& host, std::uint16_t port) {
    beast::error_code ec;
    tcp::resolver resolver{*iocs_.front()};
    auto results = resolver.resolve(host, std::to_string(port),
                                    tcp::resolver::passive, ec);
    if (ec || results.empty())
      return "cannot resolve " + host + ": " + ec.message();
    tcp::endpoint ep = results.begin()->endpoint();
    acceptor_.open(ep.protocol(), ec);
    if (!ec)
      acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec)
      acceptor_.bind(ep, ec);
    if (!ec)
      acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      beast::error_code ignored;
      acceptor_.close(ignored);
      return "cannot listen on " + host + ":" + std::to_string(port) + ": " +
             ec.message();
    }
    port_ = acceptor_.local_endpoint(ec).port();
    return std::nullopt;
  }

  std::uint16_t port() const { return port_; }

  void run() {
    net::dispatch(
        acceptor_.get_executor(),
        beast::bind_front_handler(&listener::do_accept, shared_from_this()));
  }

  void stop() {
    net::post(acceptor_.get_executor(), [self = shared_from_this()] {
      self->stopped_ = true;
      beast::error_code ignored;
      self->acceptor_.close(ignored);
      self->retry_.cancel();
    });
  }

 private:
  void do_accept() {
    if (stopped_)
      return;
    auto& ioc = *iocs_[next_++ % iocs_.size()];
    acceptor_.async_accept(
        ioc,
        beast::bind_front_handler(&listener::on_accept, shared_from_this()));
  }

  void on_accept(beast::error_code ec, tcp::socket socket) {
    if (stopped_ || ec == net::error::operation_aborted)
      return;
    if (ec) {
      // E.g. out of file descriptors: retrying at once would spin.
      retry_.expires_after(std::chrono::milliseconds(50));
      retry_.async_wait([self = shared_from_this()](beast::error_code e) {
        if (!e)
          self->do_accept();
      });
      return;
    }
    std::make_shared<http_session>(std::move(socket), state_)->run();
    do_accept();
  }

  std::vector<net::io_context*> iocs_;
  std::size_t next_ = 0;
  tcp::acceptor acceptor_;
  net::steady_timer retry_;
  std::shared_ptr<shared_state> state_;
  std::uint16_t port_ = 0;
  bool stopped_ = false;
};

} // namespace

struct server::impl {
  using work_guard = net::executor_work_guard<net::io_context::executor_type>;

  // Declared first so that they are destroyed last: every I/O object below
  // belongs to one of them. iocs[0] also runs the listener and stop().
  std::vector<std::unique_ptr<net::io_context>> iocs;
  std::shared_ptr<shared_state> state;
  std::shared_ptr<listener> accept;
  std::vector<work_guard> work;
  std::unique_ptr<net::steady_timer> grace;
  std::atomic<bool> stopping{false};

  impl(server_options opts, std::shared_ptr<application> app)
      : state(std::make_shared<shared_state>(std::move(opts), std::move(app))) {
    const auto n = std::max(1u, state->options().threads);
    for (unsigned i = 0; i < n; ++i) {
      iocs.push_back(std::make_unique<net::io_context>(1));
      work.emplace_back(iocs.back()->get_executor());
    }
    grace = std::make_unique<net::steady_timer>(*iocs.front());
  }

  ~impl() {
    stop_all();
    state->detach();
    abandon_sessions();
  }

  std::vector<net::io_context*> contexts() const {
    std::vector<net::io_context*> out;
    for (const auto& c : iocs)
      out.push_back(c.get());
    return out;
  }

  void stop_all() {
    for (auto& c : iocs)
      c->stop();
  }

  // Ends the sessions still registered. Only while no I/O thread runs.
  void abandon_sessions() {
    for (auto& s : state->sessions())
      s->abandon();
  }

  // Runs on iocs[0].
  void begin_stop() {
    work.clear();
    if (accept)
      accept->stop();
    const auto& e = protocol::describe(protocol::close_reason::shutting_down);
    for (auto& s : state->begin_stop())
      s->close(static_cast<std::uint16_t>(e.code), e.reason);
    state->when_empty([this] { stop_all(); });
    grace->expires_after(stop_grace);
    grace->async_wait([this](beast::error_code ec) {
      if (!ec)
        stop_all();
    });
  }
};

server::server(server_options opts, std::shared_ptr<application> app)
    : impl_(std::make_unique<impl>(std::move(opts), std::move(app))) {}

server::~server() = default;

std::optional<std::string> server::listen() {
  if (impl_->accept)
    return std::string{"already listening"};
  auto l = std::make_shared<listener>(impl_->contexts(), impl_->state);
  const auto& opts = impl_->state->options();
  if (auto err = l->open(opts.host, opts.port))
    return err;
  impl_->accept = std::move(l);
  impl_->accept->run();
  return std::nullopt;
}

std::uint16_t server::port() const {
  return impl_->accept ? impl_->accept->port() : 0;
}

void server::run() {
  std::vector<std::thread> extra;
  for (std::size_t i = 1; i < impl_->iocs.size(); ++i)
    extra.emplace_back([c = impl_->iocs[i].get()] { c->run(); });
  impl_->iocs.front()->run();
  for (auto& t : extra)
    t.join();
  // Sessions that outlived the grace period: their handlers hear of it
  // before run() returns.
  impl_->abandon_sessions();
}

void server::stop() {
  if (impl_->stopping.exchange(true))
    return;
  net::post(*impl_->iocs.front(), [i = impl_.get()] { i->begin_stop(); });
}

transport_counters server::counters() const {
  return impl_->state->counters().snapshot();
}

} // namespace tidings::transport
