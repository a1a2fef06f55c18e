#include "actors/gateway.hpp"

#include "actors/cluster_api.hpp"
#include "actors/history_writer.hpp"
#include "actors/http_replies.hpp"
#include "actors/messages.hpp"
#include "protocol/acl.hpp"
#include "protocol/dialect_s0.hpp"
#include "protocol/native.hpp"
#include "protocol/publish_request.hpp"
#include "protocol/uri.hpp"

#include <caf/all.hpp>

namespace tidings::actors {
namespace {

/// `GET /api/v1/operations/{id}` (`events` false) or `POST …/events`, as
/// the relay below runs it: the caller's claims when it used a JWT.
struct operation_call {
  std::string id;
  bool events = false;
  std::optional<protocol::claims> who;
  std::string body;
};

} // namespace
} // namespace tidings::actors

// The relay below takes these in messages; they never leave the node.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tidings::transport::http_responder)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tidings::actors::operation_call)

#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <unordered_map>

namespace tidings::actors {

namespace {

using protocol::error_code;
using transport::http_response;

/// For sessions refused before an actor existed (bad token in the query).
class closed_handler : public transport::connection_handler {
 public:
  void on_message(std::string) override {}
  void on_closed() override {}
};

std::shared_ptr<transport::connection_handler>
refuse(transport::frame_sink& sink, protocol::close_reason why) {
  const auto& e = protocol::describe(why);
  sink.close(static_cast<std::uint16_t>(e.code), e.reason);
  return std::make_shared<closed_handler>();
}

/// The `{operation_id}` of S3's `/ws/operations/{operation_id}` (raw, not
/// yet decoded); nullopt for other paths or an empty id.
std::optional<std::string_view> s3_operation_path(std::string_view path) {
  constexpr std::string_view prefix = "/ws/operations/";
  if (path.size() <= prefix.size() || path.substr(0, prefix.size()) != prefix)
    return std::nullopt;
  return path.substr(prefix.size());
}

std::string operation_body(const persistence::operation_record& rec,
                           const protocol::room_id& room,
                           const std::string& state, std::uint64_t offset,
                           const std::string& epoch) {
  std::string body = "{\"id\":";
  protocol::append_json_string(body, rec.id);
  body += ",\"kind\":";
  protocol::append_json_string(body, rec.kind);
  body += ",\"owner\":";
  protocol::append_json_string(body, rec.owner);
  body += ",\"room_id\":";
  protocol::append_json_string(body, room.str());
  body += ",\"state\":" + state + ",\"offset\":" + std::to_string(offset) +
          ",\"epoch\":";
  protocol::append_json_string(body, epoch);
  return body + "}";
}

/// The history API's answer: the room's position and a page of events.
std::string history_body(const protocol::room_id& room,
                         const std::string& epoch, std::uint64_t offset,
                         std::vector<persistence::stored_event>& events) {
  std::string body = "{\"room_id\":";
  protocol::append_json_string(body, room.str());
  body += ",\"epoch\":";
  protocol::append_json_string(body, epoch);
  body += ",\"offset\":" + std::to_string(offset) + ",\"events\":[";
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (i)
      body += ',';
    body += protocol::encode_event(
        to_publication(room, epoch, std::move(events[i])));
  }
  return body + "]}";
}

/// Waits for the answers to API requests that need an actor (publishes,
/// operation creations, events and reads, history pages), for every HTTP
/// session at once. One long-lived actor instead of one actor per request,
/// and no CAF request timeout: each of those wakes CAF's timer thread when
/// it is set, when its actor ends with it pending, and when it fires. The
/// backstop is a sweep once a second that answers a request still
/// unanswered after `api_deadline` with `unavailable`.
struct relay_state {
  struct entry {
    transport::http_responder respond;
    caf::actor_clock::time_point deadline;
  };
  std::map<std::uint64_t, entry> waiting; // ids grow with time
  std::uint64_t next_id = 0;
  bool sweep_armed = false;
  /// Kind and owner of operations looked up before: an operation record
  /// never changes once created, so an event for a known operation skips
  /// the store. (Its room still refuses it if the operation is unknown
  /// there.) Cleared when full.
  struct operation {
    std::string kind;
    std::string owner;
  };
  std::unordered_map<std::string, operation> operations;
  static inline const char* name = "api_relay";
};

constexpr std::size_t max_known_operations = 10000;

using relay_actor = caf::stateful_actor<relay_state>;

constexpr std::chrono::seconds api_deadline{10};
constexpr std::chrono::seconds relay_sweep{1};

/// Keeps `respond` until relay_answer(id) or the deadline.
std::uint64_t relay_track(relay_actor* self,
                          transport::http_responder respond) {
  auto& st = self->state;
  auto id = ++st.next_id;
  st.waiting.emplace(
      id, relay_state::entry{std::move(respond),
                             self->clock().now() + api_deadline});
  if (!st.sweep_armed) {
    st.sweep_armed = true;
    self->delayed_send(self, relay_sweep, tick_atom::value);
  }
  return id;
}

void relay_answer(relay_actor* self, std::uint64_t id, http_response r) {
  auto& w = self->state.waiting;
  auto i = w.find(id);
  if (i == w.end()) // answered by the sweep already
    return;
  auto respond = std::move(i->second.respond);
  w.erase(i);
  respond(std::move(r));
}

std::string offset_body(const std::string& room, std::uint64_t offset) {
  std::string body = "{\"room_id\":";
  protocol::append_json_string(body, room);
  body += ",\"offset\":" + std::to_string(offset) + "}";
  return body;
}

/// Publishes `pub` through the directory and answers `id` with its offset.
void relay_publish(relay_actor* self, caf::actor dir, std::uint64_t id,
                   protocol::publish_request pub) {
  auto room = pub.room.str();
  self->request(dir, caf::infinite, publish_atom::value, std::move(pub))
      .then(
          [=](std::uint64_t offset) {
            relay_answer(self, id, json_reply(200, offset_body(room, offset)));
          },
          [=](caf::error& err) {
            relay_answer(self, id, error_reply(error_code_of(err)));
          });
}

/// An operation event (published to the operation's room) or a read of its
/// state, once the operation's kind and owner are known.
void relay_operation(relay_actor* self, caf::actor dir, std::uint64_t id,
                     const operation_call& call,
                     const relay_state::operation& op) {
  auto room = protocol::room_id::make(op.kind, call.id);
  if (!room)
    return relay_answer(self, id, error_reply(error_code::operation_not_found));
  if (call.who && call.who->sub != op.owner &&
      !protocol::may_subscribe(*call.who, *room))
    return relay_answer(self, id, error_reply(error_code::access_denied));
  if (call.events) {
    auto parsed = protocol::parse_operation_event(call.body, *room);
    if (auto* err = std::get_if<protocol::request_error>(&parsed))
      return relay_answer(self, id, error_reply(err->code, err->detail));
    return relay_publish(
        self, dir, id, std::get<protocol::publish_request>(std::move(parsed)));
  }
  persistence::operation_record rec;
  rec.id = call.id;
  rec.kind = op.kind;
  rec.owner = op.owner;
  self->request(dir, caf::infinite, state_atom::value, *room)
      .then(
          [=](bool exists, std::string& state, std::uint64_t offset,
              std::string& epoch) {
            if (!exists)
              return relay_answer(self, id,
                                  error_reply(error_code::operation_not_found));
            relay_answer(self, id,
                         json_reply(200, operation_body(rec, *room, state,
                                                        offset, epoch)));
          },
          [=](caf::error& err) {
            relay_answer(self, id, error_reply(error_code_of(err)));
          });
}

caf::behavior api_relay(relay_actor* self, caf::actor dir, caf::actor writer) {
  return {
      [=](publish_atom, protocol::publish_request& pub,
          transport::http_responder& respond) {
        relay_publish(self, dir, relay_track(self, std::move(respond)),
                      std::move(pub));
      },
      [=](op_create_atom, protocol::room_id& room,
          persistence::operation_record& rec,
          transport::http_responder& respond) {
        auto id = relay_track(self, std::move(respond));
        self->request(dir, caf::infinite, op_create_atom::value, room, rec)
            .then(
                [=](std::string& state, std::uint64_t offset,
                    std::string& epoch) {
                  relay_answer(self, id,
                               json_reply(201, operation_body(rec, room, state,
                                                              offset, epoch)));
                },
                [=](caf::error& err) {
                  relay_answer(self, id, error_reply(error_code_of(err)));
                });
      },
      [=](op_get_atom, operation_call& call,
          transport::http_responder& respond) {
        auto id = relay_track(self, std::move(respond));
        auto& known = self->state.operations;
        if (auto i = known.find(call.id); i != known.end())
          return relay_operation(self, dir, id, call, i->second);
        self->request(writer, caf::infinite, op_get_atom::value, call.id)
            .then(
                [=](bool found, persistence::operation_record& rec) {
                  if (!found)
                    return relay_answer(
                        self, id, error_reply(error_code::operation_not_found));
                  auto& known = self->state.operations;
                  if (known.size() >= max_known_operations)
                    known.clear();
                  auto& op = known[rec.id];
                  op.kind = std::move(rec.kind);
                  op.owner = std::move(rec.owner);
                  relay_operation(self, dir, id, call, op);
                },
                [=](caf::error& err) {
                  relay_answer(self, id, error_reply(error_code_of(err)));
                });
      },
      // GET /api/v1/rooms/{room}/history: through the directory, which
      // asks the room's owner when that is another node.
      [=](read_atom, protocol::room_id& room, std::uint64_t since,
          std::uint64_t limit, transport::http_responder& respond) {
        auto id = relay_track(self, std::move(respond));
        auto fail = [=](caf::error&) {
          relay_answer(self, id, error_reply(error_code::unavailable));
        };
        auto key = room.str();
        self->request(dir, caf::infinite, position_atom::value, key)
            .then(
                [=](std::string& epoch, std::uint64_t offset) {
                  self->request(dir, caf::infinite, read_atom::value, key,
                                since, limit)
                      .then(
                          [=](std::vector<persistence::stored_event>& events) {
                            relay_answer(self, id,
                                         json_reply(200, history_body(
                                                             room, epoch,
                                                             offset, events)));
                          },
                          fail);
                },
                fail);
      },
      [=](tick_atom) {
        auto& st = self->state;
        auto now = self->clock().now();
        while (!st.waiting.empty() &&
               st.waiting.begin()->second.deadline <= now) {
          auto respond = std::move(st.waiting.begin()->second.respond);
          st.waiting.erase(st.waiting.begin());
          respond(error_reply(error_code::unavailable));
        }
        st.sweep_armed = !st.waiting.empty();
        if (st.sweep_armed)
          self->delayed_send(self, relay_sweep, tick_atom::value);
      },
  };
}

} // namespace

