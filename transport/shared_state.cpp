#include "transport/shared_state.hpp"

#include <utility>

namespace tidings::transport {

transport_counters counter_set::snapshot() const {
  auto get = [](const std::atomic<std::uint64_t>& c) {
    return c.load(std::memory_order_relaxed);
  };
  transport_counters r;
  r.connections_open = get(connections_open);
  r.connections_total = get(connections_total);
  r.slow_consumer_closes = get(slow_consumer_closes);
  r.oversize_closes = get(oversize_closes);
  r.frames_out = get(frames_out);
  r.bytes_out = get(bytes_out);
  r.frames_in = get(frames_in);
  r.bytes_in = get(bytes_in);
  r.http_requests = get(http_requests);
  r.rejected_connections = get(rejected_connections);
  return r;
}

shared_state::shared_state(server_options opts,
                           std::shared_ptr<application> app)
    : opts_(std::move(opts)), app_(std::move(app)) {}

shared_state::ticket shared_state::enter(std::weak_ptr<session_base> session,
                                         bool want_slot) {
  std::lock_guard<std::mutex> guard{mtx_};
  ticket t;
  t.id = next_id_++;
  t.admitted = want_slot && admitted_ < opts_.max_connections;
  if (t.admitted) {
    ++admitted_;
    counters_.connections_open.store(admitted_, std::memory_order_relaxed);
  }
  sessions_.emplace(t.id, std::move(session));
  return t;
}

void shared_state::leave(const ticket& t) {
  // The callback runs under the mutex so that detach() is a barrier: once it
  // returns, the callback (which stops an io_context) cannot run any more.
  std::lock_guard<std::mutex> guard{mtx_};
  if (sessions_.erase(t.id) == 0)
    return;
  if (t.admitted) {
    --admitted_;
    counters_.connections_open.store(admitted_, std::memory_order_relaxed);
  }
  if (sessions_.empty() && on_empty_) {
    auto fn = std::move(on_empty_);
    on_empty_ = nullptr;
    fn();
  }
}

std::vector<std::shared_ptr<session_base>> shared_state::sessions() const {
  std::vector<std::shared_ptr<session_base>> out;
  std::lock_guard<std::mutex> guard{mtx_};
  out.reserve(sessions_.size());
  for (const auto& [id, weak] : sessions_)
    if (auto s = weak.lock())
      out.push_back(std::move(s));
  return out;
}

std::vector<std::shared_ptr<session_base>> shared_state::begin_stop() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
  }
  return sessions();
}

bool shared_state::stopping() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return stopping_;
}

void shared_state::when_empty(std::function<void()> fn) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (sessions_.empty())
    fn();
  else
    on_empty_ = std::move(fn);
}

void shared_state::detach() {
  std::lock_guard<std::mutex> guard{mtx_};
  on_empty_ = nullptr;
}

} // namespace tidings::transport
