#include "transport/ws_session.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/websocket/error.hpp>
#include <boost/beast/websocket/option.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include <algorithm>
#include <utility>

namespace tidings::transport {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// The application's handle on a session. It holds a weak_ptr so that a
// session ends with its connection whatever the application keeps; once the
// session is gone, deliver() returns false and close() does nothing.
class ws_sink final : public frame_sink {
 public:
  explicit ws_sink(std::weak_ptr<ws_session> session)
      : session_(std::move(session)) {}

  bool deliver(frame f) override {
    auto s = session_.lock();
    return s && s->deliver(std::move(f));
  }

  void close(std::uint16_t code, std::string_view reason) override {
    if (auto s = session_.lock())
      s->close(code, reason);
  }

  std::size_t queued_bytes() const override {
    auto s = session_.lock();
    return s ? s->queued_bytes() : 0;
  }

  std::size_t max_queued_bytes() const override {
    auto s = session_.lock();
    return s ? s->max_queued_bytes() : 0;
  }

 private:
  std::weak_ptr<ws_session> session_;
};

websocket::stream_base::duration or_none(std::chrono::seconds s) {
  if (s.count() <= 0)
    return websocket::stream_base::none();
  return s;
}

} // namespace

ws_session::ws_session(tcp::socket&& socket,
                       std::shared_ptr<shared_state> state)
    : ws_(std::move(socket)), strand_(ws_.get_executor()),
      state_(std::move(state)), max_queue_(state_->options().max_queue_bytes),
      close_timer_(strand_) {}

ws_session::~ws_session() {
  // Normally end() ran on the strand already; this covers sessions dropped
  // with a stopped io_context.
  end();
}

void ws_session::run(request_type req, http_request info,
                     std::optional<protocol::close_reason> reject) {
  const auto& opts = state_->options();
  ticket_ = state_->enter(weak_from_this(), !reject);
  registered_ = true;
  if (!reject && state_->stopping())
    reject = protocol::close_reason::shutting_down;
  else if (!reject && !ticket_.admitted)
    reject = protocol::close_reason::too_many_connections;
  if (reject)
    counter_set::add(state_->counters().rejected_connections);

  req_ = std::move(req);
  info_ = std::move(info);

  websocket::stream_base::timeout timeouts;
  timeouts.handshake_timeout = or_none(opts.handshake_timeout);
  timeouts.idle_timeout = or_none(opts.idle_timeout);
  timeouts.keep_alive_pings = true;
  ws_.set_option(timeouts);
  ws_.set_option(
      websocket::stream_base::decorator([](websocket::response_type& res) {
        res.set(http::field::server, "tidings");
      }));
  // Off: Beast 1.74's inflater can be made to throw bad_alloc (DESIGN.md).
  websocket::permessage_deflate pmd;
  pmd.server_enable = false;
  pmd.client_enable = false;
  ws_.set_option(pmd);
  ws_.read_message_max(opts.max_message_size);
  ws_.auto_fragment(false);
  ws_.text(true);

  ws_.async_accept(req_, beast::bind_front_handler(&ws_session::on_accept,
                                                   shared_from_this()));
  if (reject) {
    closing_.store(true);
    const auto& e = protocol::describe(*reject);
    begin_close(static_cast<std::uint16_t>(e.code), std::string(e.reason),
                false);
  }
}

bool ws_session::deliver(frame f) {
  if (!f || closing_.load(std::memory_order_acquire))
    return false;
  const auto n = f->size();
  // Counted before posting: the strand's queue is otherwise unbounded.
  const auto before = queued_.fetch_add(n, std::memory_order_acq_rel);
  if (before + n > max_queue_) {
    queued_.fetch_sub(n, std::memory_order_acq_rel);
    if (!closing_.exchange(true)) {
      counter_set::add(state_->counters().slow_consumer_closes);
      const auto& e = protocol::describe(protocol::close_reason::slow_consumer);
      net::post(strand_, [self = shared_from_this(),
                          code = static_cast<std::uint16_t>(e.code),
                          text = std::string(e.reason)]() mutable {
        self->begin_close(code, std::move(text), true);
      });
    }
    return false;
  }
  net::post(strand_, [self = shared_from_this(), f = std::move(f)]() mutable {
    self->on_deliver(std::move(f));
  });
  return true;
}

void ws_session::close(std::uint16_t code, std::string_view reason) {
  if (closing_.exchange(true))
    return;
  net::post(strand_, [self = shared_from_this(), code,
                      text = std::string(reason)]() mutable {
    self->begin_close(code, std::move(text), false);
  });
}

std::size_t ws_session::queued_bytes() const {
  return queued_.load(std::memory_order_acquire);
}

void ws_session::abandon() {
  end();
}