gateway::gateway(caf::actor_system& sys, caf::actor directory,
                 caf::actor writer, node_state& node, gateway_config cfg)
    : sys_(sys), directory_(std::move(directory)), writer_(std::move(writer)),
      node_(node), cfg_(std::move(cfg)) {
  // Connection ids are unique across restarts: a random per-process prefix
  // and a counter.
  std::random_device rd;
  char buf[20];
  std::snprintf(buf, sizeof buf, "%08x", rd());
  conn_prefix_ = buf;
  // Long-poll reads go through the directory, which asks the room's owner.
  streams_ = std::make_unique<stream_http>(sys_, directory_, directory_, node_,
                                           cfg_.conn, cfg_.streams);
  relay_ = sys_.spawn(api_relay, directory_, writer_);
}

gateway::~gateway() {
  stop();
}

void gateway::stop() {
  if (!stopped_.exchange(true))
    caf::anon_send_exit(relay_, caf::exit_reason::user_shutdown);
}

std::optional<protocol::claims>
gateway::bearer_claims(const std::string& header) {
  auto tok = protocol::bearer_token(header);
  if (!tok)
    return std::nullopt;
  auto res = protocol::verify_jwt(*tok, *cfg_.conn->key, cfg_.conn->policy,
                                  unix_now());
  if (!res)
    return std::nullopt;
  return std::move(*res);
}

