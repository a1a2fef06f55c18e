#include "actors/s2_connection.hpp"

#include "actors/clock.hpp"
#include "actors/http_replies.hpp"
#include "actors/messages.hpp"
#include "protocol/acl.hpp"
#include "protocol/dialect_s2.hpp"
#include "protocol/errors.hpp"

#include <caf/all.hpp>

#include <array>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace tidings::actors {

namespace {

using protocol::error_code;
using protocol::s2_stream;
using clock = std::chrono::steady_clock;

constexpr std::size_t stream_count = 6;

/// What a `stream:` room delivers to one S2 connection: the publication's
/// S2 payload, which it filters and wraps per subscription. Called by the
/// room (any thread) and changed by the connection actor, hence the mutex;
/// held while delivering so that a subscription removed is never served
/// afterwards.
class s2_stream_sink final : public transport::frame_sink {
 public:
  explicit s2_stream_sink(std::shared_ptr<transport::frame_sink> session)
      : session_(std::move(session)) {}

  void add(std::string id, protocol::s2_filter filter) {
    std::lock_guard<std::mutex> lock(mtx_);
    subs_.emplace_back(std::move(id), std::move(filter));
  }

  /// Whether `id` was one of its subscriptions; true when none are left.
  bool remove(const std::string& id, bool& now_empty) {
    std::lock_guard<std::mutex> lock(mtx_);
    bool found = false;
    for (auto i = subs_.begin(); i != subs_.end(); ++i)
      if (i->first == id) {
        subs_.erase(i);
        found = true;
        break;
      }
    now_empty = subs_.empty();
    return found;
  }

  bool deliver(transport::frame f) override {
    if (!f)
      return false;
    std::lock_guard<std::mutex> lock(mtx_);
    std::optional<protocol::s2_json> event;
    const auto now = unix_now_ms();
    for (const auto& [id, filter] : subs_) {
      if (!filter.empty()) {
        if (!event)
          event = event_of(*f);
        if (!filter.matches(*event))
          continue;
      }
      if (!session_->deliver(
              transport::make_frame(protocol::encode_s2_data(id, *f, now))))
        return false;
    }
    return true;
  }

  void close(std::uint16_t code, std::string_view reason) override {
    session_->close(code, reason);
  }
  std::size_t queued_bytes() const override { return session_->queued_bytes(); }
  std::size_t max_queued_bytes() const override {
    return session_->max_queued_bytes();
  }

 private:
  // The payload is {"<member>":<event>,…} (encode_s2_payload): the event is
  // its first member's value. Null when it does not parse (matches nothing
  // but an absent filter).
  static protocol::s2_json event_of(const std::string& payload) {
    auto j = protocol::s2_json::parse(payload, nullptr, false);
    if (j.is_discarded() || !j.is_object() || j.empty())
      return nullptr;
    return j.begin().value();
  }

