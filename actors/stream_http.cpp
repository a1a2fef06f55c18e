#include "actors/stream_http.hpp"

#include "actors/clock.hpp"
#include "actors/history_writer.hpp"
#include "actors/http_replies.hpp"
#include "actors/messages.hpp"
#include "protocol/acl.hpp"
#include "protocol/cursor.hpp"
#include "protocol/dialect_s0.hpp"
#include "protocol/jwt.hpp"
#include "protocol/longpoll.hpp"
#include "protocol/publish_request.hpp"
#include "protocol/sse.hpp"
#include "protocol/uri.hpp"

#include <caf/all.hpp>

#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tidings::actors {

namespace {

using protocol::error_code;
using transport::http_response;

using lp_wake_atom = caf::atom_constant<caf::atom("lp_wake")>;
using lp_timeout_atom = caf::atom_constant<caf::atom("lp_timeout")>;

// Apart from the gateway's WebSocket connection ids (which count from 1):
// a room keys its subscribers by conn_id.
constexpr std::uint64_t conn_id_base = std::uint64_t{1} << 62;

constexpr auto actor_timeout = std::chrono::seconds(10);

// `?token=` first (EventSource cannot set headers), else the Bearer header.
std::optional<protocol::claims> caller(const connection_config& conn,
                                       const transport::http_request& req,
                                       std::string_view query) {
  std::optional<std::string> token = protocol::query_param(query, "token");
  if (!token || token->empty()) {
    auto b = protocol::bearer_token(req.authorization);
    if (!b)
      return std::nullopt;
    token = std::string(*b);
  }
  auto res = protocol::verify_jwt(*token, *conn.key, conn.policy, unix_now());
  if (!res)
    return std::nullopt;
  return std::move(*res);
}

// ------------------------------------------------------------------- SSE

struct sse_start {
  std::uint64_t conn_id = 0;
  protocol::room_id room;
  std::optional<protocol::stream_position> since;
  std::string user;
  std::shared_ptr<transport::frame_sink> sink;
};

struct sse_state {
  sse_start start;
  caf::actor room; // once subscribed
  bool closed = false;
  static inline const char* name = "sse_stream";
};

using sse_actor = caf::stateful_actor<sse_state>;

void sse_end(sse_actor* self) {
  auto& st = self->state;
  if (st.closed)
    return;
  st.closed = true;
  if (st.room)
    self->send(st.room, unsub_atom::value, st.start.conn_id);
  self->quit();
}

caf::behavior sse_stream(sse_actor* self, sse_start start, caf::actor directory,
                         node_state* node,
                         std::chrono::milliseconds heartbeat) {
  auto& st = self->state;
  st.start = std::move(start);
  node->connection_opened(st.start.user);
  self->attach_functor([node, user = st.start.user](const caf::error&) {
    node->connection_closed(user);
  });
  subscriber sub{st.start.conn_id, caf::actor_cast<caf::actor>(self),
                 st.start.sink, dialect::sse, st.start.since};
  self->request(directory, actor_timeout, subscribe_atom::value, st.start.room,
                std::move(sub))
      .then(
          [=](caf::actor& room, std::string&, std::uint64_t) {
            auto& st = self->state;
            if (st.closed) {
              self->send(room, unsub_atom::value, st.start.conn_id);
              return;
            }
            st.room = room;
            self->monitor(room);
            node->joined(st.start.user, st.start.room.str());
            self->attach_functor(
                [node, user = st.start.user, key = st.start.room.str()](
                    const caf::error&) { node->left(user, key); });
          },
          [=](caf::error& err) {
            // The head is out already: the failure becomes an event, then
            // the stream ends.
            auto& sink = *self->state.start.sink;
            sink.deliver(transport::make_frame(protocol::encode_sse_event(
                "error", {}, protocol::encode_http_error(error_code_of(err)))));
            sink.close(1000, {});
          });
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.room && dm.source == st.room.address()) {
      // The room went away (node shutdown): end the stream; the client
      // reconnects with its Last-Event-ID.
      st.room = nullptr;
      st.start.sink->close(1001, {});
    }
  });
  auto beat = transport::make_frame(protocol::encode_sse_comment("heartbeat"));
  if (heartbeat.count() > 0)
    self->delayed_send(self, heartbeat, heartbeat_atom::value);
  return {
      [=](closed_atom) { sse_end(self); },
      [=](bool) {}, // a room's answer to an unsubscribe
      [=](heartbeat_atom) {
        if (self->state.closed)
          return;
        self->state.start.sink->deliver(beat);
        self->delayed_send(self, heartbeat, heartbeat_atom::value);
      },
  };
}