void gateway::handle_http(transport::http_request req,
                          transport::http_responder respond) {
  auto [path, query] = protocol::split_target(req.target);
  bool get = req.method == "GET";
  if (path == "/healthz") {
    if (!get)
      return respond(error_reply(error_code::method_not_allowed));
    return respond(json_reply(200, "{\"status\":\"ok\"}"));
  }
  if (path == "/metrics") {
    if (!get)
      return respond(error_reply(error_code::method_not_allowed));
    http_response r;
    r.content_type = "text/plain; version=0.0.4";
    r.body = node_.render_metrics();
    if (cfg_.extra_metrics)
      r.body += cfg_.extra_metrics();
    return respond(std::move(r));
  }
  if (path == "/api/v1/publish") {
    if (req.method != "POST")
      return respond(error_reply(error_code::method_not_allowed));
    return publish(req, respond);
  }
  if (path == "/api/v1/cluster" && cfg_.cluster) {
    if (!get)
      return respond(error_reply(error_code::method_not_allowed));
    if (!bearer_claims(req.authorization))
      return respond(error_reply(error_code::unauthorized));
    return cfg_.cluster->handle(query, std::move(respond));
  }
  if (path == "/api/v1/ws/stats" || path == "/api/v1/ws/rooms") {
    if (!get)
      return respond(error_reply(error_code::method_not_allowed));
    auto who = bearer_claims(req.authorization);
    if (!who)
      return respond(error_reply(error_code::unauthorized));
    if (path == "/api/v1/ws/stats") {
      std::string body =
          "{\"total_connections\":" +
          std::to_string(node_.total_connections()) + ",\"user_connections\":" +
          std::to_string(node_.user_connections(who->sub)) +
          ",\"active_rooms\":" + std::to_string(node_.active_room_count()) +
          "}";
      return respond(json_reply(200, std::move(body)));
    }
    auto rooms = who->admin ? node_.active_rooms() : node_.user_rooms(who->sub);
    std::string body = "{\"active_rooms\":" + json_string_array(rooms) +
                       ",\"total_rooms\":" + std::to_string(rooms.size()) + "}";
    return respond(json_reply(200, std::move(body)));
  }
  constexpr std::string_view ops = "/api/v1/operations";
  if (path == ops)
    return operations({}, req, respond);
  if (path.size() > ops.size() + 1 &&
      path.substr(0, ops.size() + 1) == "/api/v1/operations/")
    return operations(path.substr(ops.size() + 1), req, respond);
  constexpr std::string_view rooms_prefix = "/api/v1/rooms/";
  constexpr std::string_view history_suffix = "/history";
  if (path.size() > rooms_prefix.size() + history_suffix.size() &&
      path.substr(0, rooms_prefix.size()) == rooms_prefix &&
      path.substr(path.size() - history_suffix.size()) == history_suffix) {
    if (!get)
      return respond(error_reply(error_code::method_not_allowed));
    return history(
        path.substr(rooms_prefix.size(),
                    path.size() - rooms_prefix.size() - history_suffix.size()),
        query, req.authorization, respond);
  }
  if (streams_->handle(req, path, query, respond))
    return;
  respond(error_reply(error_code::not_found));
}

