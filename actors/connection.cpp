#include "actors/connection.hpp"

#include "actors/messages.hpp"
#include "protocol/acl.hpp"
#include "protocol/errors.hpp"
#include "protocol/native.hpp"

#include <caf/all.hpp>

#include <map>

namespace tidings::actors {

namespace {

using clock = std::chrono::steady_clock;

/// Token bucket: `rate` per second, bursts up to twice that.
struct rate_limiter {
  double rate = 50;
  double tokens = 100;
  clock::time_point last = clock::now();
  std::uint64_t refused_in_row = 0;

  bool take() {
    auto now = clock::now();
    std::chrono::duration<double> dt = now - last;
    last = now;
    tokens = std::min(rate * 2, tokens + dt.count() * rate);
    if (tokens < 1) {
      ++refused_in_row;
      return false;
    }
    tokens -= 1;
    refused_in_row = 0;
    return true;
  }
};

struct connection_state {
  connection_args args;
  caf::actor directory;
  node_state* node = nullptr;
  std::shared_ptr<const connection_config> cfg;
  std::optional<protocol::claims> who;
  std::map<std::string, caf::actor> subs; // room key → room actor
  rate_limiter limiter;
  bool closing = false;
  static inline const char* name = "connection";
};

using connection_actor = caf::stateful_actor<connection_state>;

void send_frame(connection_actor* self, std::string bytes) {
  self->state.args.sink->deliver(transport::make_frame(std::move(bytes)));
}

void send_error(connection_actor* self, protocol::error_code code,
                std::string_view room = {}) {
  self->state.node->counters.errors_sent.fetch_add(1,
                                                   std::memory_order_relaxed);
  send_frame(self, protocol::encode_error(code, room, unix_now_ms()));
}

void close_with(connection_actor* self, protocol::close_reason why) {
  const auto& e = protocol::describe(why);
  self->state.closing = true;
  self->state.args.sink->close(static_cast<std::uint16_t>(e.code), e.reason);
}

void subscribe(connection_actor* self, const protocol::room_id& room,
               std::optional<protocol::stream_position> since = {}) {
  auto& st = self->state;
  if (!protocol::may_subscribe(*st.who, room))
    return send_error(self, protocol::error_code::access_denied, room.str());
  if (st.subs.count(room.str()) == 0 &&
      st.subs.size() >= st.cfg->max_subscriptions)
    return send_error(self, protocol::error_code::too_many_subscriptions,
                      room.str());
  subscriber sub{st.args.conn_id, caf::actor_cast<caf::actor>(self),
                 st.args.sink, dialect::native, std::move(since)};
  // await: later commands of this client wait for the answer, so a
  // `list_subscriptions` right after `subscribe` sees the room.
  self->request(st.directory, std::chrono::seconds(10), subscribe_atom::value,
                room, std::move(sub))
      .await(
          [=](caf::actor& room_actor, std::string&, std::uint64_t) {
            auto& st = self->state;
            if (st.subs.emplace(room.str(), std::move(room_actor)).second)
              st.node->joined(st.who->sub, room.str());
          },
          [=](caf::error& err) {
            send_error(self, error_code_of(err), room.str());
          });
}

void run_command(connection_actor* self, const protocol::cmd_command& cmd) {
  auto& st = self->state;
  if (!protocol::may_subscribe(*st.who, cmd.room))
    return send_error(self, protocol::error_code::access_denied,
                      cmd.room.str());
  self->request(st.directory, std::chrono::seconds(10), command_atom::value,
                cmd.room, cmd.name, cmd.args, st.who->sub)
      .await(
          [=](std::uint64_t offset) {
            send_frame(self, protocol::encode_command_result(
                                 cmd.room, cmd.name, offset, unix_now_ms()));
          },
          [=](caf::error& err) {
            send_error(self, error_code_of(err), cmd.room.str());
          });
}

void unsubscribe(connection_actor* self, const protocol::room_id& room) {
  auto& st = self->state;
  auto i = st.subs.find(room.str());
  if (i == st.subs.end())
    return send_error(self, protocol::error_code::not_subscribed, room.str());
  auto room_actor = i->second;
  st.subs.erase(i);
  st.node->left(st.who->sub, room.str());
  self->request(room_actor, std::chrono::seconds(10), unsub_atom::value,
                st.args.conn_id)
      .await([](bool) {},
             [=](caf::error&) {
               send_error(self, protocol::error_code::unavailable, room.str());
             });
}

void authenticated(connection_actor* self, protocol::claims who) {
  auto& st = self->state;
  st.who = std::move(who);
  st.node->connection_opened(st.who->sub);
  st.node->counters.connections_total.fetch_add(1, std::memory_order_relaxed);
  send_frame(self,
             protocol::encode_connected(st.args.connection_id, unix_now_ms()));
  if (auto own = protocol::room_id::make(protocol::user_room_kind, st.who->sub))
    subscribe(self, *own);
  if (st.cfg->heartbeat_interval.count() > 0)
    self->delayed_send(self, st.cfg->heartbeat_interval, heartbeat_atom::value);
}

void try_auth(connection_actor* self, const std::string& token) {
  auto& st = self->state;
  auto res =
      protocol::verify_jwt(token, *st.cfg->key, st.cfg->policy, unix_now());
  if (!res) {
    st.node->counters.auth_failures.fetch_add(1, std::memory_order_relaxed);
    close_with(self, protocol::close_reason::invalid_token);
    return;
  }
  authenticated(self, std::move(*res));
}

void on_text(connection_actor* self, const std::string& text) {
  auto& st = self->state;
  if (st.closing)
    return;
  st.node->counters.messages_in.fetch_add(1, std::memory_order_relaxed);
  if (!st.limiter.take()) {
    st.node->counters.rate_limited.fetch_add(1, std::memory_order_relaxed);
    // One error per burst, then close if the client keeps flooding.
    if (st.limiter.refused_in_row == 1)
      send_error(self, protocol::error_code::rate_limited);
    else if (st.limiter.refused_in_row > st.limiter.rate * 10)
      close_with(self, protocol::close_reason::rate_limited);
    return;
  }
  auto decoded = protocol::decode_native(text);
  if (auto* err = std::get_if<protocol::decode_error>(&decoded))
    return send_error(self, err->code, err->room);
  auto& cmd = std::get<protocol::command>(decoded);
  if (auto* auth = std::get_if<protocol::cmd_auth>(&cmd)) {
    if (st.who)
      return send_error(self, protocol::error_code::already_authenticated);
    return try_auth(self, auth->token);
  }
  if (std::holds_alternative<protocol::cmd_ping>(cmd))
    return send_frame(self, protocol::encode_pong(unix_now_ms()));
  if (std::holds_alternative<protocol::cmd_pong>(cmd))
    return;
  if (!st.who)
    return send_error(self, protocol::error_code::not_authenticated);
  if (auto* sub = std::get_if<protocol::cmd_subscribe>(&cmd))
    return subscribe(self, sub->room, sub->since);
  if (auto* unsub = std::get_if<protocol::cmd_unsubscribe>(&cmd))
    return unsubscribe(self, unsub->room);
  if (auto* c = std::get_if<protocol::cmd_command>(&cmd))
    return run_command(self, *c);
  if (std::holds_alternative<protocol::cmd_list_subscriptions>(cmd)) {
    std::vector<std::string> rooms;
    for (auto& [key, room] : st.subs)
      rooms.push_back(key);
    return send_frame(self,
                      protocol::encode_subscriptions(rooms, unix_now_ms()));
  }
}

void on_closed(connection_actor* self) {
  auto& st = self->state;
  for (auto& [key, room] : st.subs) {
    self->send(room, unsub_atom::value, st.args.conn_id);
    st.node->left(st.who->sub, key);
  }
  st.subs.clear();
  if (st.who)
    st.node->connection_closed(st.who->sub);
  self->quit();
}

caf::behavior connection(connection_actor* self, connection_args args,
                         caf::actor directory, node_state* node,
                         std::shared_ptr<const connection_config> cfg) {
  auto& st = self->state;
  st.args = std::move(args);
  st.directory = std::move(directory);
  st.node = node;
  st.cfg = std::move(cfg);
  st.limiter.rate = st.cfg->commands_per_second;
  st.limiter.tokens = st.cfg->commands_per_second * 2;
  if (st.args.claims)
    authenticated(self, std::move(*st.args.claims));
  else
    self->delayed_send(self, st.cfg->auth_timeout, auth_to_atom::value);
  return {
      [=](text_atom, const std::string& text) { on_text(self, text); },
      [=](closed_atom) { on_closed(self); },
      [=](auth_to_atom) {
        if (!self->state.who && !self->state.closing) {
          self->state.node->counters.auth_failures.fetch_add(
              1, std::memory_order_relaxed);
          close_with(self, protocol::close_reason::auth_timeout);
        }
      },
      [=](heartbeat_atom) {
        auto& st = self->state;
        if (st.closing)
          return;
        send_frame(self, protocol::encode_heartbeat(unix_now_ms()));
        self->delayed_send(self, st.cfg->heartbeat_interval,
                           heartbeat_atom::value);
      },
  };
}

} // namespace

caf::actor spawn_connection(caf::actor_system& sys, connection_args args,
                            caf::actor directory, node_state& node,
                            std::shared_ptr<const connection_config> cfg) {
  return sys.spawn(connection, std::move(args), std::move(directory), &node,
                   std::move(cfg));
}

} // namespace tidings::actors