  const std::shared_ptr<transport::frame_sink> session_;
  std::mutex mtx_;
  std::vector<std::pair<std::string, protocol::s2_filter>> subs_;
};

struct stream_entry {
  std::shared_ptr<s2_stream_sink> sink;
  caf::actor room;     // once the room answered
  bool pending = true; // the subscribe request is in flight
};

struct s2_state {
  s2_connection_args args;
  caf::actor directory;
  node_state* node = nullptr;
  std::optional<protocol::claims> who;
  bool closing = false;
  std::deque<clock::time_point> recent;  // accepted messages, last minute
  std::map<std::string, s2_stream> subs; // subscription id → stream
  std::array<std::optional<stream_entry>, stream_count> streams;
  std::mt19937_64 rng{std::random_device{}()};
  static inline const char* name = "s2_connection";
};

using s2_actor = caf::stateful_actor<s2_state>;

std::string new_uuid(std::mt19937_64& rng) {
  static constexpr char hex[] = "0123456789abcdef";
  std::uint64_t a = rng(), b = rng();
  a = (a & ~0xf000ULL) | 0x4000ULL;                        // version 4
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL; // variant 1
  std::string out;
  for (int i = 0; i < 32; ++i) {
    auto v = i < 16 ? (a >> (60 - 4 * i)) : (b >> (60 - 4 * (i - 16)));
    out += hex[v & 0xf];
    if (i == 7 || i == 11 || i == 15 || i == 19)
      out += '-';
  }
  return out;
}

void send_frame(s2_actor* self, std::string bytes) {
  self->state.args.sink->deliver(transport::make_frame(std::move(bytes)));
}

void send_error(s2_actor* self, error_code code) {
  self->state.node->counters.errors_sent.fetch_add(1,
                                                   std::memory_order_relaxed);
  send_frame(self, protocol::encode_s2_error(code, unix_now_ms()));
}

void close_with(s2_actor* self, protocol::close_reason why) {
  const auto& e = protocol::describe(why);
  self->state.closing = true;
  self->state.args.sink->close(static_cast<std::uint16_t>(e.code), e.reason);
}

/// Sliding window over the last minute; refused messages do not count.
bool admit(s2_state& st) {
  if (st.args.cfg.rate_limit_per_minute == 0)
    return true;
  auto now = clock::now();
  while (!st.recent.empty() &&
         now - st.recent.front() >= std::chrono::minutes(1))
    st.recent.pop_front();
  if (st.recent.size() >= st.args.cfg.rate_limit_per_minute)
    return false;
  st.recent.push_back(now);
  return true;
}

std::optional<protocol::claims> verify(const s2_state& st,
                                       const std::string& token) {
  if (!st.args.api_key.empty() && same_secret(token, st.args.api_key)) {
    protocol::claims c;
    c.sub = "s2-api-key";
    c.rooms = {std::string(protocol::s2_room_kind) + ":*"};
    return c;
  }
  auto res =
      protocol::verify_jwt(token, *st.args.key, st.args.policy, unix_now());
  if (!res)
    return std::nullopt;
  return std::move(*res);
}

void on_auth(s2_actor* self, const std::string& token) {
  auto& st = self->state;
  auto who = token.empty() ? std::nullopt : verify(st, token);
  if (!who) {
    st.node->counters.auth_failures.fetch_add(1, std::memory_order_relaxed);
    send_frame(self, protocol::encode_s2_auth_failed(
                         error_code::invalid_credentials, unix_now_ms()));
    // A failed re-authentication keeps the identity it replaces.
    if (!st.who && st.args.cfg.require_auth)
      close_with(self, protocol::close_reason::auth_failed);
    return;
  }
  bool first = !st.who;
  st.who = std::move(*who);
  if (first)
    st.node->connection_opened(st.who->sub);
  send_frame(
      self, protocol::encode_s2_auth_success(st.args.client_id, unix_now_ms()));
}

bool allowed(const s2_state& st, const protocol::room_id& room) {
  if (!st.who)
    return !st.args.cfg.require_auth; // anonymous: every stream
  return protocol::may_subscribe(*st.who, room);
}

void on_subscribe(s2_actor* self, protocol::s2_subscribe& sub) {
  auto& st = self->state;
  auto room = protocol::s2_room(sub.stream);
  if (!allowed(st, room))
    return send_error(self, error_code::access_denied);
  if (st.subs.size() >= st.args.cfg.max_subscriptions)
    return send_error(self, error_code::too_many_subscriptions);
  auto id = new_uuid(st.rng);
  auto& slot = st.streams[static_cast<std::size_t>(sub.stream)];
  bool join = !slot;
  if (join)
    slot = stream_entry{std::make_shared<s2_stream_sink>(st.args.sink), nullptr,
                        true};
  st.subs.emplace(id, sub.stream);
  // The confirmation first, then the subscription may receive data.
  send_frame(self,
             protocol::encode_s2_subscribed(id, sub.stream, unix_now_ms()));
  slot->sink->add(id, std::move(sub.filter));
  if (!join)
    return;
  subscriber s{st.args.conn_id, caf::actor_cast<caf::actor>(self), slot->sink,
               dialect::s2, std::nullopt};
  auto stream = sub.stream;
  self->request(st.directory, std::chrono::seconds(10), subscribe_atom::value,
                room, std::move(s))
      .then(
          [=](caf::actor& room_actor, std::string&, std::uint64_t) {
            auto& st = self->state;
            auto& slot = st.streams[static_cast<std::size_t>(stream)];
            if (!slot || st.closing) {
              // Every subscription of the stream went away meanwhile.
              self->send(room_actor, unsub_atom::value, st.args.conn_id);
              return;
            }
            slot->room = room_actor;
            slot->pending = false;
          },
          [=](caf::error& err) {
            auto& st = self->state;
            auto& slot = st.streams[static_cast<std::size_t>(stream)];
            if (slot) {
              for (auto i = st.subs.begin(); i != st.subs.end();)
                i = i->second == stream ? st.subs.erase(i) : std::next(i);
              slot.reset();
            }
            send_error(self, error_code_of(err));
          });
}

void on_unsubscribe(s2_actor* self, const std::string& id) {
  auto& st = self->state;
  auto i = st.subs.find(id);
  if (i == st.subs.end())
    return send_error(self, error_code::subscription_not_found);
  auto stream = i->second;
  st.subs.erase(i);
  auto& slot = st.streams[static_cast<std::size_t>(stream)];
  bool empty = false;
  slot->sink->remove(id, empty);
  send_frame(self, protocol::encode_s2_unsubscribed(id, unix_now_ms()));
  if (!empty)
    return;
  if (slot->room)
    self->send(slot->room, unsub_atom::value, st.args.conn_id);
  slot.reset(); // a pending subscribe unsubscribes when it is answered
}

void on_text(s2_actor* self, const std::string& text) {
  auto& st = self->state;
  if (st.closing)
    return;
  st.node->counters.messages_in.fetch_add(1, std::memory_order_relaxed);
  if (!admit(st)) {
    st.node->counters.rate_limited.fetch_add(1, std::memory_order_relaxed);
    return send_error(self, error_code::rate_limited);
  }
  auto decoded = protocol::decode_s2(text);
  auto* cmd = std::get_if<protocol::s2_command>(&decoded);
  if (!st.who && st.args.cfg.require_auth &&
      !(cmd && std::holds_alternative<protocol::s2_auth>(*cmd))) {
    // S2: anything but an auth first ends the connection.
    st.node->counters.auth_failures.fetch_add(1, std::memory_order_relaxed);
    send_frame(self, protocol::encode_s2_auth_failed(error_code::auth_required,
                                                     unix_now_ms()));
    return close_with(self, protocol::close_reason::auth_failed);
  }
  if (!cmd) {
    auto code = std::get<error_code>(decoded);
    if (code == error_code::invalid_credentials) // auth without a token
      return on_auth(self, {});
    return send_error(self, code);
  }
  std::visit(
      [&](auto& c) {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, protocol::s2_auth>)
          on_auth(self, c.token);
        else if constexpr (std::is_same_v<T, protocol::s2_subscribe>)
          on_subscribe(self, c);
        else if constexpr (std::is_same_v<T, protocol::s2_unsubscribe>)
          on_unsubscribe(self, c.subscription_id);
        else if constexpr (std::is_same_v<T, protocol::s2_ping>)
          send_frame(self, protocol::encode_s2_pong(unix_now_ms()));
      },
      *cmd);
}