// The transport's side of one SSE stream: spawns the stream actor when the
// head is out and tells it when the client is gone. The transport holds the
// only reference; if it drops the handler without a call (a stopped
// io_context), the destructor stands in for on_closed.
class sse_handler final : public transport::stream_handler {
 public:
  sse_handler(caf::actor_system& sys, sse_start start, caf::actor directory,
              node_state& node, std::chrono::milliseconds heartbeat)
      : sys_(sys), start_(std::move(start)), directory_(std::move(directory)),
        node_(node), heartbeat_(heartbeat) {}

  ~sse_handler() override { on_closed(); }

  void on_open(std::shared_ptr<transport::frame_sink> sink) override {
    std::lock_guard<std::mutex> lock(mtx_);
    if (closed_)
      return;
    start_.sink = std::move(sink);
    actor_ = sys_.spawn(sse_stream, std::move(start_), directory_, &node_,
                        heartbeat_);
  }

  void on_closed() override {
    caf::actor a;
    {
      std::lock_guard<std::mutex> lock(mtx_);
      if (closed_)
        return;
      closed_ = true;
      a = std::move(actor_);
    }
    if (a)
      caf::anon_send(a, closed_atom::value);
  }

 private:
  caf::actor_system& sys_;
  std::mutex mtx_;
  bool closed_ = false;
  sse_start start_;
  caf::actor directory_;
  node_state& node_;
  std::chrono::milliseconds heartbeat_;
  caf::actor actor_;
};

// -------------------------------------------------------------- long-poll

// What a room hands a waiting long-poll: a wake-up per committed event; the
// events themselves are read from history.
class wake_sink final : public transport::frame_sink {
 public:
  explicit wake_sink(caf::actor target) : target_(std::move(target)) {}
  bool deliver(transport::frame) override {
    caf::anon_send(target_, lp_wake_atom::value);
    return true;
  }
  void close(std::uint16_t, std::string_view) override {}
  std::size_t queued_bytes() const override { return 0; }
  std::size_t max_queued_bytes() const override { return std::size_t{1} << 30; }

 private:
  caf::actor target_;
};

struct lp_request {
  std::uint64_t conn_id = 0;
  protocol::room_id room;
  protocol::longpoll_query query;
  transport::http_responder respond;
  std::shared_ptr<std::atomic<std::size_t>> waiters;
};

struct lp_state {
  lp_request req;
  std::string epoch;
  std::uint64_t after = 0; // answer events with larger offsets
  caf::actor room;         // while subscribed for wake-ups
  bool reading = false;
  bool dirty = false; // a wake-up came during a read
  bool done = false;
  static inline const char* name = "longpoll";
};

using lp_actor = caf::stateful_actor<lp_state>;

bool terminal_event(const protocol::publication& pub) {
  auto t = protocol::longpoll_event_type(pub);
  return t == "completed" || t == "failed" || t == "cancelled";
}

void lp_answer(lp_actor* self, std::vector<protocol::publication> events) {
  auto& st = self->state;
  if (st.done)
    return;
  st.done = true;
  http_response r;
  r.body = protocol::encode_longpoll_events(events);
  std::string next = !events.empty() ? protocol::encode_cursor(events.back())
                     : st.req.query.cursor
                         ? protocol::encode_cursor(*st.req.query.cursor)
                         : protocol::encode_cursor(
                               protocol::stream_position{st.epoch, st.after});
  r.headers.emplace_back(std::string(protocol::longpoll_cursor_header),
                         std::move(next));
  r.headers.emplace_back("Cache-Control", "no-store");
  st.req.respond(std::move(r));
  if (st.room)
    self->send(st.room, unsub_atom::value, st.req.conn_id);
  self->quit();
}

void lp_fail(lp_actor* self, error_code code) {
  auto& st = self->state;
  if (st.done)
    return;
  st.done = true;
  st.req.respond(error_reply(code));
  if (st.room)
    self->send(st.room, unsub_atom::value, st.req.conn_id);
  self->quit();
}

void lp_read(lp_actor* self, caf::actor writer, bool final_read);

void lp_wait(lp_actor* self, caf::actor writer, caf::actor directory) {
  auto& st = self->state;
  if (st.req.query.wait_seconds == 0)
    return lp_answer(self, {});
  self->delayed_send(self, std::chrono::seconds(st.req.query.wait_seconds),
                     lp_timeout_atom::value);
  subscriber sub{st.req.conn_id, caf::actor_cast<caf::actor>(self),
                 std::make_shared<wake_sink>(caf::actor_cast<caf::actor>(self)),
                 dialect::native, std::nullopt};
  self->request(directory, actor_timeout, subscribe_atom::value, st.req.room,
                std::move(sub))
      .then(
          [=](caf::actor& room, std::string& epoch, std::uint64_t offset) {
            auto& st = self->state;
            if (st.done) {
              self->send(room, unsub_atom::value, st.req.conn_id);
              return;
            }
            st.room = room;
            self->monitor(room);
            // Committed between the first read and the subscription: no
            // wake-up will come for it.
            if (epoch != st.epoch || offset > st.after)
              lp_read(self, writer, false);
          },
          [=](caf::error& err) { lp_fail(self, error_code_of(err)); });
}