void ws_session::on_accept(beast::error_code ec) {
  if (ec || phase_ == phase::done) {
    end();
    return;
  }
  phase_ = phase::open;
  if (close_code_) { // rejected, or stop() came during the handshake
    start_close();
    return;
  }
  counter_set::add(state_->counters().connections_total);
  handler_ =
      state_->app().open(info_, std::make_shared<ws_sink>(weak_from_this()));
  do_read();
  if (!handler_)
    close(static_cast<std::uint16_t>(protocol::close_code::internal_error),
          protocol::describe(protocol::close_reason::internal_error).reason);
}

void ws_session::do_read() {
  reading_ = true;
  ws_.async_read(buffer_, beast::bind_front_handler(&ws_session::on_read,
                                                    shared_from_this()));
}

void ws_session::on_read(beast::error_code ec, std::size_t bytes) {
  reading_ = false;
  if (ec) {
    // Beast has already sent close 1009 when the message was too big.
    if (ec == websocket::error::message_too_big)
      counter_set::add(state_->counters().oversize_closes);
    end();
    return;
  }
  if (phase_ == phase::done)
    return;
  auto& c = state_->counters();
  counter_set::add(c.frames_in);
  counter_set::add(c.bytes_in, bytes);
  auto msg = beast::buffers_to_string(buffer_.data());
  buffer_.consume(buffer_.size());
  if (handler_)
    handler_->on_message(std::move(msg));
  if (phase_ != phase::done)
    do_read();
}

void ws_session::on_deliver(frame f) {
  if (phase_ != phase::open || dropping_) {
    queued_.fetch_sub(f->size(), std::memory_order_acq_rel);
    return;
  }
  queue_.push_back(std::move(f));
  if (!in_flight_)
    do_write();
}

void ws_session::do_write() {
  in_flight_ = std::move(queue_.front());
  queue_.pop_front();
  ws_.async_write(
      net::buffer(*in_flight_),
      beast::bind_front_handler(&ws_session::on_write, shared_from_this()));
}

void ws_session::on_write(beast::error_code ec, std::size_t) {
  const auto n = in_flight_->size();
  in_flight_.reset();
  queued_.fetch_sub(n, std::memory_order_acq_rel);
  if (ec) {
    end();
    return;
  }
  auto& c = state_->counters();
  counter_set::add(c.frames_out);
  counter_set::add(c.bytes_out, n);
  if (phase_ != phase::open)
    return;
  if (!queue_.empty())
    do_write();
  else if (close_code_)
    start_close();
}

void ws_session::begin_close(std::uint16_t code, std::string reason,
                             bool drop_backlog) {
  if (phase_ == phase::done || close_code_)
    return;
  close_code_ = code;
  close_text_ = std::move(reason);
  if (drop_backlog) {
    // A slow consumer gets the close frame right after the frame being
    // written: sending it the backlog first would only delay the close.
    dropping_ = true;
    drop_queue();
  }
  // Beast's handshake timeout bounds the close handshake once it starts;
  // this bounds the wait before it, behind a write the peer does not read.
  close_timer_.expires_after(state_->options().handshake_timeout);
  close_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec)
      self->end();
  });
  if (phase_ == phase::open && !in_flight_ && queue_.empty())
    start_close();
}

void ws_session::start_close() {
  phase_ = phase::closing;
  websocket::close_reason cr;
  cr.code = *close_code_;
  // A `const char*`: with `char*`, overload resolution picks static_string's
  // assign(t, pos) template and the reason comes out empty.
  const char* text = close_text_.c_str();
  cr.reason.assign(text, std::min(close_text_.size(), cr.reason.max_size()));
  ws_.async_close(
      cr, beast::bind_front_handler(&ws_session::on_close, shared_from_this()));
}

void ws_session::on_close(beast::error_code ec) {
  // With a read pending, its completion ends the session; without one (a
  // rejected session), the close handshake is the last operation.
  if (ec)
    beast::get_lowest_layer(ws_).close();
  if (!reading_)
    end();
}

void ws_session::drop_queue() {
  std::size_t n = 0;
  for (const auto& f : queue_)
    n += f->size();
  queue_.clear();
  queued_.fetch_sub(n, std::memory_order_acq_rel);
}

void ws_session::end() {
  if (phase_ == phase::done)
    return;
  phase_ = phase::done;
  closing_.store(true);
  close_timer_.cancel();
  // Aborts whatever is still pending (a write the peer never reads).
  beast::get_lowest_layer(ws_).close();
  drop_queue();
  if (registered_) {
    registered_ = false;
    state_->leave(ticket_);
  }
  if (auto h = std::move(handler_)) {
    handler_ = nullptr;
    h->on_closed();
  }
}

} // namespace tidings::transport
