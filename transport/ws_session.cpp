#include "transport/ws_session.hpp"

#include "transport/weak_sink.hpp"

#include <boost/asio/execution_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/field.hpp>

#include <algorithm>
#include <utility>

namespace tidings::transport {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using wsproto::opcode;

namespace {

// Frames per gather write: a header and a payload buffer each, within the
// 64 buffers Asio hands to one sendmsg.
constexpr std::size_t max_batch_frames = 32;
// Payload bytes per gather write (at least one frame): a slow consumer's
// close frame waits behind at most this much.
constexpr std::size_t max_batch_bytes = 64 * 1024;
// Writes a session may complete in one turn before it yields its thread.
constexpr int max_sync_batches = 4;
// Read buffer shared by the sessions of one I/O thread.
constexpr std::size_t scratch_size = 64 * 1024;
// Larger per-session buffers are released once empty.
constexpr std::size_t keep_capacity = 4096;

} // namespace

// One per io_context: the sessions of that context that have frames waiting
// and no write loop running. A burst of deliveries from another thread (one
// event to every subscriber of a room) posts one handler per context, which
// starts every waiting session's write loop, instead of one post (an
// allocation, a scheduler lock, perhaps a wake-up) per session.
class ws_wake_service : public net::execution_context::service {
 public:
  static net::execution_context::id id;

  explicit ws_wake_service(net::execution_context& ctx) : service(ctx) {}

  void add(std::shared_ptr<ws_session> s, const net::any_io_executor& ex) {
    bool post = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      pending_.push_back(std::move(s));
      post = !posted_;
      posted_ = true;
    }
    if (post)
      net::post(ex, [this] { drain(); });
  }

 private:
  void drain() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      batch_.swap(pending_);
      posted_ = false;
    }
    for (auto& s : batch_)
      s->flush();
    batch_.clear();
  }

  void shutdown() override {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.clear();
  }

  std::mutex mutex_;
  std::vector<std::shared_ptr<ws_session>> pending_;
  std::vector<std::shared_ptr<ws_session>> batch_; // the context's thread only
  bool posted_ = false;
};

net::execution_context::id ws_wake_service::id;

namespace {

std::string header_value(const ws_session::request_type& req, http::field f) {
  auto it = req.find(f);
  return it == req.end() ? std::string() : std::string(it->value());
}

std::string refusal(unsigned status) {
  const char* text = status == 426 ? "Upgrade Required" : "Bad Request";
  std::string body = status == 426 ? "unsupported WebSocket version; use 13\n"
                                   : "malformed WebSocket handshake\n";
  std::string r = "HTTP/1.1 " + std::to_string(status) + " " + text +
                  "\r\nServer: tidings\r\nContent-Type: text/plain\r\n";
  if (status == 426)
    r += "Sec-WebSocket-Version: 13\r\n";
  r += "Content-Length: " + std::to_string(body.size()) +
       "\r\nConnection: close\r\n\r\n" + body;
  return r;
}

template <class T>
void release(T& container) {
  if (container.capacity() > keep_capacity / sizeof(typename T::value_type))
    T().swap(container);
}

} // namespace

ws_session::ws_session(tcp::socket&& socket,
                       std::shared_ptr<shared_state> state)
    : socket_(std::move(socket)), ex_(socket_.get_executor()),
      state_(std::move(state)), max_queue_(state_->options().max_queue_bytes),
      timer_(ex_), wake_(&net::use_service<ws_wake_service>(
                       net::query(ex_, net::execution::context))) {}

ws_session::~ws_session() {
  // Normally end() ran on the executor already; this covers sessions dropped
  // with a stopped io_context.
  end();
}