void lp_read(lp_actor* self, caf::actor writer, bool final_read) {
  auto& st = self->state;
  if (st.done)
    return;
  if (st.reading) {
    st.dirty = true;
    return;
  }
  st.reading = true;
  self->request(writer, actor_timeout, read_atom::value, st.req.room.str(),
                st.after, std::uint64_t{st.req.query.limit})
      .then(
          [=](std::vector<persistence::stored_event>& rows) {
            auto& st = self->state;
            st.reading = false;
            if (!rows.empty() || final_read) {
              std::vector<protocol::publication> events;
              events.reserve(rows.size());
              for (auto& ev : rows)
                events.push_back(
                    to_publication(st.req.room, st.epoch, std::move(ev)));
              return lp_answer(self, std::move(events));
            }
            if (st.dirty) {
              st.dirty = false;
              lp_read(self, writer, false);
            }
          },
          [=](caf::error&) { lp_fail(self, error_code::unavailable); });
}

caf::behavior long_poll(lp_actor* self, lp_request req, caf::actor directory,
                        caf::actor writer) {
  auto& st = self->state;
  st.req = std::move(req);
  self->attach_functor([w = st.req.waiters](const caf::error&) {
    w->fetch_sub(1, std::memory_order_acq_rel);
  });
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.room && dm.source == st.room.address()) {
      st.room = nullptr;
      lp_answer(self, {}); // the room retired (shutdown): answer now
    }
  });
  auto key = st.req.room.str();
  self->request(writer, actor_timeout, position_atom::value, key)
      .then(
          [=](std::string& epoch, std::uint64_t offset) {
            auto& st = self->state;
            st.epoch = std::move(epoch);
            const auto& cur = st.req.query.cursor;
            if (cur) {
              // Another epoch or a position beyond the room: from the oldest
              // kept event (the client sees the jump in offsets).
              st.after = cur->epoch == st.epoch && cur->offset <= offset
                             ? cur->offset
                             : 0;
              if (st.after < offset)
                return lp_read(self, writer, true);
              return lp_wait(self, writer, directory);
            }
            if (offset == 0) {
              st.after = 0;
              return lp_wait(self, writer, directory);
            }
            // No cursor: the whole kept history once the run has ended, else
            // only what arrives while waiting.
            self->request(writer, actor_timeout, read_atom::value, key,
                          offset - 1, std::uint64_t{1})
                .then(
                    [=](std::vector<persistence::stored_event>& last) {
                      auto& st = self->state;
                      bool ended =
                          !last.empty() &&
                          terminal_event(to_publication(
                              st.req.room, st.epoch, std::move(last.front())));
                      if (ended) {
                        st.after = 0;
                        return lp_read(self, writer, true);
                      }
                      st.after = offset;
                      lp_wait(self, writer, directory);
                    },
                    [=](caf::error&) {
                      lp_fail(self, error_code::unavailable);
                    });
          },
          [=](caf::error&) { lp_fail(self, error_code::unavailable); });
  return {
      [=](lp_wake_atom) { lp_read(self, writer, false); },
      [=](lp_timeout_atom) { lp_answer(self, {}); },
      // The room's reply to the final unsubscribe may still arrive.
      [=](bool) {},
  };
}

} // namespace

struct stream_http::impl {
  impl(caf::actor_system& sys, caf::actor directory, caf::actor writer,
       node_state& node, std::shared_ptr<const connection_config> conn,
       stream_http_config cfg)
      : sys(sys), directory(std::move(directory)), writer(std::move(writer)),
        node(node), conn(std::move(conn)), cfg(cfg),
        waiters(std::make_shared<std::atomic<std::size_t>>(0)) {}

  void sse(const transport::http_request& req, std::string_view rest,
           std::string_view query, transport::http_responder& respond);
  void longpoll(const transport::http_request& req, std::string_view run_id,
                std::string_view query, transport::http_responder& respond);

  caf::actor_system& sys;
  caf::actor directory;
  caf::actor writer;
  node_state& node;
  std::shared_ptr<const connection_config> conn;
  stream_http_config cfg;
  std::atomic<std::uint64_t> next_conn{0};
  std::shared_ptr<std::atomic<std::size_t>> waiters;
};

stream_http::stream_http(caf::actor_system& sys, caf::actor directory,
                         caf::actor writer, node_state& node,
                         std::shared_ptr<const connection_config> conn,
                         stream_http_config cfg)
    : impl_(std::make_unique<impl>(sys, std::move(directory), std::move(writer),
                                   node, std::move(conn), cfg)) {}