void on_closed(s2_actor* self) {
  auto& st = self->state;
  st.closing = true;
  for (auto& slot : st.streams)
    if (slot && slot->room)
      self->send(slot->room, unsub_atom::value, st.args.conn_id);
  if (st.who)
    st.node->connection_closed(st.who->sub);
  self->quit();
}

caf::behavior s2_connection(s2_actor* self, s2_connection_args args,
                            caf::actor directory, node_state* node) {
  auto& st = self->state;
  st.args = std::move(args);
  st.directory = std::move(directory);
  st.node = node;
  st.node->counters.connections_total.fetch_add(1, std::memory_order_relaxed);
  if (st.args.cfg.require_auth)
    self->delayed_send(self, st.args.cfg.auth_timeout, auth_to_atom::value);
  return {
      [=](text_atom, const std::string& text) { on_text(self, text); },
      [=](closed_atom) { on_closed(self); },
      [=](auth_to_atom) {
        auto& st = self->state;
        if (!st.who && !st.closing) {
          st.node->counters.auth_failures.fetch_add(1,
                                                    std::memory_order_relaxed);
          close_with(self, protocol::close_reason::auth_timeout);
        }
      },
      [=](bool) {}, // a room's answer to an unsubscribe
  };
}

} // namespace

caf::actor spawn_s2_connection(caf::actor_system& sys, s2_connection_args args,
                               caf::actor directory, node_state& node) {
  return sys.spawn(s2_connection, std::move(args), std::move(directory), &node);
}

} // namespace tidings::actors
