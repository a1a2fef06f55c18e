#include "actors/room.hpp"

#include "actors/clock.hpp"

#include "actors/cluster_node.hpp"
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

#include <algorithm>
#include <array>
#include <cstdio>
#include <deque>
#include <optional>
#include <functional>
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

/// Whether this node's room actor assigns offsets (owner) or serves local
/// subscribers of a room owned by another node (mirror).
enum class role : std::uint8_t { none, owner, mirror };

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
  // The last committed events (contiguous, ending at `committed`, in
  // `recent_epoch`), so a resume a few events behind is served without a
  // history read. Bounded by recent_max_events and recent_max_bytes.
  // (A vector: an empty std::deque allocates half a kilobyte.)
  std::vector<persistence::stored_event> recent;
  std::string recent_epoch;
  std::size_t recent_bytes = 0;
  // Cluster. A mirror follows `owner_node`'s room (attached: it receives
  // each committed event once, for all its local subscribers); an owner
  // sends each committed event to its attached mirrors and, replica first,
  // each new event to `replica_node`.
  role mode = role::none; // until the room knows its position
  /// The role as the node's gauges count it (shared with the exit hook).
  std::shared_ptr<role> counted = std::make_shared<role>(role::none);
  std::string owner_node;
  caf::actor owner_ep;   // mirror: the owner node's directory
  caf::actor owner_room; // mirror: the owner's room actor (watched)
  bool attached = false; // mirror: knows the owner's epoch and offset
  std::unordered_map<caf::actor_addr, caf::actor> mirrors; // owner
  std::string node_id; // this node
  std::string replica_node;
  caf::actor replica_ep; // owner: the replica node's directory
  bool replica_synced = false;
  bool replica_syncing = false;
  // Replications awaiting the replica's answer, by sequence number (in
  // offset order).
  std::map<std::uint64_t, std::function<void(bool, std::uint64_t)>>
      repl_waiting;
  std::uint64_t repl_seq = 0;
  bool view_pending = false; // a role change waits for in-flight appends
  // Publishes waiting for the replica's sync.
  // (A vector: an empty std::deque allocates half a kilobyte, in every room.)
  std::vector<std::pair<protocol::publish_request, caf::response_promise>>
      held;
  static inline const char* name = "room";
};

using room_actor = caf::stateful_actor<room_state>;

std::shared_ptr<const placement_view> view_of(const room_state& st);

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

constexpr std::size_t recent_max_events = 32;
constexpr std::size_t recent_max_bytes = 32 * 1024;

std::size_t event_bytes(const persistence::stored_event& ev) {
  return ev.type.size() + ev.event.size() + ev.data.size() +
         ev.publish_id.size() + 64;
}

/// Keeps `pub` among the room's recent events (not for operations: their
/// subscribers resume from current_state).
void remember_recent(room_state& st, const protocol::publication& pub) {
  if (st.reducer)
    return;
  if (pub.epoch != st.recent_epoch ||
      (!st.recent.empty() && st.recent.back().offset + 1 != pub.offset)) {
    st.recent.clear();
    st.recent_bytes = 0;
    st.recent_epoch = pub.epoch;
  }
  persistence::stored_event ev{{},       pub.offset, pub.timestamp_ms, pub.type,
                               pub.event, pub.data,  pub.publish_id};
  st.recent_bytes += event_bytes(ev);
  st.recent.push_back(std::move(ev));
  while (st.recent.size() > recent_max_events ||
         (st.recent.size() > 1 && st.recent_bytes > recent_max_bytes)) {
    st.recent_bytes -= event_bytes(st.recent.front());
    st.recent.erase(st.recent.begin());
  }
}

/// The events (after, target] from the recent ones, if they hold them all
/// and the room's retention keeps them in history too.
std::optional<std::vector<persistence::stored_event>>
from_recent(const room_state& st, std::uint64_t after, std::uint64_t target) {
  if (st.recent.empty() || st.recent_epoch != st.epoch ||
      st.recent.front().offset > after + 1 || st.recent.back().offset != target)
    return std::nullopt;
  if (st.cfg.retention) {
    const auto& keep = st.cfg.retention->for_room(st.id.str());
    if (keep.max_events > 0 && target - after > keep.max_events)
      return std::nullopt;
    if (keep.max_age_seconds > 0 && target > after) {
      const auto& first = st.recent[after + 1 - st.recent.front().offset];
      if (first.timestamp_ms < unix_now_ms() - keep.max_age_seconds * 1000)
        return std::nullopt;
    }
  }
  std::vector<persistence::stored_event> out;
  out.reserve(target - after);
  for (auto& ev : st.recent)
    if (ev.offset > after && ev.offset <= target)
      out.push_back(ev);
  return out;
}

