#include "actors/history_writer.hpp"

#include "actors/clock.hpp"
#include "actors/messages.hpp"

#include <caf/all.hpp>

#include <limits>
#include <optional>
#include <set>
#include <vector>

namespace tidings::actors {

namespace {

struct pending_append {
  persistence::stored_event ev;
  caf::response_promise rp;
  std::optional<persistence::snapshot_update> snap;
};

struct pending_replica {
  persistence::replica_batch batch;
  caf::response_promise rp;
};

struct writer_state {
  std::shared_ptr<persistence::history_store> store;
  node_state* node = nullptr;
  history_writer_config cfg;
  std::vector<pending_append> pending;
  std::vector<pending_replica> replicas;
  bool flush_scheduled = false;
  std::set<std::string> written; // rooms appended to since the last trim
  std::chrono::steady_clock::time_point last_trim{};
  static inline const char* name = "history_writer";
};

using writer_actor = caf::stateful_actor<writer_state>;

void apply_retention(writer_actor* self);

void commit_replicas(writer_actor* self) {
  auto& st = self->state;
  if (st.replicas.empty())
    return;
  std::vector<persistence::replica_batch> batches;
  batches.reserve(st.replicas.size());
  for (auto& r : st.replicas)
    batches.push_back(std::move(r.batch));
  auto res = st.store->replicate(batches);
  if (res) {
    st.node->counters.history_commits.fetch_add(1, std::memory_order_relaxed);
    for (std::size_t i = 0; i < batches.size(); ++i) {
      auto& out = (*res)[i];
      st.replicas[i].rp.deliver(out.ok, out.last);
      st.node->counters.replicated_rows.fetch_add(
          out.ok ? batches[i].events.size() : 0, std::memory_order_relaxed);
      if (out.ok && st.cfg.retention.for_room(batches[i].room).bounded())
        st.written.insert(batches[i].room);
    }
  } else {
    auto err = caf::make_error(caf::sec::runtime_error, res.error().code);
    for (auto& r : st.replicas)
      r.rp.deliver(err);
  }
  st.replicas.clear();
}

void commit_appends(writer_actor* self);

void commit_pending(writer_actor* self) {
  self->state.flush_scheduled = false;
  commit_appends(self);
  commit_replicas(self);
}

void commit_appends(writer_actor* self) {
  auto& st = self->state;
  if (st.pending.empty())
    return;
  std::vector<persistence::stored_event> batch;
  std::vector<persistence::snapshot_update> snaps;
  batch.reserve(st.pending.size());
  for (auto& p : st.pending) {
    batch.push_back(std::move(p.ev));
    if (p.snap)
      snaps.push_back(std::move(*p.snap));
  }
  auto res = st.store->append(batch, snaps);
  if (res) {
    st.node->counters.history_commits.fetch_add(1, std::memory_order_relaxed);
    st.node->counters.history_rows.fetch_add(batch.size(),
                                             std::memory_order_relaxed);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      st.pending[i].rp.deliver(batch[i].offset);
      if (st.cfg.retention.for_room(batch[i].room).bounded())
        st.written.insert(batch[i].room);
    }
  } else {
    auto err = caf::make_error(caf::sec::runtime_error, res.error().code);
    for (auto& p : st.pending)
      p.rp.deliver(err);
  }
  st.pending.clear();
  // Retention runs here, not on a timer: a detached actor with a pending
  // self-timer would hold up the actor system's shutdown.
  auto now = std::chrono::steady_clock::now();
  if (!st.written.empty() && now - st.last_trim >= st.cfg.trim_interval) {
    st.last_trim = now;
    apply_retention(self);
  }
}

void apply_retention(writer_actor* self) {
  auto& st = self->state;
  auto now_ms = unix_now_ms();
  for (auto& room : st.written) {
    const auto& p = st.cfg.retention.for_room(room);
    auto keep = p.max_events > 0 ? p.max_events
                                 : std::numeric_limits<std::uint64_t>::max();
    auto min_ts = p.max_age_seconds > 0 ? now_ms - p.max_age_seconds * 1000 : 0;
    // A failed trim only keeps more history than asked; retried next pass
    // when the room is written again.
    (void)st.store->trim(room, keep, min_ts);
  }
  st.written.clear();
}

void schedule_flush(writer_actor* self) {
  auto& st = self->state;
  if (st.pending.size() + st.replicas.size() >= st.cfg.max_batch) {
    commit_pending(self);
  } else if (!st.flush_scheduled) {
    st.flush_scheduled = true;
    self->send(self, flush_atom::value);
  }
}

void queue_append(writer_actor* self, persistence::stored_event ev,
                  std::optional<persistence::snapshot_update> snap) {
  auto& st = self->state;
  st.pending.push_back(
      {std::move(ev), self->make_response_promise(), std::move(snap)});
  schedule_flush(self);
}

caf::behavior writer(writer_actor* self,
                     std::shared_ptr<persistence::history_store> store,
                     node_state* node, history_writer_config cfg) {
  self->state.store = std::move(store);
  self->state.node = node;
  self->state.cfg = cfg;
  return {
      [=](position_atom,
          const std::string& room) -> caf::result<std::string, std::uint64_t> {
        // What is queued commits first: a node taking a room over must see
        // every offset this node has stored or is about to.
        commit_pending(self);
        auto pos = self->state.store->position(room);
        if (!pos)
          return caf::make_error(caf::sec::runtime_error, pos.error().code);
        return {pos->epoch, pos->offset};
      },
      [=](append_atom, persistence::stored_event& ev) {
        queue_append(self, std::move(ev), std::nullopt);
      },
      [=](append_atom, persistence::stored_event& ev,
          persistence::snapshot_update& snap) {
        queue_append(self, std::move(ev), std::move(snap));
      },
      [=](repl_atom, persistence::replica_batch& batch) {
        auto& st = self->state;
        st.replicas.push_back(
            {std::move(batch), self->make_response_promise()});
        schedule_flush(self);
      },
      [=](snap_get_atom, const std::string& room)
          -> caf::result<bool, std::uint64_t, std::string> {
        auto snap = self->state.store->get_snapshot(room);
        if (!snap)
          return caf::make_error(caf::sec::runtime_error, snap.error().code);
        if (!*snap)
          return {false, std::uint64_t{0}, std::string{}};
        return {true, (*snap)->offset, std::move((*snap)->state)};
      },
      [=](op_create_atom,
          const persistence::operation_record& op) -> caf::result<bool> {
        auto res = self->state.store->create_operation(op);
        if (!res)
          return caf::make_error(caf::sec::invalid_argument, res.error().code);
        return *res;
      },
      [=](op_get_atom, const std::string& id)
          -> caf::result<bool, persistence::operation_record> {
        auto op = self->state.store->get_operation(id);
        if (!op)
          return caf::make_error(caf::sec::runtime_error, op.error().code);
        if (!*op)
          return {false, persistence::operation_record{}};
        return {true, std::move(**op)};
      },

      [=](r_read_atom, const std::string& room, std::uint64_t after,
          std::uint64_t limit) {
        // The same read, as other nodes (and mirrors) ask for it.
        return self->delegate(caf::actor_cast<caf::actor>(self),
                              read_atom::value, room, after, limit);
      },
      [=](read_atom, const std::string& room, std::uint64_t after,
          std::uint64_t limit)
          -> caf::result<std::vector<persistence::stored_event>> {
        // Appends queued before this read are committed first, so a reader
        // sees every offset its room has acknowledged.
        commit_pending(self);
        auto events = self->state.store->read_since(room, after, limit);
        if (!events)
          return caf::make_error(caf::sec::runtime_error, events.error().code);
        return std::move(*events);
      },
      [=](flush_atom) { commit_pending(self); },
      [=](sweep_atom) {
        auto& st = self->state;
        auto rooms = st.store->rooms();
        if (!rooms)
          return;
        for (auto& room : *rooms)
          if (st.cfg.retention.for_room(room).max_age_seconds > 0)
            st.written.insert(std::move(room));
        apply_retention(self);
      },
      [=](shutdown_atom) {
        commit_pending(self);
        self->state.store.reset(); // closes the store cleanly
        self->quit();
      },
  };
}

} // namespace

