#include "actors/room.hpp"

#include "actors/clock.hpp"

#include "actors/history_writer.hpp"
#include "actors/messages.hpp"
#include "persistence/history_store.hpp"
#include "protocol/dialect_s0.hpp"
#include "protocol/dialect_s2.hpp"
#include "protocol/dialect_s3.hpp"
#include "protocol/cursor.hpp"
#include "protocol/sse.hpp"
#include "protocol/native.hpp"

#include <caf/all.hpp>

#include <array>
#include <deque>
#include <optional>
#include <map>
#include <unordered_map>

namespace tidings::actors {

namespace {

/// A resuming subscriber while its missed events are read from history.
struct catch_up {
  subscriber sub;
  std::uint64_t target = 0; // the room's committed offset when it asked
  std::deque<transport::frame> live; // events committed meanwhile
  caf::response_promise rp;
  bool replied = false; // rp answered (the confirmation went out)
  std::vector<persistence::stored_event> history; // missed events to send
  std::size_t next = 0; // first of `history` not yet sent
};

struct room_state {
  protocol::room_id id;
  caf::actor directory;
  caf::actor writer;
  node_state* node = nullptr;
  room_config cfg;
  std::string epoch;
  std::uint64_t assigned = 0;  // last offset handed out
  std::uint64_t committed = 0; // last offset the writer confirmed
  std::size_t in_flight = 0;   // appends awaiting the writer
  bool resyncing = false;      // an append failed: refuse until drained
  bool retiring = false;
  std::uint64_t from_directory = 0; // messages the directory forwarded
  caf::actor_clock::time_point last_activity;
  std::unordered_map<std::uint64_t, subscriber> subs;
  std::unordered_map<std::uint64_t, catch_up> catching_up;
  // publish_id → offset for the last `dedupe_window` events, oldest first.
  std::unordered_map<std::string, std::uint64_t> ids;
  // Created on the first publish_id: an empty std::deque already allocates
  // half a kilobyte, and most rooms (every user's own) never see one.
  std::optional<std::deque<std::pair<std::uint64_t, std::string>>> id_order;
  // Retried publishes waiting for the commit of their first offset.
  std::multimap<std::uint64_t, caf::response_promise> id_waiters;
  // Operation rooms only.
  const protocol::reducer* reducer = nullptr;
  const protocol::command_handler* commands = nullptr;
  bool op_exists = false;
  std::string op_state;      // at `committed`
  std::string pending_state; // at `assigned`
  static inline const char* name = "room";
};

using room_actor = caf::stateful_actor<room_state>;

std::string encode_for(dialect wire, const protocol::publication& pub) {
  switch (wire) {
  case dialect::s0:
    return protocol::encode_s0_event(pub);
  case dialect::s3:
    return protocol::encode_s3_event(pub);
  case dialect::sse:
    return protocol::encode_s0_sse_event(pub);
  case dialect::s2:
    if (auto stream = protocol::s2_stream_of(pub.room))
      return protocol::encode_s2_payload(
          protocol::s2_event_object(pub, *stream), *stream);
    return protocol::encode_event(pub);
  default:
    return protocol::encode_event(pub);
  }
}

/// A frame some dialects send right after an event: S3's `status_update`
/// after an event announcing a terminal status (unless it was one), which
/// S3's test client waits for. Nullptr for none.
transport::frame trailer_for(dialect wire, const protocol::publication& pub) {
  if (wire != dialect::s3 || pub.type == "status_update")
    return nullptr;
  auto status = protocol::s3_terminal_status(pub);
  if (!status)
    return nullptr;
  return transport::make_frame(
      protocol::encode_s3_status_update(*status, unix_now_ms()));
}

/// Whether a dialect gets the native `subscription` confirmations (S0 and
/// S3 document none).
bool confirms(dialect wire) {
  return wire == dialect::native;
}

void fan_out(room_actor* self, const protocol::publication& pub) {
  auto& st = self->state;
  std::array<transport::frame, dialect_count> frames{};
  std::array<transport::frame, dialect_count> trailers{};
  auto encoded = [&](dialect wire) -> transport::frame& {
    auto& f = frames[static_cast<std::size_t>(wire)];
    if (!f) {
      f = transport::make_frame(encode_for(wire, pub));
      trailers[static_cast<std::size_t>(wire)] = trailer_for(wire, pub);
    }
    return f;
  };
  std::uint64_t delivered = 0;
  std::uint64_t bytes = 0;
  std::uint64_t dropped = 0;
  for (auto& [id, sub] : st.subs) {
    auto& f = encoded(sub.wire);
    if (sub.sink->deliver(f)) {
      ++delivered;
      bytes += f->size();
      if (auto& t = trailers[static_cast<std::size_t>(sub.wire)])
        sub.sink->deliver(t);
    } else {
      ++dropped; // the session is closing; its connection will unsubscribe
    }
  }
  for (auto& [id, cu] : st.catching_up) {
    cu.live.push_back(encoded(cu.sub.wire));
    if (auto& t = trailers[static_cast<std::size_t>(cu.sub.wire)])
      cu.live.push_back(t);
  }
  auto& c = st.node->counters;
  c.publications.fetch_add(1, std::memory_order_relaxed);
  c.deliveries.fetch_add(delivered, std::memory_order_relaxed);
  c.delivery_bytes.fetch_add(bytes, std::memory_order_relaxed);
  if (dropped)
    c.dropped_deliveries.fetch_add(dropped, std::memory_order_relaxed);
}

void schedule_idle_check(room_actor* self) {
  self->delayed_send(self, self->state.cfg.idle_timeout, tick_atom::value);
}

void maybe_quit_retiring(room_actor* self) {
  if (self->state.retiring && self->state.in_flight == 0)
    self->quit();
}

void append_done(room_actor* self) {
  auto& st = self->state;
  --st.in_flight;
  if (st.resyncing && st.in_flight == 0) {
    // Every append after the failed one failed too (the store refuses
    // gaps); continue from the last committed offset.
    st.assigned = st.committed;
    st.pending_state = st.op_state;
    st.resyncing = false;
  }
  maybe_quit_retiring(self);
}

using subscribe_result = caf::result<caf::actor, std::string, std::uint64_t>;

caf::error operation_not_found() {
  return client_error(protocol::error_code::operation_not_found);
}

bool has_subscribers(const room_state& st) {
  return !st.subs.empty() || !st.catching_up.empty();
}

void went_empty(room_actor* self) {
  auto& st = self->state;
  if (has_subscribers(st))
    return;
  st.node->room_active(st.id.str(), false);
  st.last_activity = self->clock().now();
  schedule_idle_check(self);
}

/// Puts the confirmation into the session and makes the subscriber live.
void go_live(room_actor* self, subscriber sub, std::uint64_t offset,
             std::optional<bool> recovered) {
  auto& st = self->state;
  if (confirms(sub.wire))
    sub.sink->deliver(transport::make_frame(protocol::encode_subscription(
        true, st.id, {st.epoch, offset}, unix_now_ms(), recovered)));
  if (st.reducer && sub.wire == dialect::native)
    sub.sink->deliver(transport::make_frame(protocol::encode_current_state(
        st.id, {st.epoch, st.committed}, st.op_state, unix_now_ms())));
  if (st.reducer && sub.wire == dialect::sse)
    sub.sink->deliver(transport::make_frame(protocol::encode_sse_event(
        "current_state",
        protocol::encode_cursor(protocol::stream_position{st.epoch,
                                                          st.committed}),
        st.op_state)));
  if (st.reducer && sub.wire == dialect::s3) {
    sub.sink->deliver(transport::make_frame(protocol::encode_s3_current_state(
        st.id, {st.epoch, st.committed}, st.op_state, unix_now_ms())));
    // An operation that already ended: the status_update S3's client
    // waits for would otherwise never come.
    protocol::publication as_event;
    as_event.data = st.op_state;
    if (auto t = trailer_for(dialect::s3, as_event))
      sub.sink->deliver(t);
  }
  st.subs.emplace(sub.conn_id, std::move(sub));
}

/// True when `events` are exactly the offsets (after, target], in order.
bool fills_gap(const std::vector<persistence::stored_event>& events,
               std::uint64_t after, std::uint64_t target) {
  if (events.size() != target - after)
    return false;
  for (std::size_t i = 0; i < events.size(); ++i)
    if (events[i].offset != after + 1 + i)
      return false;
  return true;
}

/// Feeds a resuming subscriber its missed events, then the live ones
/// buffered meanwhile, while its session queue is below half its bound;
/// re-arms itself until done, then the subscriber goes live. A replay never
/// overflows the queue, and a client too slow to drain it while the room
/// keeps publishing is closed as a slow consumer (never a silent gap).
void pump(room_actor* self, std::uint64_t conn_id) {
  auto& st = self->state;
  auto i = st.catching_up.find(conn_id);
  if (i == st.catching_up.end())
    return; // went down or unsubscribed
  auto& cu = i->second;
  auto& sink = *cu.sub.sink;
  auto budget = sink.max_queued_bytes() / 2;
  bool open = true;
  while (open && cu.next < cu.history.size() && sink.queued_bytes() < budget)
    open = sink.deliver(transport::make_frame(encode_for(
        cu.sub.wire,
        to_publication(st.id, st.epoch, std::move(cu.history[cu.next++])))));
  while (open && cu.next == cu.history.size() && !cu.live.empty() &&
         sink.queued_bytes() < budget) {
    open = sink.deliver(std::move(cu.live.front()));
    cu.live.pop_front();
  }
  if (!open) { // the session is closing; its connection cleans up
    st.catching_up.erase(i);
    went_empty(self);
    return;
  }
  if (cu.next == cu.history.size() && cu.live.empty()) {
    st.subs.emplace(conn_id, std::move(cu.sub));
    st.catching_up.erase(i);
    return;
  }
  if (cu.live.size() > st.cfg.max_pending_publishes) {
    const auto& e = protocol::describe(protocol::close_reason::slow_consumer);
    sink.close(static_cast<std::uint16_t>(e.code), e.reason);
    st.catching_up.erase(i);
    went_empty(self);
    return;
  }
  self->delayed_send(self, std::chrono::milliseconds(2), pump_atom::value,
                     conn_id);
}

void finish_catch_up(room_actor* self, std::uint64_t conn_id,
                     std::uint64_t after,
                     std::vector<persistence::stored_event>* events) {
  auto& st = self->state;
  auto i = st.catching_up.find(conn_id);
  if (i == st.catching_up.end())
    return; // the connection went down meanwhile
  auto& cu = i->second;
  bool recovered = events && fills_gap(*events, after, cu.target);
  if (confirms(cu.sub.wire))
    cu.sub.sink->deliver(transport::make_frame(protocol::encode_subscription(
        true, st.id, {st.epoch, cu.target}, unix_now_ms(), recovered)));
  if (recovered)
    cu.history = std::move(*events);
  cu.replied = true;
  cu.rp.deliver(caf::actor_cast<caf::actor>(self), st.epoch, cu.target);
  pump(self, conn_id);
}

subscribe_result subscribe(room_actor* self, subscriber& sub) {
  auto& st = self->state;
  ++st.from_directory;
  st.last_activity = self->clock().now();
  if (st.reducer && !st.op_exists)
    return operation_not_found();
  if (!has_subscribers(st))
    st.node->room_active(st.id.str(), true);
  auto me = caf::actor_cast<caf::actor>(self);
  // A subscriber already here subscribes again: replace its entry.
  if (st.subs.erase(sub.conn_id) == 0 && st.catching_up.count(sub.conn_id) == 0)
    self->monitor(sub.conn);
  auto since = std::move(sub.since);
  auto target = st.committed;
  if (st.reducer) {
    std::optional<bool> recovered;
    if (since)
      // Nothing is replayed: current_state stands in for missed events, so
      // only a cursor at the room's position counts as recovered.
      recovered = since->epoch == st.epoch && since->offset == target;
    go_live(self, std::move(sub), target, recovered);
    return {me, st.epoch, target};
  }
  if (!since) {
    go_live(self, std::move(sub), target, std::nullopt);
    return {me, st.epoch, target};
  }
  if (since->epoch != st.epoch || since->offset > target ||
      target - since->offset > st.cfg.replay_limit) {
    go_live(self, std::move(sub), target, false);
    return {me, st.epoch, target};
  }
  if (since->offset == target) {
    go_live(self, std::move(sub), target, true);
    return {me, st.epoch, target};
  }
  auto conn_id = sub.conn_id;
  auto after = since->offset;
  auto rp = self->make_response_promise();
  auto& cu = st.catching_up[conn_id];
  cu.sub = std::move(sub);
  cu.target = target;
  cu.rp = rp;
  self->request(st.writer, caf::infinite, read_atom::value, st.id.str(), after,
                target - after)
      .then(
          [=](std::vector<persistence::stored_event>& events) {
            finish_catch_up(self, conn_id, after, &events);
          },
          [=](caf::error&) { finish_catch_up(self, conn_id, after, nullptr); });
  return rp;
}

void remember_id(room_state& st, const std::string& id, std::uint64_t offset) {
  if (id.empty())
    return;
  st.ids[id] = offset;
  if (!st.id_order)
    st.id_order.emplace();
  auto& order = *st.id_order;
  order.emplace_back(offset, id);
  while (!order.empty() &&
         order.front().first + st.cfg.dedupe_window <= offset) {
    auto& [off, old] = order.front();
    if (auto i = st.ids.find(old); i != st.ids.end() && i->second == off)
      st.ids.erase(i);
    order.pop_front();
  }
}

/// Answers retried publishes waiting on `offset`: the offset or `err`.
void release_waiters(room_state& st, std::uint64_t offset,
                     const caf::error* err) {
  auto range = st.id_waiters.equal_range(offset);
  for (auto i = range.first; i != range.second; ++i) {
    if (err)
      i->second.deliver(*err);
    else
      i->second.deliver(offset);
  }
  st.id_waiters.erase(range.first, range.second);
}

caf::result<std::uint64_t> publish(room_actor* self,
                                   protocol::publish_request& req) {
  auto& st = self->state;
  ++st.from_directory;
  st.last_activity = self->clock().now();
  if (st.reducer && !st.op_exists)
    return operation_not_found();
  if (!req.publish_id.empty()) {
    if (auto i = st.ids.find(req.publish_id); i != st.ids.end()) {
      if (i->second <= st.committed)
        return i->second;
      auto rp = self->make_response_promise();
      st.id_waiters.emplace(i->second, rp);
      return rp;
    }
  }
  if (st.resyncing || st.retiring ||
      st.in_flight >= st.cfg.max_pending_publishes) {
    st.node->counters.publish_errors.fetch_add(1, std::memory_order_relaxed);
    return caf::make_error(caf::sec::request_timeout, "unavailable");
  }
  protocol::publication pub;
  pub.room = st.id;
  pub.type = std::move(req.type);
  pub.event = std::move(req.event);
  pub.data = std::move(req.data);
  pub.publish_id = std::move(req.publish_id);
  pub.offset = ++st.assigned;
  pub.epoch = st.epoch;
  pub.timestamp_ms = unix_now_ms();
  persistence::stored_event ev{st.id.str(),   pub.offset, pub.timestamp_ms,
                               pub.type,      pub.event,  pub.data,
                               pub.publish_id};
  remember_id(st, pub.publish_id, pub.offset);
  ++st.in_flight;
  auto rp = self->make_response_promise<std::uint64_t>();
  std::optional<persistence::snapshot_update> snap;
  if (st.reducer) {
    st.pending_state = st.reducer->apply(st.pending_state, pub);
    snap =
        persistence::snapshot_update{st.id.str(), pub.offset, st.pending_state};
  }
  auto req_append =
      snap ? self->request(st.writer, caf::infinite, append_atom::value,
                           std::move(ev), *snap)
           : self->request(st.writer, caf::infinite, append_atom::value,
                           std::move(ev));
  auto new_state = snap ? snap->state : std::string{};
  std::move(req_append)
      .then(
          [=](std::uint64_t offset) mutable {
            self->state.committed = offset;
            if (self->state.reducer)
              self->state.op_state = new_state;
            fan_out(self, pub);
            rp.deliver(offset);
            release_waiters(self->state, offset, nullptr);
            append_done(self);
          },
          [=](caf::error& err) mutable {
            auto& st = self->state;
            st.resyncing = true;
            st.node->counters.publish_errors.fetch_add(
                1, std::memory_order_relaxed);
            // Not stored: a retry of this publish_id must publish anew.
            if (auto i = st.ids.find(pub.publish_id);
                i != st.ids.end() && i->second == pub.offset)
              st.ids.erase(i);
            release_waiters(st, pub.offset, &err);
            rp.deliver(std::move(err));
            append_done(self);
          });
  return rp;
}

protocol::operation_info to_info(const persistence::operation_record& r) {
  return {r.id, r.kind, r.owner, r.meta_json, r.created_ms};
}

/// Operation rooms: the record and the state at the committed offset. Runs
/// during init (await), so nothing is served before it is known.
void load_operation(room_actor* self) {
  auto& st = self->state;
  self->request(st.writer, caf::infinite, op_get_atom::value, st.id.id())
      .await(
          [=](bool found, persistence::operation_record& rec) {
            auto& st = self->state;
            if (!found || rec.kind != st.id.kind())
              return;
            st.op_exists = true;
            st.op_state = st.reducer->initial(to_info(rec));
            self->request(st.writer, caf::infinite, snap_get_atom::value,
                          st.id.str())
                .await(
                    [=](bool has, std::uint64_t offset, std::string& state) {
                      auto& st = self->state;
                      if (has)
                        st.op_state = std::move(state);
                      st.pending_state = st.op_state;
                      if (offset >= st.committed)
                        return;
                      // Events newer than the snapshot (not expected: they
                      // commit together); fold them so the state matches the
                      // offset.
                      self->request(st.writer, caf::infinite, read_atom::value,
                                    st.id.str(), offset, st.committed - offset)
                          .await(
                              [=](std::vector<persistence::stored_event>&
                                      events) {
                                auto& st = self->state;
                                for (auto& ev : events)
                                  st.op_state = st.reducer->apply(
                                      st.op_state,
                                      to_publication(st.id, st.epoch,
                                                     std::move(ev)));
                                st.pending_state = st.op_state;
                              },
                              [=](caf::error& err) {
                                self->quit(std::move(err));
                              });
                    },
                    [=](caf::error& err) { self->quit(std::move(err)); });
          },
          [=](caf::error& err) { self->quit(std::move(err)); });
}

caf::result<std::string, std::uint64_t, std::string>
create_operation(room_actor* self, persistence::operation_record& rec) {
  auto& st = self->state;
  ++st.from_directory;
  st.last_activity = self->clock().now();
  if (!st.reducer)
    return client_error(protocol::error_code::invalid_message);
  auto rp = self->make_response_promise();
  self->request(st.writer, caf::infinite, op_create_atom::value, rec)
      .await(
          [=](bool) mutable {
            auto& st = self->state;
            if (!st.op_exists) {
              st.op_exists = true;
              st.op_state = st.pending_state =
                  st.reducer->initial(to_info(rec));
            }
            rp.deliver(st.op_state, st.committed, st.epoch);
          },
          [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
  return rp;
}

/// A client command: the kind's handler decides, a publish carries it out.
caf::result<std::uint64_t> run_command(room_actor* self,
                                       const std::string& name,
                                       const std::string& args,
                                       const std::string& caller) {
  auto& st = self->state;
  if (!st.reducer || !st.op_exists) {
    ++st.from_directory;
    return operation_not_found();
  }
  if (!st.commands) {
    ++st.from_directory;
    return client_error(protocol::error_code::unknown_command);
  }
  auto out = st.commands->handle(st.op_state, name, args, caller);
  if (out.error || out.type.empty()) {
    ++st.from_directory;
    if (out.error)
      return client_error(*out.error);
    return std::uint64_t{0};
  }
  protocol::publish_request req;
  req.room = st.id;
  req.type = std::move(out.type);
  req.data = std::move(out.data);
  return publish(self, req); // counts the directory message itself
}

caf::behavior room(room_actor* self, protocol::room_id id, caf::actor directory,
                   caf::actor writer, node_state* node, room_config cfg) {
  auto& st = self->state;
  st.id = std::move(id);
  st.directory = std::move(directory);
  st.writer = std::move(writer);
  st.node = node;
  st.cfg = cfg;
  if (cfg.kinds) {
    st.reducer = cfg.kinds->operation_reducer(st.id.kind());
    st.commands = cfg.kinds->commands(st.id.kind());
  }
  st.last_activity = self->clock().now();
  node->counters.rooms_alive.fetch_add(1, std::memory_order_relaxed);
  self->attach_functor([node, key = st.id.str()](const caf::error&) {
    node->counters.rooms_alive.fetch_sub(1, std::memory_order_relaxed);
  });
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    for (auto i = st.subs.begin(); i != st.subs.end(); ++i)
      if (i->second.conn.address() == dm.source) {
        st.subs.erase(i);
        break;
      }
    for (auto i = st.catching_up.begin(); i != st.catching_up.end(); ++i)
      if (i->second.sub.conn.address() == dm.source) {
        if (!i->second.replied)
          i->second.rp.deliver(
              caf::make_error(caf::sec::request_receiver_down));
        st.catching_up.erase(i);
        break;
      }
    went_empty(self);
  });
  // Nothing else is handled until the room knows its epoch and offset.
  self->request(st.writer, caf::infinite, position_atom::value, st.id.str())
      .await(
          [=](std::string& epoch, std::uint64_t offset) {
            auto& st = self->state;
            st.epoch = std::move(epoch);
            st.assigned = st.committed = offset;
            schedule_idle_check(self);
            if (st.reducer)
              load_operation(self);
            if (offset == 0 || st.cfg.dedupe_window == 0)
              return;
            auto window = std::min<std::uint64_t>(offset, st.cfg.dedupe_window);
            self->request(st.writer, caf::infinite, read_atom::value,
                          st.id.str(), offset - window, window)
                .await(
                    [=](std::vector<persistence::stored_event>& events) {
                      for (auto& ev : events)
                        remember_id(self->state, ev.publish_id, ev.offset);
                    },
                    [=](caf::error& err) { self->quit(std::move(err)); });
          },
          [=](caf::error& err) { self->quit(std::move(err)); });
  return {
      [=](subscribe_atom, subscriber& sub) { return subscribe(self, sub); },
      [=](pump_atom, std::uint64_t conn_id) { pump(self, conn_id); },
      [=](command_atom, const std::string& name, const std::string& args,
          const std::string& caller) {
        return run_command(self, name, args, caller);
      },
      [=](op_create_atom, persistence::operation_record& rec) {
        return create_operation(self, rec);
      },
      [=](state_atom)
          -> caf::result<bool, std::string, std::uint64_t, std::string> {
        auto& st = self->state;
        ++st.from_directory;
        return {st.op_exists, st.op_state, st.committed, st.epoch};
      },
      [=](unsub_atom, std::uint64_t conn_id) {
        auto& st = self->state;
        if (auto c = st.catching_up.find(conn_id); c != st.catching_up.end()) {
          auto sink = c->second.sub.sink;
          self->demonitor(c->second.sub.conn);
          auto wire = c->second.sub.wire;
          st.catching_up.erase(c);
          if (confirms(wire))
            sink->deliver(transport::make_frame(protocol::encode_subscription(
                false, st.id, {st.epoch, st.committed}, unix_now_ms())));
          went_empty(self);
          return true;
        }
        auto i = st.subs.find(conn_id);
        if (i == st.subs.end())
          return false;
        auto sub = std::move(i->second);
        st.subs.erase(i);
        self->demonitor(sub.conn);
        if (confirms(sub.wire))
          sub.sink->deliver(transport::make_frame(protocol::encode_subscription(
              false, st.id, {st.epoch, st.committed}, unix_now_ms())));
        went_empty(self);
        return true;
      },
      [=](publish_atom, protocol::publish_request& req) {
        return publish(self, req);
      },
      [=](tick_atom) {
        auto& st = self->state;
        if (has_subscribers(st) || st.retiring)
          return;
        auto quiet = self->clock().now() - st.last_activity;
        if (st.in_flight == 0 && quiet >= st.cfg.idle_timeout)
          self->send(st.directory, idle_atom::value, st.id.str(),
                     st.from_directory);
        // Checked again later: the directory may refuse (something in flight).
        schedule_idle_check(self);
      },
      [=](retire_atom) {
        self->state.retiring = true;
        if (has_subscribers(self->state))
          self->state.node->room_active(self->state.id.str(), false);
        maybe_quit_retiring(self);
      },
  };
}

} // namespace

caf::actor spawn_room(caf::local_actor* parent, protocol::room_id id,
                      caf::actor directory, caf::actor writer, node_state& node,
                      room_config cfg) {
  return parent->spawn(room, std::move(id), std::move(directory),
                       std::move(writer), &node, cfg);
}

} // namespace tidings::actors
