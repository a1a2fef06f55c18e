#include "actors/cluster_node.hpp"

#include "actors/messages.hpp"
#include "cluster/membership_messages.hpp"
#include "cluster/placement.hpp"

#include <caf/all.hpp>

#include <utility>

namespace tidings::actors {

std::string placement_view::owner(std::string_view room) const {
  return cluster::owner_of(room, live);
}

std::string placement_view::replica(std::string_view room) const {
  if (live.size() < 2)
    return {};
  return rank(room)[1];
}

std::vector<std::string> placement_view::rank(std::string_view room) const {
  return cluster::rank_members(room, live);
}

placement_table::placement_table(std::string self) {
  auto v = std::make_shared<placement_view>();
  v->live.push_back(self);
  v->self = std::move(self);
  view_ = std::move(v);
}

std::shared_ptr<const placement_view> placement_table::current() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return view_;
}

void placement_table::replace(std::shared_ptr<const placement_view> next) {
  std::lock_guard<std::mutex> guard{mtx_};
  view_ = std::move(next);
}

namespace {

struct cluster_node_state {
  std::shared_ptr<placement_table> table;
  caf::actor membership;
  caf::actor directory;
  static inline const char* name = "cluster_node";
};

using cluster_node_actor = caf::stateful_actor<cluster_node_state>;

std::shared_ptr<const placement_view>
next_view(const placement_view& prev, const cluster::membership_view& mv) {
  auto v = std::make_shared<placement_view>();
  v->version = prev.version + 1;
  v->self = prev.self;
  v->live = mv.live; // sorted by the membership actor
  for (auto& m : mv.members)
    if (m.state != cluster::member_state::dead && m.addr.node_id != v->self)
      v->endpoints.emplace(m.addr.node_id, m.endpoint);
  return v;
}

caf::behavior cluster_node(cluster_node_actor* self,
                           std::shared_ptr<placement_table> table,
                           caf::actor directory) {
  self->state.table = std::move(table);
  self->state.directory = std::move(directory);
  return {
      [=](cn_attach_atom, caf::actor& membership) -> caf::result<bool> {
        auto& st = self->state;
        if (!membership || st.membership)
          return false;
        st.membership = membership;
        auto rp = self->make_response_promise<bool>();
        self->request(membership, std::chrono::seconds(5),
                      cluster::cl_watch_atom::value,
                      caf::actor_cast<caf::actor>(self))
            .then([=](bool ok) mutable { rp.deliver(ok); },
                  [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
        return rp;
      },
      [=](cluster::cl_view_atom, const cluster::membership_view& mv) {
        auto& t = *self->state.table;
        auto prev = t.current();
        auto next = next_view(*prev, mv);
        bool changed =
            next->live != prev->live || next->endpoints != prev->endpoints;
        t.replace(std::move(next));
        if (changed && self->state.directory)
          self->send(self->state.directory, view_atom::value);
      },
      [=](cn_owner_atom, const std::string& room) {
        return self->state.table->current()->owner(room);
      },
      [=](cn_replica_atom, const std::string& room) {
        return self->state.table->current()->replica(room);
      },
      [=](cn_rank_atom, const std::string& room) {
        return self->state.table->current()->rank(room);
      },
  };
}

} // namespace

caf::actor spawn_cluster_node(caf::actor_system& sys,
                              std::shared_ptr<placement_table> table,
                              caf::actor directory) {
  return sys.spawn(cluster_node, std::move(table), std::move(directory));
}

} // namespace tidings::actors