void fan_out(room_actor* self, const protocol::publication& pub) {
  auto& st = self->state;
  remember_recent(st, pub);
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
  if (!st.mirrors.empty()) {
    // Once per node that has subscribers; it encodes for its own sessions.
    persistence::stored_event ev{st.id.str(),   pub.offset, pub.timestamp_ms,
                                 pub.type,      pub.event,  pub.data,
                                 pub.publish_id};
    auto state = st.reducer ? st.op_state : std::string{};
    for (auto& [addr, m] : st.mirrors)
      self->send(m, r_event_atom::value, ev, state);
    c.forwarded_events.fetch_add(st.mirrors.size(), std::memory_order_relaxed);
  }
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
  if (st.view_pending && st.in_flight == 0)
    self->send(self, view_atom::value);
  maybe_quit_retiring(self);
}

using subscribe_result = caf::result<caf::actor, std::string, std::uint64_t>;

caf::error operation_not_found() {
  return client_error(protocol::error_code::operation_not_found);
}

bool has_subscribers(const room_state& st) {
  return !st.subs.empty() || !st.catching_up.empty() || !st.mirrors.empty();
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
  // A mirror serves from what it has while it attaches again (events it
  // missed meanwhile follow from the owner's history); only one that never
  // attached has nothing to serve.
  if (st.mode == role::mirror && !st.attached && st.epoch.empty())
    return unavailable();
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
  if (auto recent = from_recent(st, after, target)) {
    finish_catch_up(self, conn_id, after, &*recent);
    return rp;
  }
  // A mirror reads the owner's history (its own node may hold none).
  auto source = st.mode == role::mirror ? st.owner_ep : st.writer;
  auto timeout = st.mode == role::mirror ? caf::duration{st.cfg.remote_timeout}
                                         : caf::duration{caf::infinite};
  self->request(source, timeout, r_read_atom::value, st.id.str(), after,
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

bool replica_ready(room_actor* self);
void replica_failed(room_actor* self);

/// Runs the continuation of replication number `seq`, once.
void replica_answered(room_actor* self, std::uint64_t seq, bool ok,
                      std::uint64_t last) {
  auto& w = self->state.repl_waiting;
  auto i = w.find(seq);
  if (i == w.end())
    return; // given up on already
  auto k = std::move(i->second);
  w.erase(i);
  k(ok, last);
}

/// Gives up on every replication still unanswered (their publishes fail
/// with `unavailable`; a retry with the same publish_id is safe).
void abandon_replication(room_actor* self) {
  auto w = std::move(self->state.repl_waiting);
  self->state.repl_waiting.clear();
  for (auto& [seq, k] : w)
    k(false, 0);
}
void owner_behind(room_actor* self);

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
  if (st.mode == role::owner && !st.view_pending && !st.retiring &&
      !st.resyncing && !replica_ready(self) &&
      st.held.size() < st.cfg.max_pending_publishes) {
    // A new replica is being brought up to date: the publish waits for it
    // (bounded) and runs again afterwards, counted once.
    --st.from_directory;
    auto rp = self->make_response_promise();
    st.held.emplace_back(std::move(req), rp);
    return rp;
  }
  if (st.mode != role::owner || st.view_pending || !replica_ready(self) ||
      st.resyncing || st.retiring ||
      st.in_flight >= st.cfg.max_pending_publishes) {
    st.node->counters.publish_errors.fetch_add(1, std::memory_order_relaxed);
    return unavailable();
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
  auto failed = [=](caf::error err) mutable {
    auto& st = self->state;
    st.resyncing = true;
    st.node->counters.publish_errors.fetch_add(1, std::memory_order_relaxed);
    // Not stored: a retry of this publish_id must publish anew.
    if (auto i = st.ids.find(pub.publish_id);
        i != st.ids.end() && i->second == pub.offset)
      st.ids.erase(i);
    release_waiters(st, pub.offset, &err);
    rp.deliver(std::move(err));
    append_done(self);
  };
  auto store_here = [=]() mutable {
    auto& st = self->state;
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
            [=](caf::error& err) mutable { failed(std::move(err)); });
  };
  if (!st.replica_ep) {
    store_here();
    return rp;
  }
  // Replica first: the replica stores the event before the owner does, so
  // every event the owner ever committed (and fanned out) is on the
  // replica, and a replica taking over never reuses an offset anyone saw.
  persistence::replica_batch batch;
  batch.room = st.id.str();
  batch.epoch = st.epoch;
  batch.after = pub.offset - 1;
  batch.events.push_back(ev);
  if (snap)
    batch.snapshots.push_back(*snap);
  auto& c = st.node->counters;
  c.replication_sent.fetch_add(1, std::memory_order_relaxed);
  auto lag = st.repl_waiting.size() + 1;
  if (lag > c.replication_lag.load(std::memory_order_relaxed))
    c.replication_lag.store(lag, std::memory_order_relaxed);
  auto offset = pub.offset;
  auto seq = ++st.repl_seq;
  // Answered once: by the replica, or given up (timeout, view change).
  st.repl_waiting.emplace(seq, [=](bool ok,
                                      std::uint64_t last) mutable {
    if (ok)
      return store_here();
    replica_failed(self);
    failed(unavailable());
    if (last > offset - 1)
      owner_behind(self);
  });
  self->request(st.replica_ep, st.cfg.remote_timeout, repl_atom::value,
                st.node_id, std::move(batch))
      .then(
          [=](bool ok, std::uint64_t last) {
            replica_answered(self, seq, ok, last);
          },
          [=](caf::error&) { replica_answered(self, seq, false, 0); });
  // CAF's request timeout does not fire for a reply lost with a dropped
  // node connection; this one does.
  self->delayed_send(self, st.cfg.remote_timeout + std::chrono::milliseconds(500),
                     repl_atom::value, seq);
  return rp;
}

protocol::operation_info to_info(const persistence::operation_record& r) {
  return {r.id, r.kind, r.owner, r.meta_json, r.created_ms};
}

/// Operation rooms: the record and the state at offset `upto`. Runs during
/// init (await), so nothing is served before it is known.
void load_operation(room_actor* self, std::uint64_t upto) {
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
                      if (offset >= upto)
                        return;
                      // Events newer than the snapshot (not expected: they
                      // commit together); fold them so the state matches the
                      // offset.
                      self->request(st.writer, caf::infinite, read_atom::value,
                                    st.id.str(), offset, upto - offset)
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
              for (auto& [addr, m] : st.mirrors)
                self->send(m, r_opcreate_atom::value, st.op_state);
            }
            // Records are small and never change: every node gets a copy,
            // so an operation is found by id on any of them.
            if (auto v = view_of(st))
              for (auto& [node, ep] : v->endpoints)
                if (ep)
                  self->send(caf::actor_cast<caf::actor>(ep), repl_atom::value,
                             rec);
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


// ---- Cluster: owner and mirror roles -------------------------------------

std::shared_ptr<const placement_view> view_of(const room_state& st) {
  return st.cfg.placement ? st.cfg.placement->current() : nullptr;
}

caf::actor endpoint_of(const placement_view& v, const std::string& node) {
  auto i = v.endpoints.find(node);
  if (i == v.endpoints.end() || !i->second)
    return {};
  return caf::actor_cast<caf::actor>(i->second);
}

/// The same proxy, not just the same actor: handles compare equal by node
/// and id, but after a dropped connection the old proxy is dead.
bool same_handle(const caf::actor& a, const caf::actor& b) {
  return caf::actor_cast<caf::strong_actor_ptr>(a).get() ==
         caf::actor_cast<caf::strong_actor_ptr>(b).get();
}

/// Ends every local subscription with close 1012: the room's history went
/// on without what this node delivered, so clients must resubscribe (with
/// their cursor) and get `recovered: false` rather than a silent jump.
void close_subscribers(room_actor* self) {
  auto& st = self->state;
  const auto& e = protocol::describe(protocol::close_reason::room_moved);
  auto code = static_cast<std::uint16_t>(e.code);
  for (auto& [id, sub] : st.subs) {
    self->demonitor(sub.conn);
    sub.sink->close(code, e.reason);
  }
  for (auto& [id, cu] : st.catching_up) {
    self->demonitor(cu.sub.conn);
    cu.sub.sink->close(code, e.reason);
    if (!cu.replied)
      cu.rp.deliver(unavailable());
  }
  st.subs.clear();
  st.catching_up.clear();
  went_empty(self);
}

/// Changes the role and the node's owned/mirror room gauges.
void set_mode(room_actor* self, role next) {
  auto& st = self->state;
  auto& c = st.node->counters;
  auto gauge = [&](role r) -> std::atomic<std::int64_t>* {
    return r == role::owner    ? &c.owned_rooms
           : r == role::mirror ? &c.mirror_rooms
                               : nullptr;
  };
  if (auto* g = gauge(*st.counted))
    g->fetch_sub(1, std::memory_order_relaxed);
  if (auto* g = gauge(next))
    g->fetch_add(1, std::memory_order_relaxed);
  *st.counted = next;
  st.mode = next;
}

void sync_replica(room_actor* self);

/// A batch of the events read for offsets (after, last] of a room's
/// history. When history was trimmed, the batch resets the receiver to just
/// before the first event read, or to `last` when none was left.
persistence::replica_batch
make_batch(const std::string& key, const std::string& epoch,
           std::uint64_t after, bool reset, std::uint64_t last,
           std::vector<persistence::stored_event> events) {
  persistence::replica_batch b;
  b.room = key;
  b.epoch = epoch;
  b.after = after;
  b.reset = reset;
  if (!events.empty() && events.front().offset != after + 1) {
    b.after = events.front().offset - 1;
    b.reset = true;
  } else if (events.empty() && last > after) {
    b.after = last;
    b.reset = true;
  }
  b.events = std::move(events);
  return b;
}

/// Runs the publishes that waited for the replica's sync (as the publish
/// message again, from the room itself), or refuses them.
void release_held(room_actor* self, bool ok) {
  auto held = std::move(self->state.held);
  self->state.held.clear();
  for (auto& [req, rp] : held) {
    if (!ok) {
      rp.deliver(unavailable());
      continue;
    }
    self->request(caf::actor_cast<caf::actor>(self), caf::infinite,
                  publish_atom::value, std::move(req))
        .then([rp](std::uint64_t offset) mutable { rp.deliver(offset); },
              [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
  }
}

bool replica_ready(room_actor* self) {
  auto& st = self->state;
  if (!st.replica_ep || st.replica_synced)
    return true;
  if (!st.replica_syncing && st.in_flight == 0)
    sync_replica(self);
  return false;
}

void replica_failed(room_actor* self) {
  auto& st = self->state;
  st.replica_synced = false;
  st.node->counters.replication_failures.fetch_add(1,
                                                   std::memory_order_relaxed);
}

/// Brings the replica's copy of the room to the owner's committed offset:
/// the missing tail, or (other epoch, longer copy, too far behind) a reset
/// to the last `replay_limit` events. Publishes wait until it is done.
void sync_replica(room_actor* self) {
  auto& st = self->state;
  st.replica_syncing = true;
  auto ep = st.replica_ep;
  auto key = st.id.str();
  auto timeout = st.cfg.remote_timeout;
  auto done = [=](bool ok) {
    auto& st = self->state;
    if (st.replica_ep != ep)
      return; // the replica changed meanwhile; its own sync runs
    st.replica_syncing = false;
    st.replica_synced = ok;
    if (!ok)
      replica_failed(self);
    release_held(self, ok);
  };
  if (st.reducer && st.op_exists)
    self->request(st.writer, caf::infinite, op_get_atom::value, st.id.id())
        .then([=](bool found, persistence::operation_record& rec) {
          if (found)
            self->send(ep, repl_atom::value, std::move(rec));
        });
  self->request(ep, timeout, r_pos_atom::value, key, std::string{})
      .then(
          [=](std::string& epoch, std::uint64_t offset) {
            auto& st = self->state;
            if (st.replica_ep != ep)
              return;
            auto target = st.committed;
            if (epoch == st.epoch && offset == target)
              return done(true);
            if (epoch == st.epoch && offset > target) {
              st.replica_syncing = false;
              release_held(self, false);
              return owner_behind(self);
            }
            bool tail = epoch == st.epoch && offset < target &&
                        target - offset <= st.cfg.replay_limit;
            auto after =
                tail ? offset
                     : target - std::min(target, st.cfg.replay_limit);
            self->request(st.writer, caf::infinite, read_atom::value, key,
                          after, target - after)
                .then(
                    [=](std::vector<persistence::stored_event>& events) {
                      auto& st = self->state;
                      st.node->counters.replication_sent.fetch_add(
                          events.size(), std::memory_order_relaxed);
                      auto b = make_batch(key, st.epoch, after, !tail, target,
                                          std::move(events));
                      if (st.reducer && st.op_exists)
                        b.snapshots.push_back({key, target, st.op_state});
                      self->request(ep, timeout, repl_atom::value, st.node_id,
                                    std::move(b))
                          .then([=](bool ok, std::uint64_t) { done(ok); },
                                [=](caf::error&) { done(false); });
                    },
                    [=](caf::error&) { done(false); });
          },
          [=](caf::error&) { done(false); });
}

/// Picks the replica the current view names (none with replication off or
/// a lone node); a new one is synced before the next publish.
void update_replica(room_actor* self, const placement_view& v) {
  auto& st = self->state;
  auto rep = st.cfg.replicate ? v.replica(st.id.str()) : std::string{};
  auto ep = rep.empty() ? caf::actor{} : endpoint_of(v, rep);
  // The same node may come with a new handle: after a dropped connection
  // the old proxy is dead and what is sent to it vanishes.
  if (rep == st.replica_node && same_handle(ep, st.replica_ep))
    return;
  st.replica_node = rep;
  st.replica_ep = std::move(ep);
  st.replica_synced = false;
  st.replica_syncing = false;
  if (!st.replica_ep)
    release_held(self, true);
  else if (st.in_flight == 0)
    sync_replica(self);
}

/// What the room does once its position `offset` is known: the publish_id
/// window up to it and, for operations, the record and state. `offset` is
/// the copy in this node's store, which may be ahead of what local
/// subscribers have seen yet (the gap is being filled): a publish_id in
/// that gap is as taken as any other.
void load_local_state(room_actor* self, std::uint64_t offset) {
  auto& st = self->state;
  st.ids.clear();
  st.id_order.reset();
  if (st.reducer)
    load_operation(self, offset);
  if (offset == 0 || st.cfg.dedupe_window == 0)
    return;
  auto window = std::min<std::uint64_t>(offset, st.cfg.dedupe_window);
  self->request(st.writer, caf::infinite, read_atom::value, st.id.str(),
                offset - window, window)
      .await(
          [=](std::vector<persistence::stored_event>& events) {
            for (auto& ev : events)
              remember_id(self->state, ev.publish_id, ev.offset);
          },
          [=](caf::error& err) { self->quit(std::move(err)); });
}

void fill_gap(room_actor* self, caf::actor source, std::uint64_t from,
              std::uint64_t to, bool fold_state = false);

struct copy_at {
  caf::actor ep; // null: this node's own store
  std::string epoch;
  std::uint64_t offset = 0;
};

/// Becomes the owner at `epoch`/`offset` (this node's store holds it now).
void finish_takeover(room_actor* self, std::string epoch,
                     std::uint64_t offset, bool probed) {
  auto& st = self->state;
  // A mirror that delivered further than the history it can find (two
  // nodes lost at once) must not let offsets it delivered be reused.
  // (Nothing delivered yet, in a room without events: no offset to protect,
  // the new epoch is taken silently.)
  if (!st.epoch.empty() && has_subscribers(st) && st.committed > 0 &&
      (epoch != st.epoch || offset < st.committed))
    close_subscribers(self);
  // Local subscribers of a room that was behind (a mirror, or an owner
  // that was frozen while another node owned the room) get what they
  // missed from the copy now in this node's store.
  auto gap_from = !st.epoch.empty() && epoch == st.epoch &&
                          offset > st.committed &&
                          (!st.subs.empty() || !st.catching_up.empty())
                      ? st.committed
                      : offset;
  bool was_owner = st.mode == role::owner;
  st.epoch = std::move(epoch);
  st.assigned = st.committed = gap_from;
  set_mode(self, role::owner);
  st.attached = false;
  st.owner_node = st.node_id;
  st.owner_ep = nullptr;
  if (st.owner_room) {
    self->demonitor(st.owner_room);
    st.owner_room = nullptr;
  }
  if (probed && !was_owner)
    st.node->counters.takeovers.fetch_add(1, std::memory_order_relaxed);
  load_local_state(self, offset);
  // Awaited answers run newest first: the gap is filled before the state is
  // loaded, so the operation's state still stands at `gap_from` and is
  // folded event by event as mirrors get them.
  if (gap_from < offset)
    fill_gap(self, st.writer, gap_from, offset, true);
  if (auto v = view_of(st))
    update_replica(self, *v);
}

/// Copies the best copy found into this node's store, then takes over.
void adopt(room_actor* self, copy_at local, copy_at best, bool probed) {
  auto& st = self->state;
  if (!best.ep || (best.epoch == local.epoch && best.offset <= local.offset))
    return finish_takeover(self, local.epoch, local.offset, probed);
  auto key = st.id.str();
  bool tail = best.epoch == local.epoch &&
              best.offset - local.offset <= st.cfg.replay_limit;
  auto after = tail ? local.offset
                    : best.offset - std::min(best.offset, st.cfg.replay_limit);
  auto timeout = st.cfg.remote_timeout;
  auto store = [=](persistence::replica_batch b) {
    auto& st = self->state;
    self->request(st.writer, caf::infinite, repl_atom::value, std::move(b))
        .await(
            [=](bool ok, std::uint64_t last) {
              if (ok)
                finish_takeover(self, best.epoch, last, probed);
              else // cannot happen for a reset; keep our own copy
                finish_takeover(self, local.epoch, local.offset, probed);
            },
            [=](caf::error& err) { self->quit(std::move(err)); });
  };
  self->request(best.ep, timeout, r_read_atom::value, key, after,
                best.offset - after)
      .await(
          [=](std::vector<persistence::stored_event>& events) {
            auto& st = self->state;
            auto b = make_batch(key, best.epoch, after, !tail, best.offset,
                                std::move(events));
            if (!st.reducer)
              return store(std::move(b));
            // Operations: the record and the state travel too.
            self->request(best.ep, timeout, op_get_atom::value, st.id.id())
                .await(
                    [=](bool found, persistence::operation_record& rec) mutable {
                      if (found) // no sender: the answer is not wanted
                        caf::anon_send(self->state.writer,
                                       op_create_atom::value, std::move(rec));
                      self->request(best.ep, timeout, snap_get_atom::value, key)
                          .await(
                              [=](bool has, std::uint64_t off,
                                  std::string& state) mutable {
                                auto last = b.after + b.events.size();
                                if (has && off <= last && off > b.after)
                                  b.snapshots.push_back({key, off, state});
                                store(std::move(b));
                              },
                              [=](caf::error&) mutable { store(std::move(b)); });
                    },
                    [=](caf::error&) mutable { store(std::move(b)); });
          },
          [=](caf::error&) {
            // The best copy vanished meanwhile: the next best is ours.
            finish_takeover(self, local.epoch, local.offset, probed);
          });
}

/// Asks each other live member for its copy of the room (which also fences
/// it: it refuses replication of this room from anyone else now), one at a
/// time, keeping the furthest.
void probe(room_actor* self,
           std::shared_ptr<std::vector<std::pair<std::string, caf::actor>>>
               peers,
           std::size_t i, copy_at local, copy_at best) {
  auto& st = self->state;
  if (i == peers->size())
    return adopt(self, local, best, true);
  auto ep = (*peers)[i].second;
  self->request(ep, st.cfg.remote_timeout, r_pos_atom::value, st.id.str(),
                st.node_id)
      .await(
          [=](std::string& epoch, std::uint64_t offset) mutable {
            if (offset > best.offset)
              best = copy_at{ep, epoch, offset};
            probe(self, peers, i + 1, local, best);
          },
          [=](caf::error&) { probe(self, peers, i + 1, local, best); });
}

/// Becomes the room's owner: reads this node's copy, looks for a further
/// one on the other live members (a returning owner finds what its
/// successor appended), adopts the furthest and starts serving. Messages
/// other than the answers wait meanwhile (await).
void take_over(room_actor* self) {
  auto& st = self->state;
  self->request(st.writer, caf::infinite, position_atom::value, st.id.str())
      .await(
          [=](std::string& epoch, std::uint64_t offset) {
            auto& st = self->state;
            copy_at local{nullptr, epoch, offset};
            auto peers = std::make_shared<
                std::vector<std::pair<std::string, caf::actor>>>();
            if (auto v = view_of(st))
              for (auto& m : v->live)
                if (m != st.node_id)
                  if (auto ep = endpoint_of(*v, m))
                    peers->emplace_back(m, std::move(ep));
            if (peers->empty())
              return finish_takeover(self, local.epoch, local.offset, false);
            probe(self, peers, 0, local, local);
          },
          [=](caf::error& err) { self->quit(std::move(err)); });
}

void attach(room_actor* self);

/// A mirror fills the events it missed between `from` and the owner's
/// offset `to`, read from the owner's history, then follows live events.
/// An owner filling its subscribers' gap from its own store sets
/// `fold_state`: its mirrors get each event with the operation's state as
/// of that event, as they do for a publish.
void fill_gap(room_actor* self, caf::actor ep, std::uint64_t from,
              std::uint64_t to, bool fold_state) {
  auto& st = self->state;
  self->request(ep, st.cfg.remote_timeout, r_read_atom::value, st.id.str(), from,
                to - from)
      .await(
          [=](std::vector<persistence::stored_event>& events) {
            auto& st = self->state;
            if (!fills_gap(events, from, to))
              return close_subscribers(self); // trimmed: resubscribe
            for (auto& ev : events) {
              st.committed = st.assigned = ev.offset;
              auto pub = to_publication(st.id, st.epoch, std::move(ev));
              if (fold_state && st.reducer && st.op_exists)
                st.op_state = st.reducer->apply(st.op_state, pub);
              fan_out(self, pub);
            }
          },
          [=](caf::error&) {
            self->state.attached = false;
            self->delayed_send(self, std::chrono::milliseconds(200),
                               view_atom::value);
          });
}

/// Follows the room's owner: asks it for its epoch, offset and (operations)
/// state and to send each committed event here. A mirror that had followed
/// before continues without loss (the owner's history fills the gap) or,
/// when the owner's history is not a continuation of what it delivered,
/// closes its subscribers so they resume.
void attach(room_actor* self) {
  auto& st = self->state;
  auto v = view_of(st);
  auto owner = v->owner(st.id.str());
  if (owner == st.node_id)
    return take_over(self);
  set_mode(self, role::mirror);
  release_held(self, false);
  st.attached = false;
  st.replica_node.clear();
  st.replica_ep = nullptr;
  for (auto& [addr, m] : st.mirrors)
    self->demonitor(m);
  st.mirrors.clear();
  auto ep = endpoint_of(*v, owner);
  st.owner_node = owner;
  st.owner_ep = ep;
  if (!ep) { // its endpoint is not known yet: look again soon
    self->delayed_send(self, std::chrono::milliseconds(200), view_atom::value);
    return;
  }
  auto answered = [=](std::string& epoch, std::uint64_t committed,
                      bool op_exists, std::string& op_state,
                      caf::actor& owner_room) {
            auto& st = self->state;
            if (st.owner_ep != ep)
              return; // superseded by a newer view
            if (st.owner_room)
              self->demonitor(st.owner_room);
            st.owner_room = owner_room;
            self->monitor(owner_room);
            st.attached = true;
            st.op_exists = op_exists;
            auto known = !st.epoch.empty();
            if (known && has_subscribers(st) && st.committed > 0 &&
                (epoch != st.epoch || committed < st.committed))
              close_subscribers(self);
            if (!known || epoch != st.epoch || committed <= st.committed ||
                !has_subscribers(st)) {
              st.epoch = std::move(epoch);
              st.committed = st.assigned = committed;
              st.op_state = std::move(op_state);
              return;
            }
            st.op_state = std::move(op_state);
            fill_gap(self, ep, st.committed, committed);
  };
  auto failed = [=](caf::error&) {
    auto& st = self->state;
    if (st.owner_ep != ep)
      return;
    self->delayed_send(self, std::chrono::milliseconds(200), view_atom::value);
  };
  auto req = self->request(ep, st.cfg.remote_timeout, r_attach_atom::value,
                           st.id.str(), caf::actor_cast<caf::actor>(self),
                           st.epoch, st.committed);
  // The first attach holds everything else (a subscriber waits for the
  // room's position). A later one does not: its owner may have just died,
  // and the view that says so must get through while the request waits.
  if (st.epoch.empty())
    std::move(req).await(answered, failed);
  else
    std::move(req).then(answered, failed);
}

/// The view changed (or a retry is due): take the role it gives this node.
void on_view(room_actor* self) {
  auto& st = self->state;
  auto v = view_of(st);
  if (!v || st.retiring)
    return;
  auto owner = v->owner(st.id.str());
  // Answers lost with a dropped connection never come: a view without the
  // replica, or with a new handle for it, gives up on them, so the role
  // change below is not held up. A replica still there answers (or its
  // requests time out): a member joining or leaving elsewhere does not
  // fail the publishes in flight.
  if (!st.replica_ep ||
      !std::binary_search(v->live.begin(), v->live.end(), st.replica_node) ||
      !same_handle(endpoint_of(*v, st.replica_node), st.replica_ep))
    abandon_replication(self);
  if (st.mode == role::owner && st.in_flight > 0) {
    st.view_pending = true; // publishes wait; append_done comes back here
    return;
  }
  st.view_pending = false;
  if (st.mode == role::mirror && owner == st.owner_node && st.attached &&
      same_handle(endpoint_of(*v, owner), st.owner_ep))
    return;
  // Takes over when this node is the owner now. An owner that stays owner
  // looks again too: if it was cut off (frozen, partitioned) while another
  // node owned the room, the live members hold further history, which it
  // adopts before assigning another offset.
  attach(self);
}

/// The replica holds more of the room than this owner: this owner missed
/// history (or an append it gave up on did reach the replica). It looks for
/// the furthest copy again once its appends are done.
void owner_behind(room_actor* self) {
  auto& st = self->state;
  st.replica_synced = false;
  if (st.in_flight > 0) {
    st.view_pending = true;
    return;
  }
  take_over(self);
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
  if (auto v = view_of(st))
    st.node_id = v->self;
  node->counters.rooms_alive.fetch_add(1, std::memory_order_relaxed);
  self->attach_functor([node, counted = st.counted](const caf::error&) {
    node->counters.rooms_alive.fetch_sub(1, std::memory_order_relaxed);
    if (*counted == role::owner)
      node->counters.owned_rooms.fetch_sub(1, std::memory_order_relaxed);
    else if (*counted == role::mirror)
      node->counters.mirror_rooms.fetch_sub(1, std::memory_order_relaxed);
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
    for (auto i = st.mirrors.begin(); i != st.mirrors.end(); ++i)
      if (i->first == dm.source) {
        st.mirrors.erase(i);
        break;
      }
    if (st.owner_room && st.owner_room.address() == dm.source) {
      // The owner's room (or its node) is gone: follow whoever owns the
      // room next, once the view has had a moment to change.
      st.owner_room = nullptr;
      st.attached = false;
      self->delayed_send(self, std::chrono::milliseconds(100),
                         view_atom::value);
    }
    went_empty(self);
  });
  schedule_idle_check(self);
  // Nothing else is handled until the room knows its epoch and offset
  // (every step below awaits): as the owner from this node's history and
  // any further copy on other live members, or as a mirror from the owner.
  auto v = view_of(st);
  if (v && !v->owned_here(st.id.str()))
    attach(self);
  else
    take_over(self);
  return {
      [=](subscribe_atom, subscriber& sub) { return subscribe(self, sub); },
      // Subscribers the directory kept while the room had no actor; each
      // was confirmed at `epoch`/`offset`, where this room starts (nothing
      // commits to a room without its actor).
      [=](adopt_atom, const std::string& epoch, std::uint64_t offset,
          std::vector<subscriber>& subs) {
        auto& st = self->state;
        ++st.from_directory;
        for (auto& sub : subs) {
          if (epoch != st.epoch || offset != st.committed) {
            // Not this room's position after all: the client resubscribes.
            const auto& e =
                protocol::describe(protocol::close_reason::room_moved);
            sub.sink->close(static_cast<std::uint16_t>(e.code), e.reason);
            continue;
          }
          if (!has_subscribers(st))
            st.node->room_active(st.id.str(), true);
          if (st.subs.erase(sub.conn_id) == 0 &&
              st.catching_up.count(sub.conn_id) == 0)
            self->monitor(sub.conn);
          auto conn_id = sub.conn_id;
          st.subs.emplace(conn_id, std::move(sub));
        }
        went_empty(self);
      },
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
      [=](r_attach_atom, caf::actor& mirror, const std::string& epoch,
          std::uint64_t seen)
          -> caf::result<std::string, std::uint64_t, bool, std::string,
                         caf::actor> {
        auto& st = self->state;
        ++st.from_directory;
        st.last_activity = self->clock().now();
        if (st.mode != role::owner || st.view_pending || !mirror)
          return unavailable();
        if (!epoch.empty() && seen > st.committed) {
          // The mirror delivered more than this owner holds (in this epoch,
          // or in one this node has not seen: it started before it saw the
          // others). This node was cut off while another owned the room:
          // catch up first; the mirror asks again.
          owner_behind(self);
          return unavailable();
        }
        if (st.mirrors.emplace(mirror.address(), mirror).second)
          self->monitor(mirror);
        return {st.epoch, st.committed, st.op_exists, st.op_state,
                caf::actor_cast<caf::actor>(self)};
      },
      [=](r_event_atom, persistence::stored_event& ev, std::string& state) {
        auto& st = self->state;
        if (st.mode != role::mirror || !st.attached || !st.owner_room ||
            caf::actor_cast<caf::actor_addr>(self->current_sender()) !=
                st.owner_room.address())
          return;
        if (ev.offset <= st.committed)
          return;
        if (ev.offset != st.committed + 1) {
          // Something was lost on the way: attach again, which fills the
          // gap from the owner's history.
          st.attached = false;
          attach(self);
          return;
        }
        st.committed = st.assigned = ev.offset;
        if (st.reducer) {
          st.op_exists = true;
          st.op_state = std::move(state);
        }
        st.node->counters.mirrored_events.fetch_add(1,
                                                    std::memory_order_relaxed);
        fan_out(self, to_publication(st.id, st.epoch, std::move(ev)));
      },
      [=](view_atom) { on_view(self); },
      [=](repl_atom, std::uint64_t seq) {
        replica_answered(self, seq, false, 0);
      },
      [=](r_opcreate_atom, std::string& state) {
        auto& st = self->state;
        if (st.mode != role::mirror || !st.owner_room ||
            caf::actor_cast<caf::actor_addr>(self->current_sender()) !=
                st.owner_room.address() ||
            st.op_exists)
          return;
        st.op_exists = true;
        st.op_state = std::move(state);
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
