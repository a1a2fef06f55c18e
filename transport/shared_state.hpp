// What the listener and every session of one server share: the options, the
// application, the counters and the registry of WebSocket sessions (for
// stop() and for max_connections). No Beast here.
//
// Threads: every member is safe to use from any thread. Counters are relaxed
// atomics; the registry has its own mutex, held only briefly and never while
// calling into a session or the application.
#pragma once

#include "transport/seam.hpp"
#include "transport/server.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

namespace tidings::transport {

/// What the registry needs of a session (ws_session, a streaming
/// http_session): a way to end it. Both run on the session's executor.
class session_base {
 public:
  virtual ~session_base() = default;
  /// Any thread: ends the session gracefully (1001 for WebSockets, the
  /// last chunk for streams). The first call wins.
  virtual void close(std::uint16_t code, std::string_view reason) = 0;
  /// Ends the session without I/O. Only while no I/O thread runs.
  virtual void abandon() = 0;
};

/// The live form of transport_counters.
struct counter_set {
  std::atomic<std::uint64_t> connections_open{0};
  std::atomic<std::uint64_t> connections_total{0};
  std::atomic<std::uint64_t> slow_consumer_closes{0};
  std::atomic<std::uint64_t> oversize_closes{0};
  std::atomic<std::uint64_t> frames_out{0};
  std::atomic<std::uint64_t> bytes_out{0};
  std::atomic<std::uint64_t> frames_in{0};
  std::atomic<std::uint64_t> bytes_in{0};
  std::atomic<std::uint64_t> http_requests{0};
  std::atomic<std::uint64_t> rejected_connections{0};

  static void add(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) {
    c.fetch_add(n, std::memory_order_relaxed);
  }
  transport_counters snapshot() const;
};

class shared_state {
 public:
  /// A session's place in the registry. `admitted`: it holds one of the
  /// max_connections slots (and counts in connections_open).
  struct ticket {
    std::uint64_t id = 0;
    bool admitted = false;
  };

  shared_state(server_options opts, std::shared_ptr<application> app);

  const server_options& options() const { return opts_; }
  application& app() const { return *app_; }
  counter_set& counters() { return counters_; }

  /// Registers a session. With `want_slot`, also admits it when fewer than
  /// max_connections sessions are admitted (check and take are atomic).
  ticket enter(std::weak_ptr<session_base> session, bool want_slot);

  /// Unregisters; call once per ticket.
  void leave(const ticket& t);

  /// Every registered session still alive.
  std::vector<std::shared_ptr<session_base>> sessions() const;

  /// Marks the server as stopping and returns the sessions registered so
  /// far. A session that enters later sees stopping() == true.
  std::vector<std::shared_ptr<session_base>> begin_stop();
  bool stopping() const;

  /// Calls `fn` once the registry is empty: now if it already is, else from
  /// the leave() that empties it.
  void when_empty(std::function<void()> fn);

  /// Drops the when_empty callback (the server is being destroyed).
  void detach();

 private:
  const server_options opts_;
  const std::shared_ptr<application> app_;
  counter_set counters_;

  mutable std::mutex mtx_;
  std::map<std::uint64_t, std::weak_ptr<session_base>> sessions_;
  std::uint64_t next_id_ = 1;
  std::size_t admitted_ = 0;
  bool stopping_ = false;
  std::function<void()> on_empty_;
};

} // namespace tidings::transport