protocol::publication to_publication(const protocol::room_id& room,
                                     const std::string& epoch,
                                     persistence::stored_event&& ev) {
  protocol::publication pub;
  pub.room = room;
  pub.type = std::move(ev.type);
  pub.event = std::move(ev.event);
  pub.data = std::move(ev.data);
  pub.publish_id = std::move(ev.publish_id);
  pub.offset = ev.offset;
  pub.epoch = epoch;
  pub.timestamp_ms = ev.timestamp_ms;
  return pub;
}

void add_history_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<persistence::stored_event>("tidings::stored_event");
  cfg.add_message_type<std::vector<persistence::stored_event>>(
      "tidings::stored_events");
  cfg.add_message_type<persistence::snapshot_update>(
      "tidings::snapshot_update");
  cfg.add_message_type<persistence::operation_record>(
      "tidings::operation_record");
  cfg.add_message_type<persistence::replica_batch>("tidings::replica_batch");
}

caf::actor
spawn_history_writer(caf::actor_system& sys,
                     std::shared_ptr<persistence::history_store> store,
                     node_state& node, history_writer_config cfg) {
  if (cfg.detached)
    return sys.spawn<caf::detached>(writer, std::move(store), &node, cfg);
  return sys.spawn(writer, std::move(store), &node, cfg);
}

} // namespace tidings::actors
