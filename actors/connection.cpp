#include "actors/connection.hpp"

#include "actors/history_writer.hpp"
#include "actors/messages.hpp"
#include "protocol/acl.hpp"
#include "protocol/errors.hpp"
#include "protocol/native.hpp"

#include <caf/all.hpp>

#include <map>

namespace tidings::actors {

// -- connection_counts -------------------------------------------------------

namespace {

void release(std::map<std::string, std::uint32_t>& counts,
             const std::string& key) {
  auto i = counts.find(key);
  if (i != counts.end() && --i->second == 0)
    counts.erase(i);
}

std::uint32_t count_of(const std::map<std::string, std::uint32_t>& counts,
                       const std::string& key) {
  auto i = counts.find(key);
  return i == counts.end() ? 0 : i->second;
}

} // namespace

bool connection_counts::try_open_plan(const std::string& user,
                                      std::uint32_t limit) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& n = plan_users_[user];
  if (n >= limit) {
    if (n == 0)
      plan_users_.erase(user);
    return false;
  }
  ++n;
  return true;
}

void connection_counts::close_plan(const std::string& user) {
  std::lock_guard<std::mutex> guard{mtx_};
  release(plan_users_, user);
}

std::optional<protocol::close_reason>
connection_counts::try_open_s3(const std::string& user,
                               const std::string& operation,
                               const protocol::s3_limits& limits) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto refused =
          protocol::s3_admit(count_of(s3_users_, user),
                             count_of(s3_operations_, operation), limits))
    return refused;
  ++s3_users_[user];
  ++s3_operations_[operation];
  return std::nullopt;
}

void connection_counts::close_s3(const std::string& user,
                                 const std::string& operation) {
  std::lock_guard<std::mutex> guard{mtx_};
  release(s3_users_, user);
  release(s3_operations_, operation);
}

std::uint32_t
connection_counts::plan_connections(const std::string& user) const {
  std::lock_guard<std::mutex> guard{mtx_};
  return count_of(plan_users_, user);
}

// -- the actor
// -----------------------------------------------------------------

namespace {

using clock = std::chrono::steady_clock;
using protocol::error_code;
using protocol::ws_dialect;

/// Token bucket: `rate` per second, bursts up to `burst`.
struct rate_limiter {
  double rate = 50;
  double burst = 100;
  double tokens = 100;
  clock::time_point last = clock::now();
  std::uint64_t refused_in_row = 0;

  void reset(double per_second, double max_burst) {
    rate = per_second;
    burst = tokens = max_burst;
  }