void ws_session::run(const request_type& req, http_request info,
                     std::optional<protocol::close_reason> reject,
                     std::string early) {
  // Parsed once the session is open (bounded by the HTTP read buffer).
  partial_ = std::move(early);
  ticket_ = state_->enter(weak_from_this(), !reject);
  registered_ = true;
  info_ = std::make_unique<http_request>(std::move(info));

  if (auto status = wsproto::check_handshake(
          header_value(req, http::field::sec_websocket_key),
          header_value(req, http::field::sec_websocket_version))) {
    // Not a WebSocket we can speak: an HTTP refusal, then the end.
    closing_.store(true);
    handshake_ = refusal(*status);
    net::async_write(socket_, net::buffer(handshake_),
                     [self = shared_from_this()](beast::error_code,
                                                 std::size_t) { self->end(); });
    return;
  }

  if (!reject && state_->stopping())
    reject = protocol::close_reason::shutting_down;
  else if (!reject && !ticket_.admitted)
    reject = protocol::close_reason::too_many_connections;
  if (reject) {
    counter_set::add(state_->counters().rejected_connections);
    closing_.store(true);
    reject_ = reject;
  }

  handshake_ = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Accept: ";
  handshake_ +=
      wsproto::accept_key(header_value(req, http::field::sec_websocket_key));
  handshake_ += "\r\nServer: tidings\r\n\r\n";

  const auto& opts = state_->options();
  if (opts.handshake_timeout.count() > 0) {
    timer_.expires_after(opts.handshake_timeout);
    timer_.async_wait([self = shared_from_this(),
                       gen = ++timer_gen_](beast::error_code ec) {
      if (!ec && gen == self->timer_gen_ && self->phase_ == phase::handshake)
        self->end();
    });
  }
  net::async_write(
      socket_, net::buffer(handshake_),
      [self = shared_from_this()](beast::error_code ec, std::size_t n) {
        self->on_handshake_written(ec, n);
      });
}

void ws_session::on_handshake_written(beast::error_code ec, std::size_t) {
  std::string().swap(handshake_);
  if (ec || phase_ != phase::handshake) {
    end();
    return;
  }
  phase_ = phase::open;
  beast::error_code ignored;
  socket_.non_blocking(true, ignored);
  socket_.set_option(tcp::no_delay(true), ignored);
  if (reject_) {
    const auto& e = protocol::describe(*reject_);
    begin_close(static_cast<std::uint16_t>(e.code), std::string(e.reason),
                false);
  }
  if (close_code_) { // rejected, or stop() came during the handshake
    info_.reset();
    wait_readable();
    pump();
    return;
  }
  ++timer_gen_;
  timer_.cancel();
  open_session();
}

void ws_session::open_session() {
  counter_set::add(state_->counters().connections_total);
  handler_ = state_->app().open(
      *info_, std::make_shared<weak_sink<ws_session>>(weak_from_this()));
  info_.reset(); // the token and body are not kept
  if (phase_ == phase::done)
    return;
  if (!partial_.empty()) {
    const auto used = consume(reinterpret_cast<std::uint8_t*>(partial_.data()),
                              partial_.size());
    if (phase_ == phase::done)
      return;
    partial_.erase(0, used);
  }
  wait_readable();
  arm_keepalive();
  if (!handler_)
    close(static_cast<std::uint16_t>(protocol::close_code::internal_error),
          protocol::describe(protocol::close_reason::internal_error).reason);
}

// ---------------------------------------------------------------- reading

void ws_session::wait_readable() {
  if (waiting_read_ || phase_ == phase::done)
    return;
  waiting_read_ = true;
  socket_.async_wait(tcp::socket::wait_read,
                     [self = shared_from_this()](beast::error_code ec) {
                       self->on_readable(ec);
                     });
}

void ws_session::on_readable(beast::error_code ec) {
  waiting_read_ = false;
  if (phase_ == phase::done)
    return;
  if (ec) {
    end();
    return;
  }
  thread_local std::vector<std::uint8_t> scratch(scratch_size);
  // A few reads per turn, then back to the reactor: one busy client does not
  // hold the thread its neighbours share.
  for (int round = 0; round < 4 && phase_ != phase::done; ++round) {
    const auto n = socket_.read_some(net::buffer(scratch), ec);
    if (ec == net::error::would_block || ec == net::error::try_again)
      break;
    if (ec) {
      end();
      return;
    }
    got_data_ = true;
    if (partial_.empty()) {
      const auto used = consume(scratch.data(), n);
      if (phase_ == phase::done)
        return;
      if (used < n)
        partial_.assign(reinterpret_cast<const char*>(scratch.data()) + used,
                        n - used);
    } else {
      partial_.append(reinterpret_cast<const char*>(scratch.data()), n);
      const auto used = consume(
          reinterpret_cast<std::uint8_t*>(partial_.data()), partial_.size());
      if (phase_ == phase::done)
        return;
      partial_.erase(0, used);
      if (partial_.empty())
        release(partial_);
    }
    if (n < scratch.size())
      break;
  }
  wait_readable();
}