void gateway::history(std::string_view room_text, std::string_view query,
                      const std::string& authorization,
                      transport::http_responder& respond) {
  constexpr std::uint64_t max_limit = 1000;
  auto who = bearer_claims(authorization);
  if (!who)
    return respond(error_reply(error_code::unauthorized));
  auto decoded = protocol::percent_decode(room_text);
  auto room = decoded ? protocol::parse_room_id(*decoded) : std::nullopt;
  if (!room)
    return respond(error_reply(error_code::invalid_room));
  if (!protocol::may_subscribe(*who, *room))
    return respond(error_reply(error_code::access_denied));
  std::uint64_t since = 0;
  std::uint64_t limit = 100;
  auto number = [&](std::string_view name, std::uint64_t& out) {
    auto v = protocol::query_param(query, name);
    if (!v)
      return true;
    try {
      std::size_t used = 0;
      out = std::stoull(*v, &used);
      return used == v->size() && !v->empty() && (*v)[0] != '-';
    } catch (const std::exception&) {
      return false;
    }
  };
  if (!number("since", since) || !number("limit", limit) || limit == 0)
    return respond(error_reply(error_code::invalid_message,
                               "since and limit must be non-negative "
                               "integers; limit at least 1"));
  limit = std::min(limit, max_limit);
  if (stopped_.load(std::memory_order_relaxed))
    return respond(error_reply(error_code::unavailable));
  caf::anon_send(relay_, read_atom::value, std::move(*room), since, limit,
                 std::move(respond));
}