  bool take() {
    auto now = clock::now();
    std::chrono::duration<double> dt = now - last;
    last = now;
    tokens = std::min(burst, tokens + dt.count() * rate);
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
  caf::actor writer;
  node_state* node = nullptr;
  std::shared_ptr<const connection_config> cfg;
  std::optional<protocol::claims> who;
  ws_dialect wire = ws_dialect::undecided; // socket_kind::ws only
  std::map<std::string, caf::actor> subs;  // room key → room actor
  rate_limiter limiter;
  bool plan_counted = false; // holds a slot in counts' plan connections
  bool s3_counted = false;   // holds a slot in counts' S3 connections
  bool open_counted = false; // counted in node_state's connections
  bool closing = false;
  static inline const char* name = "connection";
};

using connection_actor = caf::stateful_actor<connection_state>;

bool is_s0(const connection_state& st) {
  return st.wire == ws_dialect::s0;
}

/// How rooms encode events for this connection.
dialect room_dialect(const connection_state& st) {
  if (st.args.kind == socket_kind::s3_operation)
    return dialect::s3;
  return is_s0(st) ? dialect::s0 : dialect::native;
}

void send_frame(connection_actor* self, std::string bytes) {
  self->state.args.sink->deliver(transport::make_frame(std::move(bytes)));
}

void count_error(connection_actor* self) {
  self->state.node->counters.errors_sent.fetch_add(1,
                                                   std::memory_order_relaxed);
}

/// An error not about a room, in the connection's dialect.
void send_error(connection_actor* self, error_code code) {
  count_error(self);
  auto& st = self->state;
  auto now = unix_now_ms();
  if (st.args.kind == socket_kind::s3_operation)
    return send_frame(self, protocol::encode_s3_error(code, now));
  if (is_s0(st))
    return send_frame(self, protocol::encode_s0_error(code, {}, {}, now));
  send_frame(self, protocol::encode_error(code, {}, now));
}

/// An error about `room`: S0 names it in `details`, native in `room_id`.
void send_room_error(connection_actor* self, error_code code,
                     const protocol::room_id& room) {
  count_error(self);
  auto now = unix_now_ms();
  if (is_s0(self->state))
    return send_frame(self, protocol::encode_s0_room_error(code, room, now));
  send_frame(self, protocol::encode_error(code, room.str(), now));
}

void close_with(connection_actor* self, protocol::close_reason why) {
  const auto& e = protocol::describe(why);
  self->state.closing = true;
  self->state.args.sink->close(static_cast<std::uint16_t>(e.code), e.reason);
}

subscriber make_subscriber(connection_actor* self,
                           std::optional<protocol::stream_position> since) {
  auto& st = self->state;
  return subscriber{st.args.conn_id, caf::actor_cast<caf::actor>(self),
                    st.args.sink, room_dialect(st), std::move(since)};
}

void subscribe(connection_actor* self, const protocol::room_id& room,
               std::optional<protocol::stream_position> since = {}) {
  auto& st = self->state;
  if (!protocol::may_subscribe(*st.who, room))
    return send_room_error(self, error_code::access_denied, room);
  if (st.subs.count(room.str()) == 0 &&
      st.subs.size() >= st.cfg->max_subscriptions)
    return send_room_error(self, error_code::too_many_subscriptions, room);
  // await: later commands of this client wait for the answer, so a
  // `list_subscriptions` right after `subscribe` sees the room.
  self->request(st.directory, std::chrono::seconds(10), subscribe_atom::value,
                room, make_subscriber(self, std::move(since)))
      .await(
          [=](caf::actor& room_actor, std::string&, std::uint64_t) {
            auto& st = self->state;
            if (st.subs.emplace(room.str(), std::move(room_actor)).second)
              st.node->joined(st.who->sub, room.str());
          },
          [=](caf::error& err) {
            send_room_error(self, error_code_of(err), room);
          });
}

/// The dialect was just decided as S0: rooms joined before (the auto-joined
/// user room) are joined again, so their events come S0-encoded too. The
/// room replaces the entry and sends no confirmation to S0 subscribers.
void rejoin_as_s0(connection_actor* self) {
  auto& st = self->state;
  for (auto& [key, room_actor] : st.subs)
    if (auto room = protocol::parse_room_id(key))
      self->request(st.directory, std::chrono::seconds(10),
                    subscribe_atom::value, *room, make_subscriber(self, {}))
          .await([](caf::actor&, std::string&, std::uint64_t) {},
                 [](caf::error&) {});
}

void run_command(connection_actor* self, const protocol::cmd_command& cmd) {
  auto& st = self->state;
  if (!protocol::may_subscribe(*st.who, cmd.room))
    return send_room_error(self, error_code::access_denied, cmd.room);
  self->request(st.directory, std::chrono::seconds(10), command_atom::value,
                cmd.room, cmd.name, cmd.args, st.who->sub)
      .await(
          [=](std::uint64_t offset) {
            send_frame(self, protocol::encode_command_result(
                                 cmd.room, cmd.name, offset, unix_now_ms()));
          },
          [=](caf::error& err) {
            send_room_error(self, error_code_of(err), cmd.room);
          });
}

void unsubscribe(connection_actor* self, const protocol::room_id& room) {
  auto& st = self->state;
  auto i = st.subs.find(room.str());
  if (i == st.subs.end())
    return send_room_error(self, error_code::not_subscribed, room);
  auto room_actor = i->second;
  st.subs.erase(i);
  st.node->left(st.who->sub, room.str());
  auto failed = [=](caf::error&) {
    send_room_error(self, error_code::unavailable, room);
  };
  // A room the directory answered for itself is parked there (or was).
  if (room_actor == st.directory)
    self->request(room_actor, std::chrono::seconds(10), unsub_atom::value,
                  room.str(), st.args.conn_id)
        .await([](bool) {}, failed);
  else
    self->request(room_actor, std::chrono::seconds(10), unsub_atom::value,
                  st.args.conn_id)
        .await([](bool) {}, failed);
}

void list_subscriptions(connection_actor* self) {
  auto& st = self->state;
  if (is_s0(st)) {
    // Only S0's own channels: the auto-joined user room is no S0 channel.
    std::vector<protocol::room_id> rooms;
    for (auto& [key, room] : st.subs)
      if (auto id = protocol::parse_room_id(key);
          id && protocol::s0_channel(id->kind()))
        rooms.push_back(*id);
    return send_frame(self, protocol::encode_s0_subscriptions(rooms));
  }
  std::vector<std::string> rooms;
  for (auto& [key, room] : st.subs)
    rooms.push_back(key);
  send_frame(self, protocol::encode_subscriptions(rooms, unix_now_ms()));
}

/// Connection bookkeeping shared by both socket kinds.
void count_open(connection_actor* self) {
  auto& st = self->state;
  st.open_counted = true;
  st.node->connection_opened(st.who->sub);
  st.node->counters.connections_total.fetch_add(1, std::memory_order_relaxed);
}

/// A plan claim's limits: the user's connections on this node and the
/// message rate. False when the connection was refused (and is closing).
bool apply_plan(connection_actor* self) {
  auto& st = self->state;
  auto plan = st.cfg->plans.for_plan(st.who->plan);
  if (!plan)
    return true;
  if (!st.cfg->counts->try_open_plan(st.who->sub, plan->max_connections)) {
    count_error(self);
    send_frame(self, protocol::encode_s0_error(error_code::connection_failed,
                                               {}, {}, unix_now_ms()));
    close_with(self, protocol::close_reason::too_many_connections);
    return false;
  }
  st.plan_counted = true;
  // "Messages/Second": one second's worth, no more, in a burst.
  st.limiter.reset(plan->messages_per_second, plan->messages_per_second);
  return true;
}

void authenticated(connection_actor* self, protocol::claims who) {
  auto& st = self->state;
  st.who = std::move(who);
  if (!apply_plan(self))
    return;
  count_open(self);
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
    // S0 documents this frame ("Invalid or expired token" → UNAUTHORIZED);
    // native clients see the same shape of error frame before the close.
    send_error(self, error_code::unauthorized);
    close_with(self, protocol::close_reason::invalid_token);
    return;
  }
  authenticated(self, std::move(*res));
}

/// False when the message must be dropped (over the rate limit).
bool admit_message(connection_actor* self) {
  auto& st = self->state;
  st.node->counters.messages_in.fetch_add(1, std::memory_order_relaxed);
  if (st.limiter.take())
    return true;
  st.node->counters.rate_limited.fetch_add(1, std::memory_order_relaxed);
  // One error per burst, then close if the client keeps flooding.
  if (st.limiter.refused_in_row == 1)
    send_error(self, error_code::rate_limited);
  else if (st.limiter.refused_in_row > st.limiter.rate * 10)
    close_with(self, protocol::close_reason::rate_limited);
  return false;
}

void run(connection_actor* self, const protocol::command& cmd) {
  auto& st = self->state;
  if (auto* auth = std::get_if<protocol::cmd_auth>(&cmd)) {
    if (st.who)
      return send_error(self, error_code::already_authenticated);
    return try_auth(self, auth->token);
  }
  if (std::holds_alternative<protocol::cmd_ping>(cmd))
    return send_frame(self, is_s0(st) ? protocol::encode_s0_pong(unix_now_ms())
                                      : protocol::encode_pong(unix_now_ms()));
  if (std::holds_alternative<protocol::cmd_pong>(cmd))
    return;
  if (!st.who)
    return send_error(self, error_code::not_authenticated);
  if (auto* sub = std::get_if<protocol::cmd_subscribe>(&cmd))
    return subscribe(self, sub->room, sub->since);
  if (auto* unsub = std::get_if<protocol::cmd_unsubscribe>(&cmd))
    return unsubscribe(self, unsub->room);
  if (auto* c = std::get_if<protocol::cmd_command>(&cmd))
    return run_command(self, *c);
  if (std::holds_alternative<protocol::cmd_list_subscriptions>(cmd))
    return list_subscriptions(self);
}

void on_ws_text(connection_actor* self, const std::string& text) {
  auto& st = self->state;
  if (st.wire == ws_dialect::undecided) {
    auto decided = protocol::classify_ws_message(text);
    if (decided != ws_dialect::undecided) {
      st.wire = decided;
      if (decided == ws_dialect::s0 && st.who)
        rejoin_as_s0(self);
    }
  }
  if (is_s0(st)) {
    auto decoded = protocol::decode_s0(text);
    if (auto* err = std::get_if<protocol::s0_decode_error>(&decoded)) {
      count_error(self);
      return send_frame(self, protocol::encode_s0_error(*err, unix_now_ms()));
    }
    return run(self, std::get<protocol::command>(decoded));
  }
  auto decoded = protocol::decode_native(text);
  if (auto* err = std::get_if<protocol::decode_error>(&decoded)) {
    count_error(self);
    return send_frame(
        self, protocol::encode_error(err->code, err->room, unix_now_ms()));
  }
  run(self, std::get<protocol::command>(decoded));
}

void on_s3_text(connection_actor* self, const std::string& text) {
  // S3: "Unknown message types should be logged, not cause errors".
  if (protocol::decode_s3_operation_message(text) ==
      protocol::s3_client_frame::ping)
    send_frame(self, protocol::encode_s3_pong(unix_now_ms()));
}

void on_text(connection_actor* self, const std::string& text) {
  auto& st = self->state;
  if (st.closing || !admit_message(self))
    return;
  if (st.args.kind == socket_kind::s3_operation)
    return on_s3_text(self, text);
  on_ws_text(self, text);
}

/// S3: look the operation up, check access and limits, then join its room
/// with S3 encoding. Runs while the actor awaits, so client pings wait.
void start_s3(connection_actor* self) {
  auto& st = self->state;
  auto& id = st.args.operation_id;
  if (!protocol::s3_operation_room(id))
    return close_with(self, protocol::close_reason::operation_not_found);
  self->request(st.writer, std::chrono::seconds(10), op_get_atom::value, id)
      .await(
          [=](bool found, persistence::operation_record& rec) {
            auto& st = self->state;
            auto room = protocol::room_id::make(rec.kind, rec.id);
            if (!found || !room)
              return close_with(self,
                                protocol::close_reason::operation_not_found);
            if (st.who->sub != rec.owner &&
                !protocol::may_subscribe(*st.who, *room))
              return close_with(self,
                                protocol::close_reason::operation_forbidden);
            if (auto refused = st.cfg->counts->try_open_s3(
                    st.who->sub, st.args.operation_id, st.cfg->s3))
              return close_with(self, *refused);
            st.s3_counted = true;
            count_open(self);
            self->request(st.directory, std::chrono::seconds(10),
                          subscribe_atom::value, *room,
                          make_subscriber(self, {}))
                .await(
                    [=](caf::actor& room_actor, std::string&, std::uint64_t) {
                      auto& st = self->state;
                      if (st.subs.emplace(room->str(), std::move(room_actor))
                              .second)
                        st.node->joined(st.who->sub, room->str());
                    },
                    [=](caf::error& err) {
                      close_with(
                          self,
                          error_code_of(err) == error_code::operation_not_found
                              ? protocol::close_reason::operation_not_found
                              : protocol::close_reason::internal_error);
                    });
          },
          [=](caf::error&) {
            close_with(self, protocol::close_reason::internal_error);
          });
}

void on_closed(connection_actor* self) {
  auto& st = self->state;
  for (auto& [key, room] : st.subs) {
    if (room == st.directory)
      self->send(room, unsub_atom::value, key, st.args.conn_id);
    else
      self->send(room, unsub_atom::value, st.args.conn_id);
    st.node->left(st.who->sub, key);
  }
  st.subs.clear();
  if (st.plan_counted)
    st.cfg->counts->close_plan(st.who->sub);
  if (st.s3_counted)
    st.cfg->counts->close_s3(st.who->sub, st.args.operation_id);
  if (st.open_counted)
    st.node->connection_closed(st.who->sub);
  self->quit();
}

caf::behavior connection(connection_actor* self, connection_args args,
                         caf::actor directory, caf::actor writer,
                         node_state* node,
                         std::shared_ptr<const connection_config> cfg) {
  auto& st = self->state;
  st.args = std::move(args);
  st.directory = std::move(directory);
  st.writer = std::move(writer);
  st.node = node;
  st.cfg = std::move(cfg);
  st.limiter.reset(st.cfg->commands_per_second,
                   st.cfg->commands_per_second * 2);
  if (st.args.kind == socket_kind::s3_operation) {
    st.who = std::move(st.args.claims); // the gateway checked it is there
    if (st.who)
      start_s3(self);
    else
      close_with(self, protocol::close_reason::auth_required);
  } else if (st.args.claims) {
    authenticated(self, std::move(*st.args.claims));
  } else {
    self->delayed_send(self, st.cfg->auth_timeout, auth_to_atom::value);
  }
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
        auto now = unix_now_ms();
        send_frame(self, is_s0(st) ? protocol::encode_s0_heartbeat(
                                         now, st.node->total_connections())
                                   : protocol::encode_heartbeat(now));
        self->delayed_send(self, st.cfg->heartbeat_interval,
                           heartbeat_atom::value);
      },
  };
}

} // namespace

caf::actor spawn_connection(caf::actor_system& sys, connection_args args,
                            caf::actor directory, caf::actor writer,
                            node_state& node,
                            std::shared_ptr<const connection_config> cfg) {
  return sys.spawn(connection, std::move(args), std::move(directory),
                   std::move(writer), &node, std::move(cfg));
}

} // namespace tidings::actors