std::size_t ws_session::consume(std::uint8_t* p, std::size_t n) {
  std::size_t pos = 0;
  const auto max_message = state_->options().max_message_size;
  while (pos < n && phase_ != phase::done) {
    if (failing_)
      return n;
    wsproto::frame_header h;
    switch (wsproto::parse_header(p + pos, n - pos, h)) {
    case wsproto::parse_result::need_more:
      return pos;
    case wsproto::parse_result::protocol_error:
      protocol_failure(protocol::close_reason::protocol_error);
      return n;
    case wsproto::parse_result::complete:
      break;
    }
    const bool control = (static_cast<std::uint8_t>(h.op) & 0x8) != 0;
    if (!control &&
        h.length > max_message - std::min(max_message, message_.size())) {
      counter_set::add(state_->counters().oversize_closes);
      protocol_failure(protocol::close_reason::message_too_big);
      return n;
    }
    if (n - pos - h.size < h.length)
      return pos; // the rest of the frame has not arrived
    auto* payload = p + pos + h.size;
    const auto len = static_cast<std::size_t>(h.length);
    wsproto::unmask(payload, len, h.mask);
    pos += h.size + len;
    on_frame(h, payload);
  }
  return pos;
}

void ws_session::on_frame(const wsproto::frame_header& h,
                          std::uint8_t* payload) {
  const auto len = static_cast<std::size_t>(h.length);
  std::string_view bytes(reinterpret_cast<const char*>(payload), len);
  if ((static_cast<std::uint8_t>(h.op) & 0x8) != 0) {
    on_control(h.op, bytes);
    return;
  }
  if (h.op == opcode::continuation) {
    if (!in_message_) {
      protocol_failure(protocol::close_reason::protocol_error);
      return;
    }
    message_.append(bytes);
  } else {
    if (in_message_) {
      protocol_failure(protocol::close_reason::protocol_error);
      return;
    }
    in_message_ = true;
    message_op_ = h.op;
    message_.assign(bytes);
  }
  if (!h.fin)
    return;
  in_message_ = false;
  std::string msg = std::move(message_);
  message_ = std::string();
  if (message_op_ == opcode::text && !wsproto::valid_utf8(msg)) {
    protocol_failure(protocol::close_reason::invalid_payload);
    return;
  }
  // After our close frame, data is read and dropped (RFC 6455 5.5.1).
  if (close_code_ || !handler_ || phase_ != phase::open)
    return;
  auto& c = state_->counters();
  counter_set::add(c.frames_in);
  counter_set::add(c.bytes_in, msg.size());
  handler_->on_message(std::move(msg));
}

void ws_session::on_control(opcode op, std::string_view payload) {
  switch (op) {
  case opcode::ping:
    if (!close_sent_)
      send_control(opcode::pong, std::string(payload));
    return;
  case opcode::pong:
    ping_sent_ = false;
    return;
  case opcode::close: {
    close_received_ = true;
    if (close_sent_) { // the answer to ours: the close handshake is done
      if (close_written_)
        end();
      return;
    }
    auto cf = wsproto::parse_close(payload);
    if (!cf) {
      protocol_failure(protocol::close_reason::protocol_error);
      return;
    }
    // Echo the peer's code (none when it sent none); what is still queued
    // is dropped, the peer has said it reads no more.
    begin_close(cf->code ? *cf->code : 1005, std::string(), true);
    return;
  }
  default:
    return;
  }
}

void ws_session::protocol_failure(protocol::close_reason reason) {
  // Failing the connection (RFC 6455 7.1.7): what follows the bad bytes
  // cannot be framed reliably, so nothing more is parsed; the close frame
  // goes out and then the TCP connection ends without waiting for a reply.
  failing_ = true;
  const auto& e = protocol::describe(reason);
  begin_close(static_cast<std::uint16_t>(e.code), std::string(e.reason), true);
}

// ---------------------------------------------------------------- writing

