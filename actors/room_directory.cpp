#include "actors/room_directory.hpp"

#include "actors/history_writer.hpp"
#include "actors/messages.hpp"

#include <caf/all.hpp>

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
  bool shutting_down = false;
  caf::response_promise shutdown_rp;
  static inline const char* name = "room_directory";
};

using directory_actor = caf::stateful_actor<directory_state>;

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
  return st.rooms.emplace(id.str(), entry{std::move(room), 0}).first->second;
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
      [=](subscribe_atom a, protocol::room_id& id, subscriber& sub) {
        auto& e = room_for(self, id);
        ++e.forwarded;
        return self->delegate(e.room, a, std::move(sub));
      },
      [=](publish_atom a, protocol::publish_request& req) {
        auto& e = room_for(self, req.room);
        ++e.forwarded;
        return self->delegate(e.room, a, std::move(req));
      },
      [=](op_create_atom a, protocol::room_id& id,
          persistence::operation_record& rec) {
        auto& e = room_for(self, id);
        ++e.forwarded;
        return self->delegate(e.room, a, std::move(rec));
      },
      [=](command_atom a, protocol::room_id& id, std::string& name,
          std::string& args, std::string& caller) {
        auto& e = room_for(self, id);
        ++e.forwarded;
        return self->delegate(e.room, a, std::move(name), std::move(args),
                              std::move(caller));
      },
      [=](state_atom a, protocol::room_id& id) {
        auto& e = room_for(self, id);
        ++e.forwarded;
        return self->delegate(e.room, a);
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
