#include "actors/room_directory.hpp"

#include "actors/cluster_node.hpp"
#include "actors/history_writer.hpp"
#include "actors/clock.hpp"
#include "actors/messages.hpp"
#include "protocol/acl.hpp"
#include "protocol/errors.hpp"
#include "protocol/native.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <unordered_map>

namespace tidings::actors {

namespace {

struct entry {
  caf::actor room;
  std::uint64_t forwarded = 0;
};

struct directory_state {
  caf::actor writer;
  node_state* node = nullptr;
  room_config cfg;
  std::unordered_map<std::string, entry> rooms;
  std::unordered_map<caf::actor_addr, std::string> keys; // room → key
  std::size_t alive = 0; // rooms not yet down (includes retired ones)
  // User rooms without an actor: where each starts and who joined it.
  struct parked_room {
    std::string epoch;
    std::uint64_t offset = 0;
    std::vector<subscriber> subs;
  };
  std::unordered_map<std::string, parked_room> parked;
  // Their subscribers' connections (watched) → room keys: one connection
  // may join several (an admin may join other users' rooms).
  std::unordered_multimap<caf::actor_addr, std::string> parked_conns;
  // Where parked rooms stood when their last subscriber left: valid while
  // the room has no actor (only its actor appends), so a user who comes
  // back parks without asking the writer. Bounded; cleared when full.
  std::unordered_map<std::string, std::pair<std::string, std::uint64_t>>
      positions;
  bool shutting_down = false;
  // Cluster: room → the node that last probed this node while taking the
  // room over; replication of that room is accepted from it alone.
  std::unordered_map<std::string, std::string> fences;
  // Requests forwarded to another node's owner, by id: failed at once when
  // that node leaves the view, so a client never waits out a timeout for a
  // dead owner.
  struct forwarded_request {
    std::string node;
    caf::response_promise rp;
  };
  std::unordered_map<std::uint64_t, forwarded_request> in_flight;
  std::uint64_t next_request = 0;
  caf::response_promise shutdown_rp;
  static inline const char* name = "room_directory";
};

using directory_actor = caf::stateful_actor<directory_state>;

constexpr std::size_t max_positions = 10000;

/// Watches a parked subscriber's connection, once however many parked
/// rooms it joins.
void watch(directory_actor* self, const subscriber& sub,
           const std::string& key) {
  auto& conns = self->state.parked_conns;
  if (conns.count(sub.conn.address()) == 0)
    self->monitor(sub.conn);
  conns.emplace(sub.conn.address(), key);
}

/// Forgets that a parked subscriber's connection is in parked room `key`;
/// stops watching it when it is in none.
void unwatch(directory_actor* self, const subscriber& sub,
             const std::string& key) {
  auto& conns = self->state.parked_conns;
  auto [b, e] = conns.equal_range(sub.conn.address());
  for (auto i = b; i != e; ++i)
    if (i->second == key) {
      conns.erase(i);
      break;
    }
  if (conns.count(sub.conn.address()) == 0)
    self->demonitor(sub.conn);
}

entry& room_for(directory_actor* self, const protocol::room_id& id) {
  auto& st = self->state;
  auto i = st.rooms.find(id.str());
  if (i != st.rooms.end())
    return i->second;
  auto room = spawn_room(self, id, caf::actor_cast<caf::actor>(self), st.writer,
                         *st.node, st.cfg);
  self->monitor(room);
  ++st.alive;
  st.keys.emplace(room.address(), id.str());
  auto& e = st.rooms.emplace(id.str(), entry{std::move(room), 0}).first->second;
  st.positions.erase(id.str());
  // A parked room's subscribers go to its actor before anything else.
  if (auto p = st.parked.find(id.str()); p != st.parked.end()) {
    for (auto& sub : p->second.subs)
      unwatch(self, sub, id.str());
    ++e.forwarded;
    self->send(e.room, adopt_atom::value, std::move(p->second.epoch),
               p->second.offset, std::move(p->second.subs));
    st.parked.erase(p);
  }
  return e;
}

/// Whether a subscribe may be parked: a fresh join (no cursor) of a user
/// room (`user:{sub}`, which every connection joins and few ever carry an
/// event) with no actor, on a single node (in a cluster the room's owner
/// may be elsewhere), by a dialect the parked path confirms like a room.
bool parkable(const directory_state& st, const protocol::room_id& id,
              const subscriber& sub) {
  return !st.cfg.placement && !sub.since &&
         id.kind() == protocol::user_room_kind &&
         (sub.wire == dialect::native || sub.wire == dialect::s0) &&
         st.rooms.count(id.str()) == 0;
}

/// Adds `sub` to the parked room at `p` (replacing an entry of the same
/// connection) and confirms it as the room would.
void park(directory_actor* self, const protocol::room_id& id,
          directory_state::parked_room& p, subscriber sub) {
  auto& st = self->state;
  if (p.subs.empty())
    st.node->room_active(id.str(), true);
  auto same = std::find_if(p.subs.begin(), p.subs.end(), [&](auto& s) {
    return s.conn_id == sub.conn_id;
  });
  if (confirms(sub.wire))
    sub.sink->deliver(transport::make_frame(protocol::encode_subscription(
        true, id, {p.epoch, p.offset}, unix_now_ms(), std::nullopt)));
  if (same != p.subs.end()) {
    *same = std::move(sub);
    return;
  }
  watch(self, sub, id.str());
  p.subs.push_back(std::move(sub));
}

/// Answers the current request with `xs` (a result<message> made from a
/// message would wrap it in another).
template <class... Ts>
caf::result<caf::message> answer(directory_actor* self, Ts&&... xs) {
  auto rp = self->make_response_promise();
  rp.deliver(std::forward<Ts>(xs)...);
  return rp;
}

/// Removes connection `conn_id` from parked room `key`; false when it was
/// not there. Sends the `unsubscribed` confirmation when `confirm`.
bool unpark(directory_actor* self, const std::string& key,
            std::uint64_t conn_id, bool confirm) {
  auto& st = self->state;
  auto p = st.parked.find(key);
  if (p == st.parked.end())
    return false;
  auto& subs = p->second.subs;
  auto i = std::find_if(subs.begin(), subs.end(),
                        [&](auto& s) { return s.conn_id == conn_id; });
  if (i == subs.end())
    return false;
  auto sub = std::move(*i);
  subs.erase(i);
  unwatch(self, sub, key);
  if (confirm && confirms(sub.wire))
    if (auto id = protocol::parse_room_id(key))
      sub.sink->deliver(transport::make_frame(protocol::encode_subscription(
          false, *id, {p->second.epoch, p->second.offset}, unix_now_ms())));
  if (subs.empty()) {
    st.node->room_active(key, false);
    if (st.positions.size() >= max_positions)
      st.positions.clear();
    st.positions[key] = {std::move(p->second.epoch), p->second.offset};
    st.parked.erase(p);
  }
  return true;
}

/// The owner's directory when the room is owned by another node; a null
/// actor with `elsewhere` false when it is owned here (or no cluster).
struct route {
  bool elsewhere = false;
  std::string node;
  caf::actor owner;
};

route route_of(directory_actor* self, const std::string& key) {
  auto& placement = self->state.cfg.placement;
  if (!placement)
    return {};
  auto v = placement->current();
  auto owner = v->owner(key);
  if (owner == v->self)
    return {};
  route r;
  r.elsewhere = true;
  r.node = owner;
  if (auto i = v->endpoints.find(owner); i != v->endpoints.end() && i->second)
    r.owner = caf::actor_cast<caf::actor>(i->second);
  return r;
}

caf::response_promise take_in_flight(directory_actor* self, std::uint64_t id,
                                     bool& found) {
  auto& m = self->state.in_flight;
  auto i = m.find(id);
  found = i != m.end();
  if (!found)
    return {};
  auto rp = std::move(i->second.rp);
  m.erase(i);
  return rp;
}

/// Sends `xs` to the owner node's directory and answers the requester with
/// its reply (types `Rs`), its error, or `unavailable` when the owner
/// leaves the view first.
template <class... Rs, class... Ts>
caf::result<caf::message> forward(directory_actor* self, const route& r,
                                  Ts&&... xs) {
  if (!r.owner)
    return unavailable();
  auto& st = self->state;
  auto id = ++st.next_request;
  auto rp = self->make_response_promise();
  st.in_flight.emplace(id, directory_state::forwarded_request{r.node, rp});
  self->request(r.owner, st.cfg.remote_timeout, std::forward<Ts>(xs)...)
      .then(
          [=](Rs&... rs) {
            bool found = false;
            auto rp = take_in_flight(self, id, found);
            if (found)
              rp.deliver(std::move(rs)...);
          },
          [=](caf::error& err) {
            bool found = false;
            auto rp = take_in_flight(self, id, found);
            if (found)
              rp.deliver(std::move(err));
          });
  return rp;
}

void finish_shutdown_if_done(directory_actor* self) {
  auto& st = self->state;
  if (!st.shutting_down || st.alive > 0)
    return;
  // Rooms are gone, so no append can follow: the writer commits what it
  // holds and quits.
  self->send(st.writer, shutdown_atom::value);
  st.shutdown_rp.deliver(true);
  self->quit();
}

caf::behavior directory(directory_actor* self, caf::actor writer,
                        node_state* node, room_config cfg) {
  self->state.writer = std::move(writer);
  self->state.node = node;
  self->state.cfg = cfg;
  // The timer lives here, not in the detached writer: a detached actor
  // with a pending self-timer holds up the actor system's shutdown.
  if (cfg.sweep_interval.count() > 0)
    self->delayed_send(self, cfg.sweep_interval, sweep_atom::value);
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (auto [b, e] = st.parked_conns.equal_range(dm.source); b != e) {
      // A parked subscriber's connection ended without leaving its rooms.
      std::vector<std::string> keys;
      for (auto i = b; i != e; ++i)
        keys.push_back(i->second);
      for (auto& key : keys)
        if (auto p = st.parked.find(key); p != st.parked.end())
          for (auto& sub : p->second.subs)
            if (sub.conn.address() == dm.source) {
              unpark(self, key, sub.conn_id, false);
              break;
            }
      st.parked_conns.erase(dm.source);
      return;
    }
    auto k = st.keys.find(dm.source);
    if (k == st.keys.end())
      return;
    auto r = st.rooms.find(k->second);
    if (r != st.rooms.end() && r->second.room.address() == dm.source)
      st.rooms.erase(r);
    st.keys.erase(k);
    --st.alive;
    finish_shutdown_if_done(self);
  });
  return {
      [=](subscribe_atom a, protocol::room_id& id,
          subscriber& sub) -> caf::result<caf::message> {
        auto& st = self->state;
        if (!parkable(st, id, sub)) {
          auto& e = room_for(self, id);
          ++e.forwarded;
          self->delegate(e.room, a, std::move(sub));
          return caf::delegated<caf::message>{};
        }
        auto me = caf::actor_cast<caf::actor>(self);
        auto p = st.parked.find(id.str());
        if (auto k = st.positions.find(id.str());
            p == st.parked.end() && k != st.positions.end()) {
          p = st.parked
                  .emplace(id.str(), directory_state::parked_room{
                                         std::move(k->second.first),
                                         k->second.second, {}})
                  .first;
          st.positions.erase(k);
        }
        if (p != st.parked.end()) {
          auto reply = answer(self, me, p->second.epoch, p->second.offset);
          park(self, id, p->second, std::move(sub));
          return reply;
        }
        // The room's position, as its actor would start from it.
        auto rp = self->make_response_promise();
        self->request(st.writer, caf::infinite, position_atom::value, id.str())
            .then(
                [=](std::string& epoch, std::uint64_t offset) mutable {
                  auto& st = self->state;
                  if (st.shutting_down)
                    return rp.deliver(unavailable());
                  if (!parkable(st, id, sub)) {
                    // An actor started meanwhile: it serves the subscribe.
                    auto& e = room_for(self, id);
                    ++e.forwarded;
                    rp.delegate(e.room, subscribe_atom::value, std::move(sub));
                    return;
                  }
                  auto& p = st.parked[id.str()];
                  if (p.subs.empty()) {
                    p.epoch = epoch;
                    p.offset = offset;
                  }
                  rp.deliver(me, p.epoch, p.offset);
                  park(self, id, p, std::move(sub));
                },
                [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
        return rp;
      },
      // A connection leaves a room it joined while parked here: it may be
      // parked still, or have moved to the room's actor since.
      [=](unsub_atom a, const std::string& key,
          std::uint64_t conn_id) -> caf::result<caf::message> {
        auto& st = self->state;
        if (unpark(self, key, conn_id, true))
          return answer(self, true);
        auto r = st.rooms.find(key);
        if (r == st.rooms.end())
          return answer(self, false);
        self->delegate(r->second.room, a, conn_id);
        return caf::delegated<caf::message>{};
      },
      // Publishes, operation changes and state reads go to the room's owner:
      // here, or the owner node's directory (which answers the requester).
      [=](publish_atom a, protocol::publish_request& req) -> caf::result<caf::message> {
        if (auto r = route_of(self, req.room.str()); r.elsewhere) {
          self->state.node->counters.forwarded_publishes.fetch_add(
              1, std::memory_order_relaxed);
          return forward<std::uint64_t>(
              self, r, r_publish_atom::value, req.room.str(),
              std::move(req.type), std::move(req.event), std::move(req.data),
              std::move(req.publish_id));
        }
        auto& e = room_for(self, req.room);
        ++e.forwarded;
        self->delegate(e.room, a, std::move(req));
        return caf::delegated<caf::message>{};
      },
      [=](op_create_atom a, protocol::room_id& id,
          persistence::operation_record& rec) -> caf::result<caf::message> {
        if (auto r = route_of(self, id.str()); r.elsewhere) {
          return forward<std::string, std::uint64_t, std::string>(
              self, r, r_opcreate_atom::value, id.str(), std::move(rec));
        }
        auto& e = room_for(self, id);
        ++e.forwarded;
        self->delegate(e.room, a, std::move(rec));
        return caf::delegated<caf::message>{};
      },
      [=](command_atom a, protocol::room_id& id, std::string& name,
          std::string& args, std::string& caller) -> caf::result<caf::message> {
        if (auto r = route_of(self, id.str()); r.elsewhere) {
          return forward<std::uint64_t>(self, r, r_command_atom::value,
                                        id.str(), std::move(name),
                                        std::move(args), std::move(caller));
        }
        auto& e = room_for(self, id);
        ++e.forwarded;
        self->delegate(e.room, a, std::move(name), std::move(args),
                       std::move(caller));
        return caf::delegated<caf::message>{};
      },
      [=](state_atom a, protocol::room_id& id) -> caf::result<caf::message> {
        if (auto r = route_of(self, id.str()); r.elsewhere) {
          return forward<bool, std::string, std::uint64_t, std::string>(
              self, r, r_state_atom::value, id.str());
        }
        auto& e = room_for(self, id);
        ++e.forwarded;
        self->delegate(e.room, a);
        return caf::delegated<caf::message>{};
      },
      // From other nodes (this directory is the node's cluster endpoint).
      // Only the owner serves these; a node whose view differs answers
      // `unavailable` and the caller retries, so nothing loops.
      [=](r_publish_atom, const std::string& key, std::string& type,
          std::string& event, std::string& data,
          std::string& publish_id) -> caf::result<caf::message> {
        auto id = protocol::parse_room_id(key);
        if (!id || route_of(self, key).elsewhere)
          return unavailable();
        protocol::publish_request req{*id, std::move(type), std::move(event),
                                      std::move(data), std::move(publish_id)};
        auto& e = room_for(self, *id);
        ++e.forwarded;
        self->delegate(e.room, publish_atom::value, std::move(req));
        return caf::delegated<caf::message>{};
      },
      [=](r_opcreate_atom, const std::string& key,
          persistence::operation_record& rec) -> caf::result<caf::message> {
        auto id = protocol::parse_room_id(key);
        if (!id || route_of(self, key).elsewhere)
          return unavailable();
        auto& e = room_for(self, *id);
        ++e.forwarded;
        self->delegate(e.room, op_create_atom::value, std::move(rec));
        return caf::delegated<caf::message>{};
      },
      [=](r_command_atom, const std::string& key, std::string& name,
          std::string& args, std::string& caller) -> caf::result<caf::message> {
        auto id = protocol::parse_room_id(key);
        if (!id || route_of(self, key).elsewhere)
          return unavailable();
        auto& e = room_for(self, *id);
        ++e.forwarded;
        self->delegate(e.room, command_atom::value, std::move(name),
                       std::move(args), std::move(caller));
        return caf::delegated<caf::message>{};
      },
      [=](r_state_atom, const std::string& key) -> caf::result<caf::message> {
        auto id = protocol::parse_room_id(key);
        if (!id || route_of(self, key).elsewhere)
          return unavailable();
        auto& e = room_for(self, *id);
        ++e.forwarded;
        self->delegate(e.room, state_atom::value);
        return caf::delegated<caf::message>{};
      },
      [=](r_attach_atom a, const std::string& key, caf::actor& mirror,
          std::string& epoch, std::uint64_t seen) -> caf::result<caf::message> {
        auto id = protocol::parse_room_id(key);
        if (!id || route_of(self, key).elsewhere)
          return unavailable();
        auto& e = room_for(self, *id);
        ++e.forwarded;
        self->delegate(e.room, a, std::move(mirror), std::move(epoch), seen);
        return caf::delegated<caf::message>{};
      },
      // This node's copy of a room's history, for a node taking the room
      // over (`taker` non-empty: fence the room for it) or syncing its
      // replica. Committed appends only: the writer commits what it holds
      // before answering.
      [=](r_pos_atom, const std::string& key, const std::string& taker) {
        auto& st = self->state;
        if (!taker.empty()) {
          if (st.fences.size() >= 100000)
            st.fences.clear(); // bounded; a fence matters for seconds
          st.fences[key] = taker;
        }
        self->delegate(st.writer, position_atom::value, key);
      },
      // This node's copy (mirrors, a node taking over).
      [=](r_read_atom a, const std::string& key, std::uint64_t after,
          std::uint64_t limit) {
        self->delegate(self->state.writer, a, key, after, limit);
      },
      // The room's history wherever it is owned (long-polling).
      [=](read_atom a, const std::string& key, std::uint64_t after,
          std::uint64_t limit) -> caf::result<caf::message> {
        if (auto r = route_of(self, key); r.elsewhere)
          return forward<std::vector<persistence::stored_event>>(
              self, r, r_read_atom::value, key, after, limit);
        self->delegate(self->state.writer, a, key, after, limit);
        return caf::delegated<caf::message>{};
      },
      [=](position_atom a, const std::string& key) -> caf::result<caf::message> {
        if (auto r = route_of(self, key); r.elsewhere)
          return forward<std::string, std::uint64_t>(self, r, r_pos_atom::value,
                                                     key, std::string{});
        self->delegate(self->state.writer, a, key);
        return caf::delegated<caf::message>{};
      },
      [=](snap_get_atom a, const std::string& key) {
        self->delegate(self->state.writer, a, key);
      },
      [=](op_get_atom a, const std::string& id) {
        self->delegate(self->state.writer, a, id);
      },
      [=](repl_atom a, const std::string& from,
          persistence::replica_batch& batch) -> caf::result<caf::message> {
        auto& st = self->state;
        auto f = st.fences.find(batch.room);
        if (f != st.fences.end() && f->second != from)
          return answer(self, false, std::uint64_t{0});
        self->delegate(st.writer, a, std::move(batch));
        return caf::delegated<caf::message>{};
      },
      [=](repl_atom, persistence::operation_record& rec) {
        // Without a sender: the writer's answer (bool) would come back here
        // as an unexpected message, and CAF's reply to that (an error)
        // would stop the writer.
        caf::anon_send(self->state.writer, op_create_atom::value,
                       std::move(rec));
      },
      [=](view_atom a) {
        auto& st = self->state;
        for (auto& [key, e] : st.rooms)
          self->send(e.room, a);
        if (!st.cfg.placement || st.in_flight.empty())
          return;
        auto v = st.cfg.placement->current();
        for (auto i = st.in_flight.begin(); i != st.in_flight.end();) {
          if (std::binary_search(v->live.begin(), v->live.end(),
                                 i->second.node)) {
            ++i;
            continue;
          }
          i->second.rp.deliver(unavailable());
          i = st.in_flight.erase(i);
        }
      },
      [=](sweep_atom) {
        auto& st = self->state;
        if (st.shutting_down)
          return;
        self->send(st.writer, sweep_atom::value);
        self->delayed_send(self, st.cfg.sweep_interval, sweep_atom::value);
      },
      [=](idle_atom, const std::string& key, std::uint64_t seen) {
        auto& st = self->state;
        auto i = st.rooms.find(key);
        if (i == st.rooms.end() || i->second.forwarded != seen ||
            caf::actor_cast<caf::actor_addr>(self->current_sender()) !=
                i->second.room.address())
          return;
        // Erased now, so the next message for this key spawns a new room;
        // the old one saw everything sent to it and quits on retire.
        self->send(i->second.room, retire_atom::value);
        st.rooms.erase(i);
      },
      [=](rooms_atom) {
        std::vector<std::string> keys;
        keys.reserve(self->state.rooms.size());
        for (auto& kv : self->state.rooms)
          keys.push_back(kv.first);
        return keys;
      },
      [=](shutdown_atom) -> caf::result<bool> {
        auto& st = self->state;
        st.shutting_down = true;
        for (auto& [key, e] : st.rooms)
          self->send(e.room, retire_atom::value);
        st.rooms.clear();
        st.parked.clear(); // their sessions close with the server
        st.shutdown_rp = self->make_response_promise();
        auto rp = st.shutdown_rp;
        finish_shutdown_if_done(self);
        return rp;
      },
  };
}

} // namespace

caf::actor spawn_room_directory(caf::actor_system& sys, caf::actor writer,
                                node_state& node, room_config cfg) {
  return sys.spawn(directory, std::move(writer), &node, cfg);
}

} // namespace tidings::actors