bool ws_session::deliver(frame f) {
  if (!f || closing_.load(std::memory_order_acquire))
    return false;
  const auto n = f->size();
  // Counted before queueing: the inbox is otherwise unbounded.
  const auto before = queued_.fetch_add(n, std::memory_order_acq_rel);
  if (before + n > max_queue_) {
    queued_.fetch_sub(n, std::memory_order_acq_rel);
    // From now on nothing that has not reached the socket is sent.
    overflowed_.store(true, std::memory_order_release);
    if (!closing_.exchange(true)) {
      counter_set::add(state_->counters().slow_consumer_closes);
      const auto& e = protocol::describe(protocol::close_reason::slow_consumer);
      net::post(ex_, [self = shared_from_this(),
                      code = static_cast<std::uint16_t>(e.code),
                      text = std::string(e.reason)]() mutable {
        self->begin_close(code, std::move(text), true);
      });
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
  // One post per idle-to-busy turn; while the write loop runs it takes the
  // inbox itself.
  if (post)
    wake_->add(shared_from_this(), ex_);
  return true;
}

void ws_session::close(std::uint16_t code, std::string_view reason) {
  if (closing_.exchange(true))
    return;
  net::post(ex_, [self = shared_from_this(), code,
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

void ws_session::flush() {
  if (!writing_)
    pump();
}

bool ws_session::take_inbox() {
  {
    std::lock_guard<std::mutex> lock(inbox_mutex_);
    if (inbox_.empty())
      return false;
    inbox_.swap(taken_);
  }
  std::size_t dropped = 0;
  const bool accept = phase_ == phase::open && !dropping_ && !close_sent_ &&
                      !overflowed_.load(std::memory_order_acquire);
  for (auto& f : taken_) {
    if (accept)
      queue_.push_back(std::move(f));
    else
      dropped += f->size();
  }
  taken_.clear();
  release(taken_);
  if (dropped)
    queued_.fetch_sub(dropped, std::memory_order_acq_rel);
  return true;
}

void ws_session::send_control(opcode op, std::string payload) {
  if (phase_ == phase::done || close_sent_)
    return;
  control_.push_back({make_frame(std::move(payload)), op});
  if (!writing_)
    pump();
}

void ws_session::pump() {
  for (int turns = 0; phase_ != phase::done && !writing_; ++turns) {
    if (turns == max_sync_batches) {
      // Yield the thread; the loop continues in a later handler.
      net::post(ex_, [self = shared_from_this()] { self->flush(); });
      return;
    }
    take_inbox();
    if (!control_.empty() || (queue_head_ < queue_.size() && !close_sent_)) {
      write_batch();
      continue;
    }
    if (close_code_ && !close_sent_ && phase_ == phase::open) {
      send_close_frame();
      continue;
    }
    if (close_written_ && (close_received_ || failing_)) {
      end();
      return;
    }
    std::lock_guard<std::mutex> lock(inbox_mutex_);
    if (inbox_.empty()) {
      armed_ = false;
      release(queue_);
      release(control_);
      return;
    }
  }
}

// Frames in the next batch: every control frame first (at most a batch),
// then data frames up to the frame and byte bounds (at least one).
void ws_session::plan_batch() {
  batch_control_ = std::min(control_.size(), max_batch_frames);
  batch_frames_ = 0;
  batch_bytes_ = 0;
  if (close_sent_)
    return;
  const std::size_t avail = queue_.size() - queue_head_;
  while (batch_frames_ < avail &&
         batch_control_ + batch_frames_ < max_batch_frames) {
    const auto n = queue_[queue_head_ + batch_frames_]->size();
    if (batch_frames_ > 0 && batch_bytes_ + n > max_batch_bytes)
      break;
    batch_bytes_ += n;
    ++batch_frames_;
  }
}

// Headers and buffers of the planned batch, skipping its first `skip`
// bytes; returns the bytes left to write.
std::size_t ws_session::build_batch(batch_storage& out,
                                    std::size_t skip) const {
  out.headers.resize(batch_control_ + batch_frames_);
  out.buffers.clear();
  std::size_t total = 0;
  std::size_t k = 0;
  auto add = [&](opcode op, const std::string& payload) {
    auto& h = out.headers[k++];
    const auto hn = wsproto::encode_header(h.data(), op, payload.size());
    for (net::const_buffer b :
         {net::const_buffer(h.data(), hn),
          net::const_buffer(payload.data(), payload.size())}) {
      if (skip >= b.size()) {
        skip -= b.size();
        continue;
      }
      b += skip;
      skip = 0;
      out.buffers.push_back(b);
      total += b.size();
    }
  };
  for (std::size_t i = 0; i < batch_control_; ++i)
    add(control_[i].op, *control_[i].payload);
  for (std::size_t i = 0; i < batch_frames_; ++i)
    add(opcode::text, *queue_[queue_head_ + i]);
  return total;
}

void ws_session::write_batch() {
  plan_batch();
  writing_ = true;
  // Most batches fit the socket buffer: build them in the thread's storage
  // and write now, without a reactor turn. Only a batch the kernel does not
  // take at once gets storage of its own, for the asynchronous rest.
  thread_local batch_storage scratch;
  const auto total = build_batch(scratch);
  beast::error_code ec;
  const auto n = socket_.write_some(scratch.buffers, ec);
  if (!ec && n == total) {
    written();
    return;
  }
  if (ec && ec != net::error::would_block && ec != net::error::try_again) {
    writing_ = false;
    end();
    return;
  }
  async_batch_ = std::make_unique<batch_storage>();
  build_batch(*async_batch_, ec ? 0 : n);
  net::async_write(
      socket_, async_batch_->buffers,
      [self = shared_from_this()](beast::error_code ec2, std::size_t n2) {
        self->on_write(ec2, n2);
      });
}

void ws_session::on_write(beast::error_code ec, std::size_t) {
  async_batch_.reset();
  if (phase_ == phase::done)
    return;
  if (ec) {
    writing_ = false;
    end();
    return;
  }
  written();
  pump();
}

void ws_session::written() {
  writing_ = false;
  for (std::size_t i = 0; i < batch_control_; ++i)
    if (control_[i].op == opcode::close)
      close_written_ = true;
  control_.erase(control_.begin(),
                 control_.begin() +
                     static_cast<std::ptrdiff_t>(batch_control_));
  for (std::size_t i = 0; i < batch_frames_; ++i)
    queue_[queue_head_++].reset();
  if (queue_head_ == queue_.size()) {
    queue_.clear();
    queue_head_ = 0;
  }
  queued_.fetch_sub(batch_bytes_, std::memory_order_acq_rel);
  auto& c = state_->counters();
  counter_set::add(c.frames_out, batch_frames_);
  counter_set::add(c.bytes_out, batch_bytes_);
  batch_control_ = batch_frames_ = batch_bytes_ = 0;
}

// ---------------------------------------------------------------- timers

void ws_session::arm_keepalive() {
  const auto idle = state_->options().idle_timeout;
  if (idle.count() <= 0 || phase_ != phase::open || close_code_)
    return;
  timer_.expires_after(
      std::chrono::duration_cast<net::steady_timer::duration>(idle) / 2);
  timer_.async_wait(
      [self = shared_from_this(), gen = ++timer_gen_](beast::error_code ec) {
        if (!ec && gen == self->timer_gen_)
          self->on_keepalive();
      });
}

void ws_session::on_keepalive() {
  if (phase_ != phase::open || close_code_)
    return;
  if (got_data_) {
    got_data_ = false;
    ping_sent_ = false;
  } else if (!ping_sent_) {
    // Half the idle time without a byte: ask for one.
    ping_sent_ = true;
    send_control(opcode::ping, std::string());
  } else {
    // A whole idle time: the peer is gone or stuck. No close frame; it would
    // only wait behind whatever the peer does not read.
    end();
    return;
  }
  arm_keepalive();
}

// ---------------------------------------------------------------- closing

void ws_session::begin_close(std::uint16_t code, std::string reason,
                             bool drop_backlog) {
  if (phase_ == phase::done || close_code_)
    return;
  closing_.store(true);
  close_code_ = code;
  close_text_ = std::move(reason);
  if (drop_backlog) {
    // A slow consumer, a protocol error or the peer's own close: the close
    // frame goes right after the batch being written.
    dropping_ = true;
    drop_queue();
  }
  // Bounds both the wait behind a write the peer does not read and the
  // wait for the peer's answer to our close frame.
  timer_.expires_after(state_->options().handshake_timeout);
  timer_.async_wait(
      [self = shared_from_this(), gen = ++timer_gen_](beast::error_code ec) {
        if (!ec && gen == self->timer_gen_)
          self->end();
      });
  if (phase_ == phase::open && !writing_)
    pump();
}

void ws_session::send_close_frame() {
  close_sent_ = true;
  phase_ = phase::closing;
  std::string payload;
  if (*close_code_ != 1005) // 1005: the peer sent no code, nor do we
    payload = wsproto::close_payload(*close_code_, close_text_);
  control_.push_back({make_frame(std::move(payload)), opcode::close});
}

void ws_session::drop_queue() {
  // Frames of the write in flight stay until it completes.
  const std::size_t keep = queue_head_ + (writing_ ? batch_frames_ : 0);
  std::size_t n = 0;
  while (queue_.size() > keep) {
    n += queue_.back()->size();
    queue_.pop_back();
  }
  std::vector<frame> pending;
  {
    std::lock_guard<std::mutex> lock(inbox_mutex_);
    pending.swap(inbox_);
  }
  for (const auto& f : pending)
    n += f->size();
  if (n)
    queued_.fetch_sub(n, std::memory_order_acq_rel);
}

void ws_session::end() {
  if (phase_ == phase::done)
    return;
  phase_ = phase::done;
  closing_.store(true);
  ++timer_gen_;
  timer_.cancel();
  // Aborts whatever is still pending (a write the peer never reads).
  beast::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  writing_ = false;
  batch_frames_ = 0;
  drop_queue();
  queue_.clear();
  queue_head_ = 0;
  control_.clear();
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