stream_http::~stream_http() = default;

bool stream_http::handle(const transport::http_request& req,
                         std::string_view path, std::string_view query,
                         transport::http_responder& respond) {
  constexpr std::string_view sse_prefix = "/api/v1/sse/";
  constexpr std::string_view runs_prefix = "/api/v1/runs/";
  constexpr std::string_view events_suffix = "/events";
  if (path.size() > sse_prefix.size() &&
      path.substr(0, sse_prefix.size()) == sse_prefix) {
    if (req.method != "GET")
      respond(error_reply(error_code::method_not_allowed));
    else
      impl_->sse(req, path.substr(sse_prefix.size()), query, respond);
    return true;
  }
  if (path.size() > runs_prefix.size() + events_suffix.size() &&
      path.substr(0, runs_prefix.size()) == runs_prefix &&
      path.substr(path.size() - events_suffix.size()) == events_suffix) {
    auto run =
        path.substr(runs_prefix.size(),
                    path.size() - runs_prefix.size() - events_suffix.size());
    if (run.find('/') != std::string_view::npos)
      return false;
    if (req.method != "GET")
      respond(error_reply(error_code::method_not_allowed));
    else
      impl_->longpoll(req, run, query, respond);
    return true;
  }
  return false;
}

void stream_http::impl::sse(const transport::http_request& req,
                            std::string_view rest, std::string_view query,
                            transport::http_responder& respond) {
  auto who = caller(*conn, req, query);
  if (!who) {
    node.counters.auth_failures.fetch_add(1, std::memory_order_relaxed);
    return respond(error_reply(error_code::unauthorized));
  }
  auto slash = rest.find('/');
  auto channel = protocol::percent_decode(rest.substr(0, slash));
  auto id = slash == std::string_view::npos
                ? std::optional<std::string>{std::string{}}
                : protocol::percent_decode(rest.substr(slash + 1));
  if (!channel || !id)
    return respond(error_reply(error_code::invalid_room));
  auto room = protocol::s0_room(*channel, *id);
  if (!room && !protocol::s0_channel(*channel) && !id->empty())
    room = protocol::room_id::make(*channel, *id);
  if (!room)
    return respond(error_reply(error_code::invalid_channel));
  if (!protocol::may_subscribe(*who, *room))
    return respond(error_reply(error_code::access_denied));
  std::string last = req.last_event_id;
  if (last.empty())
    last = protocol::query_param(query, "last_event_id").value_or("");
  auto points = protocol::parse_last_event_id(last, {*room});
  if (auto* err = std::get_if<error_code>(&points))
    return respond(error_reply(*err));
  sse_start start;
  start.conn_id = conn_id_base + next_conn.fetch_add(1) + 1;
  start.room = *room;
  start.since = std::get<protocol::resume_points>(points).front();
  start.user = who->sub;
  http_response r;
  r.content_type = std::string(protocol::sse_content_type);
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.headers.emplace_back("X-Accel-Buffering", "no");
  r.body = protocol::encode_sse_retry(cfg.sse_retry_ms);
  r.stream = std::make_shared<sse_handler>(sys, std::move(start), directory,
                                           node, cfg.sse_heartbeat);
  respond(std::move(r));
}

void stream_http::impl::longpoll(const transport::http_request& req,
                                 std::string_view run_id,
                                 std::string_view query,
                                 transport::http_responder& respond) {
  auto who = caller(*conn, req, query);
  if (!who) {
    node.counters.auth_failures.fetch_add(1, std::memory_order_relaxed);
    return respond(error_reply(error_code::unauthorized));
  }
  auto decoded = protocol::percent_decode(run_id);
  auto room = decoded ? protocol::longpoll_run_room(*decoded) : std::nullopt;
  if (!room)
    return respond(error_reply(error_code::invalid_room));
  if (!protocol::may_subscribe(*who, *room))
    return respond(error_reply(error_code::access_denied));
  auto parsed = protocol::parse_longpoll_query(query);
  if (auto* err = std::get_if<error_code>(&parsed))
    return respond(error_reply(*err));
  if (waiters->fetch_add(1, std::memory_order_acq_rel) >=
      cfg.max_longpoll_waiters) {
    waiters->fetch_sub(1, std::memory_order_acq_rel);
    auto r = error_reply(error_code::unavailable, "too many waiting polls");
    r.headers.emplace_back("Retry-After", "1");
    return respond(std::move(r));
  }
  lp_request lp;
  lp.conn_id = conn_id_base + next_conn.fetch_add(1) + 1;
  lp.room = *room;
  lp.query = std::get<protocol::longpoll_query>(std::move(parsed));
  lp.respond = std::move(respond);
  lp.waiters = waiters;
  sys.spawn(long_poll, std::move(lp), directory, writer);
}

} // namespace tidings::actors