bool gateway::api_key_ok(const std::string& authorization) const {
  auto key = protocol::bearer_token(authorization);
  return !cfg_.api_key.empty() && key && same_secret(*key, cfg_.api_key);
}

void gateway::operations(std::string_view rest, transport::http_request& req,
                         transport::http_responder& respond) {
  auto now = unix_now_ms();
  if (rest.empty()) { // POST /api/v1/operations
    if (req.method != "POST")
      return respond(error_reply(error_code::method_not_allowed));
    if (!api_key_ok(req.authorization))
      return respond(error_reply(error_code::unauthorized));
    auto parsed = protocol::parse_operation_create(req.body);
    if (auto* err = std::get_if<protocol::request_error>(&parsed))
      return respond(error_reply(err->code, err->detail));
    auto op = std::get<protocol::operation_create>(std::move(parsed));
    if (!cfg_.kinds || !cfg_.kinds->is_operation_kind(op.kind))
      return respond(error_reply(error_code::invalid_message,
                                 "kind is not an operation kind "
                                 "(see --operation-kinds)"));
    persistence::operation_record rec{op.id, op.kind, op.owner, op.meta, now};
    if (stopped_.load(std::memory_order_relaxed))
      return respond(error_reply(error_code::unavailable));
    caf::anon_send(relay_, op_create_atom::value, std::move(op.room),
                   std::move(rec), std::move(respond));
    return;
  }
  // /api/v1/operations/{id}[/events]
  bool events = false;
  constexpr std::string_view events_suffix = "/events";
  if (rest.size() > events_suffix.size() &&
      rest.substr(rest.size() - events_suffix.size()) == events_suffix) {
    events = true;
    rest.remove_suffix(events_suffix.size());
  }
  auto id = protocol::percent_decode(rest);
  if (!id || id->empty() || id->find('/') != std::string::npos)
    return respond(error_reply(error_code::not_found));
  if (events ? req.method != "POST" : req.method != "GET")
    return respond(error_reply(error_code::method_not_allowed));
  std::optional<protocol::claims> who;
  if (!api_key_ok(req.authorization)) {
    if (events)
      return respond(error_reply(error_code::unauthorized));
    who = bearer_claims(req.authorization);
    if (!who)
      return respond(error_reply(error_code::unauthorized));
  }
  if (stopped_.load(std::memory_order_relaxed))
    return respond(error_reply(error_code::unavailable));
  caf::anon_send(relay_, op_get_atom::value,
                 operation_call{std::move(*id), events, std::move(who),
                                std::move(req.body)},
                 std::move(respond));
}

void gateway::publish(transport::http_request& req,
                      transport::http_responder& respond) {
  if (!api_key_ok(req.authorization))
    return respond(error_reply(error_code::unauthorized));
  auto parsed = protocol::parse_publish_request(req.body);
  if (auto* err = std::get_if<protocol::request_error>(&parsed))
    return respond(error_reply(err->code, err->detail));
  auto pub = std::get<protocol::publish_request>(std::move(parsed));
  if (stopped_.load(std::memory_order_relaxed))
    return respond(error_reply(error_code::unavailable));
  caf::anon_send(relay_, publish_atom::value, std::move(pub),
                 std::move(respond));
}

std::optional<transport::http_response>
gateway::check_upgrade(const transport::http_request& req) {
  auto [path, query] = protocol::split_target(req.target);
  if (path == "/api/v1/ws" || s3_operation_path(path))
    return std::nullopt;
  if (cfg_.kinds && cfg_.kinds->socket_kind(path))
    return std::nullopt;
  return error_reply(error_code::not_found);
}

std::shared_ptr<transport::connection_handler>
gateway::open(const transport::http_request& req,
              std::shared_ptr<transport::frame_sink> sink) {
  connection_args args;
  args.conn_id = next_conn_.fetch_add(1, std::memory_order_relaxed);
  args.connection_id = conn_prefix_ + "-" + std::to_string(args.conn_id);
  args.sink = sink;
  auto [path, query] = protocol::split_target(req.target);
  auto token = protocol::query_param(query, "token");
  // A token key whose value does not decode is a bad token, not a missing
  // one: refuse it now rather than after the auth timeout.
  bool token_sent = token ? !token->empty()
                          : (query.rfind("token=", 0) == 0 ||
                             query.find("&token=") != std::string_view::npos);
  if (token_sent) {
    auto res = token ? protocol::verify_jwt(*token, *cfg_.conn->key,
                                            cfg_.conn->policy, unix_now())
                     : result<protocol::claims>{
                           error_info{"UNAUTHORIZED", "malformed token"}};
    if (!res) {
      node_.counters.auth_failures.fetch_add(1, std::memory_order_relaxed);
      // S0's "Authentication Errors" frame; native clients get the same
      // shape of error frame before the close.
      if (path == "/api/v1/ws")
        sink->deliver(transport::make_frame(protocol::encode_s0_error(
            error_code::unauthorized, {}, {}, unix_now_ms())));
      return refuse(*sink, protocol::close_reason::invalid_token);
    }
    args.claims = std::move(*res);
  }
  if (auto op = s3_operation_path(path)) {
    // S3 authenticates in the query only.
    if (!args.claims)
      return refuse(*sink, protocol::close_reason::auth_required);
    args.kind = socket_kind::s3_operation;
    // Undecodable ids stay empty: the actor closes `operation_not_found`.
    if (auto id = protocol::percent_decode(*op))
      args.operation_id = std::move(*id);
  } else if (path != "/api/v1/ws") {
    std::string_view rest;
    auto* make = cfg_.kinds ? cfg_.kinds->socket_kind(path, &rest) : nullptr;
    auto decoded = protocol::percent_decode(rest);
    if (!make || !decoded)
      return refuse(*sink, protocol::close_reason::protocol_error);
    socket_request sr{std::move(*decoded), std::string{query}, sink,
                      std::move(args.claims)};
    auto served = (*make)(sys_, std::move(sr));
    if (!served) // the factory refused it (and closed the session)
      return std::make_shared<closed_handler>();
    return std::make_shared<actor_handler>(std::move(served));
  }
  auto conn = spawn_connection(sys_, std::move(args), directory_, writer_,
                               node_, cfg_.conn);
  return std::make_shared<actor_handler>(std::move(conn));
}

} // namespace tidings::actors
