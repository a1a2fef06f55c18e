#include "cluster/membership.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <utility>

namespace tidings::cluster {

namespace {

using time_point = caf::actor_clock::time_point;
using endpoint = std::pair<std::string, std::uint16_t>;

/// A member we accepted: the handles its own messages came with.
struct peer {
  caf::actor actor; // its membership actor, monitored; null once dead
  caf::strong_actor_ptr endpoint;
  std::uint64_t incarnation = 0;
};

/// Connection attempts to one address (a seed or a member).
struct attempt {
  time_point last{};
  bool pending = false;
  bool is_self = false;    // the address turned out to be this node
  caf::actor_addr reached; // membership actor found there
};

struct membership_state {
  membership_config cfg;
  std::shared_ptr<membership_counters> counters;
  std::optional<member_table> table;
  failure_thresholds thresholds{};
  std::map<std::string, peer> peers; // accepted members, by id
  std::map<endpoint, attempt> attempts;
  std::vector<endpoint> seeds;
  std::vector<caf::actor> observers;
  std::vector<caf::response_promise> ready_waiters;
  std::uint16_t port = 0;
  bool published = false;
  caf::error publish_error;
  std::uint64_t view_version = 0;
  std::vector<member_addr> last_view;
  time_point last_tick{};
  bool frozen = false;
  bool leaving = false;
  static inline const char* name = "cluster_membership";
};

using membership_actor = caf::stateful_actor<membership_state>;

std::uint64_t now_micros() {
  using namespace std::chrono;
  return static_cast<std::uint64_t>(
      duration_cast<microseconds>(system_clock::now().time_since_epoch())
          .count());
}

std::string advertised_host(const membership_config& cfg) {
  if (!cfg.advertise_host.empty())
    return cfg.advertise_host;
  if (cfg.host.empty() || cfg.host == "0.0.0.0" || cfg.host == "::")
    return "127.0.0.1";
  return cfg.host;
}

member_info my_info(membership_actor* self) {
  auto& st = self->state;
  return member_info{st.table->self(), st.cfg.endpoint};
}

membership_view make_view(membership_actor* self) {
  auto& st = self->state;
  auto now = self->clock().now();
  membership_view v;
  v.version = st.view_version;
  v.live = st.table->live_ids();
  auto others = st.table->others();
  v.members.reserve(others.size() + 1);
  bool self_done = false;
  auto add_self = [&] {
    v.members.push_back(member_status{st.table->self(), member_state::alive, 0,
                                      st.cfg.endpoint});
    self_done = true;
  };
  for (auto& rec : others) {
    if (!self_done && st.table->self().node_id < rec.addr.node_id)
      add_self();
    member_status s;
    s.addr = rec.addr;
    s.state = rec.state;
    s.silent_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      now - rec.last_heard)
                      .count();
    auto p = st.peers.find(rec.addr.node_id);
    if (p != st.peers.end() && rec.state != member_state::dead)
      s.endpoint = p->second.endpoint;
    v.members.push_back(std::move(s));
  }
  if (!self_done)
    add_self();
  return v;
}

/// Tells observers when the live (id, incarnation) set changed.
/// Publishes a new view when the live set changed or `force` (a member's
/// endpoint handle changed: after a dropped connection the old proxy is
/// dead, and messages to it vanish).
void publish_view_if_changed(membership_actor* self, bool force = false) {
  auto& st = self->state;
  auto live = st.table->live_members();
  if (live == st.last_view && !force)
    return;
  st.last_view = std::move(live);
  ++st.view_version;
  st.counters->view_version = st.view_version;
  st.counters->members_alive = static_cast<std::int64_t>(st.last_view.size());
  if (st.observers.empty())
    return;
  auto v = make_view(self);
  for (auto& o : st.observers)
    self->send(o, cl_view_atom::value, v);
}

/// Drops handles of members the table no longer holds (forgotten, or
/// evicted to make room).
void sync_peers(membership_actor* self) {
  auto& st = self->state;
  for (auto i = st.peers.begin(); i != st.peers.end();) {
    if (!st.table->find(i->first)) {
      if (i->second.actor)
        self->demonitor(i->second.actor);
      i = st.peers.erase(i);
    } else {
      ++i;
    }
  }
}

void forget_handle(membership_actor* self, const std::string& id) {
  auto p = self->state.peers.find(id);
  if (p != self->state.peers.end() && p->second.actor) {
    self->demonitor(p->second.actor);
    p->second.actor = nullptr;
  }
}

bool is_seed(const membership_state& st, const endpoint& ep) {
  return std::find(st.seeds.begin(), st.seeds.end(), ep) != st.seeds.end();
}

/// Nobody answers at `ep`. A live member there whose connection we lost
/// is dead now: no need to wait for the heartbeat timeout.
void connect_failed(membership_actor* self, const endpoint& ep) {
  auto& st = self->state;
  ++st.counters->connect_failures;
  for (auto& rec : st.table->others()) {
    if (rec.state == member_state::dead || rec.addr.host != ep.first ||
        rec.addr.port != ep.second)
      continue;
    auto p = st.peers.find(rec.addr.node_id);
    if (p != st.peers.end() && p->second.actor)
      continue; // still connected: the heartbeats decide
    if (st.table->declare_dead(rec.addr.node_id, rec.addr.incarnation,
                               self->clock().now()))
      ++st.counters->deaths;
  }
  publish_view_if_changed(self);
}

/// Connects to `ep` through the middleman actor (never blocking this actor)
/// and sends a join to the membership actor published there.
void try_connect(membership_actor* self, const endpoint& ep) {
  auto& st = self->state;
  auto now = self->clock().now();
  auto i = st.attempts.find(ep);
  if (i == st.attempts.end()) {
    if (st.attempts.size() >= 2 * st.cfg.max_members + st.seeds.size())
      return; // bounded; pruned on the tick
    i = st.attempts.emplace(ep, attempt{}).first;
  } else if (i->second.pending || i->second.is_self ||
             now - i->second.last < st.cfg.reconnect_interval) {
    return;
  }
  i->second.pending = true;
  i->second.last = now;
  auto mm = self->system().middleman().actor_handle();
  self->request(mm, st.cfg.connect_timeout, caf::connect_atom::value, ep.first,
                ep.second)
      .then(
          [=](caf::node_id& nid, caf::strong_actor_ptr& ptr,
              std::set<std::string>&) {
            auto& st = self->state;
            auto a = st.attempts.find(ep);
            if (a != st.attempts.end())
              a->second.pending = false;
            if (!ptr) {
              connect_failed(self, ep); // nothing published there
              return;
            }
            if (nid == self->system().node()) {
              if (a != st.attempts.end())
                a->second.is_self = true;
              return;
            }
            if (a != st.attempts.end())
              a->second.reached = ptr->address();
            if (st.frozen || st.leaving)
              return;
            self->send(caf::actor_cast<caf::actor>(ptr), cl_join_atom::value,
                       my_info(self));
          },
          [=](caf::error&) {
            auto& st = self->state;
            auto a = st.attempts.find(ep);
            if (a != st.attempts.end())
              a->second.pending = false;
            connect_failed(self, ep);
          });
}

void send_heartbeats(membership_actor* self) {
  auto& st = self->state;
  auto info = my_info(self);
  auto digest = st.table->digest();
  for (auto& [id, p] : st.peers) {
    auto rec = st.table->find(id);
    if (!p.actor || !rec || rec->state == member_state::dead)
      continue;
    self->send(p.actor, cl_hb_atom::value, info, digest);
    ++st.counters->heartbeats_sent;
  }
}

/// Seeds we have not reached yet, or whose member is not live, and dead
/// members (they may come back at the same address).
void reconnect(membership_actor* self) {
  auto& st = self->state;
  for (auto& ep : st.seeds) {
    auto a = st.attempts.find(ep);
    if (a != st.attempts.end()) {
      if (a->second.is_self)
        continue;
      bool live = std::any_of(st.peers.begin(), st.peers.end(), [&](auto& kv) {
        return kv.second.actor &&
               kv.second.actor.address() == a->second.reached;
      });
      if (live)
        continue;
    }
    try_connect(self, ep);
  }
  for (auto& rec : st.table->others())
    if (rec.state == member_state::dead)
      try_connect(self, endpoint{rec.addr.host, rec.addr.port});
}

void prune_attempts(membership_actor* self) {
  auto& st = self->state;
  auto now = self->clock().now();
  for (auto i = st.attempts.begin(); i != st.attempts.end();) {
    if (!i->second.pending && !is_seed(st, i->first) &&
        now - i->second.last >= st.cfg.forget_after)
      i = st.attempts.erase(i);
    else
      ++i;
  }
}

/// A join or heartbeat straight from `info.addr.node_id`. True when the
/// sender is accepted (joined, rejoined or refreshed).
bool on_contact(membership_actor* self, const member_info& info) {
  auto& st = self->state;
  auto sender = caf::actor_cast<caf::actor>(self->current_sender());
  if (!sender)
    return false;
  auto& id = info.addr.node_id;
  switch (st.table->heard_from(info.addr, self->clock().now())) {
  case contact_result::joined:
  case contact_result::rejoined:
    ++st.counters->joins;
    sync_peers(self); // the table may have evicted a dead entry
    break;
  case contact_result::refreshed:
    break;
  case contact_result::dead:
    // Same incarnation we declared dead: it must come back as a new one.
    self->send(sender, cl_dead_atom::value, id, info.addr.incarnation);
    return false;
  case contact_result::rejected:
    if (id != st.table->self().node_id)
      ++st.counters->rejected;
    return false;
  case contact_result::stale:
    return false;
  }
  auto& p = st.peers[id];
  if (p.actor != sender) {
    if (p.actor)
      self->demonitor(p.actor);
    p.actor = sender;
    self->monitor(sender);
  }
  bool new_endpoint = p.endpoint != info.endpoint;
  p.endpoint = info.endpoint;
  p.incarnation = info.addr.incarnation;
  publish_view_if_changed(self, new_endpoint);
  return true;
}

/// The membership actor of `id` quit, or our connection to it closed.
void on_peer_down(membership_actor* self, const std::string& id,
                  const caf::error& reason) {
  auto& st = self->state;
  auto& p = st.peers[id];
  p.actor = nullptr;
  auto rec = st.table->find(id);
  if (!rec || rec->state == member_state::dead)
    return;
  if (reason == caf::make_error(caf::exit_reason::remote_link_unreachable)) {
    // Only the connection is gone (a crash, or one side was paused past
    // the middleman's timeout). Reconnect at once: a refused connection
    // declares it dead now, an answer lets it go on.
    auto ep = endpoint{rec->addr.host, rec->addr.port};
    auto a = st.attempts.find(ep);
    if (a != st.attempts.end())
      a->second.last = time_point{};
    try_connect(self, ep);
    return;
  }
  // Its membership actor quit: dead without waiting for the timeout.
  if (st.table->declare_dead(id, p.incarnation, self->clock().now()))
    ++st.counters->deaths;
  publish_view_if_changed(self);
}

void reply_with_view(membership_actor* self, const caf::actor& to) {
  auto& st = self->state;
  self->send(to, cl_hb_atom::value, my_info(self), st.table->digest());
  ++st.counters->heartbeats_sent;
  self->send(to, cl_gossip_atom::value, st.table->live_members());
}

/// We were declared dead: take a new incarnation and join everyone again.
void rejoin(membership_actor* self, const caf::actor& told_by) {
  auto& st = self->state;
  auto addr = st.table->self();
  addr.incarnation = std::max(now_micros(), addr.incarnation + 1);
  st.table->set_self(addr);
  ++st.counters->self_rejoins;
  auto info = my_info(self);
  if (told_by)
    self->send(told_by, cl_join_atom::value, info);
  for (auto& [id, p] : st.peers)
    if (p.actor && p.actor != told_by)
      self->send(p.actor, cl_join_atom::value, info);
  for (auto& [ep, a] : st.attempts)
    a.last = time_point{}; // retry dead members and seeds now
  reconnect(self);
  publish_view_if_changed(self);
}

void on_tick(membership_actor* self) {
  auto& st = self->state;
  auto now = self->clock().now();
  // A tick far later than scheduled means this node was paused (SIGSTOP,
  // swapping): the others' silence is ours, not theirs.
  if (now - st.last_tick > st.cfg.failure_timeout / 2)
    st.table->touch_live(now);
  st.last_tick = now;
  auto swept = st.table->sweep(now, st.thresholds);
  st.counters->deaths += swept.died.size();
  for (auto& id : swept.died)
    forget_handle(self, id);
  if (!swept.forgotten.empty())
    sync_peers(self);
  send_heartbeats(self);
  reconnect(self);
  prune_attempts(self);
  publish_view_if_changed(self);
}

void on_published(membership_actor* self, std::uint16_t port) {
  auto& st = self->state;
  st.port = port;
  st.published = true;
  auto addr = st.table->self();
  addr.port = port;
  st.table->set_self(addr);
  st.last_view.clear();
  publish_view_if_changed(self);
  for (auto& rp : st.ready_waiters)
    rp.deliver(port);
  st.ready_waiters.clear();
  st.last_tick = self->clock().now();
  reconnect(self);
  self->delayed_send(self, st.cfg.heartbeat_interval, cl_tick_atom::value);
}

void on_publish_failed(membership_actor* self, caf::error err) {
  auto& st = self->state;
  st.publish_error = err;
  for (auto& rp : st.ready_waiters)
    rp.deliver(err);
  st.ready_waiters.clear();
  self->quit(std::move(err));
}

void init_state(membership_actor* self, membership_config cfg) {
  auto& st = self->state;
  st.counters =
      cfg.counters ? cfg.counters : std::make_shared<membership_counters>();
  cfg.max_members = std::max<std::size_t>(cfg.max_members, 2);
  member_addr me;
  me.node_id = cfg.node_id;
  me.incarnation = cfg.incarnation ? cfg.incarnation : now_micros();
  me.host = advertised_host(cfg);
  st.table.emplace(std::move(me), cfg.max_members);
  auto half = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      cfg.failure_timeout / 2);
  st.thresholds =
      failure_thresholds{half, cfg.failure_timeout, cfg.forget_after};
  for (auto& s : cfg.seeds)
    if (auto hp = parse_host_port(s); hp && !is_seed(st, *hp))
      st.seeds.push_back(std::move(*hp));
  st.cfg = std::move(cfg);
}

caf::behavior membership(membership_actor* self, membership_config cfg) {
  init_state(self, std::move(cfg));
  auto& st = self->state;
  auto mm = self->system().middleman().actor_handle();
  self->request(mm, st.cfg.connect_timeout, caf::publish_atom::value,
                st.cfg.port, caf::actor_cast<caf::strong_actor_ptr>(self),
                // reuse_addr: a restarted node binds its port again at once
                // (SO_REUSEADDR, not SO_REUSEPORT: TIME_WAIT only).
                std::set<std::string>{}, st.cfg.host, true)
      .then([=](std::uint16_t port) { on_published(self, port); },
            [=](caf::error& err) { on_publish_failed(self, std::move(err)); });
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    auto& obs = st.observers;
    obs.erase(std::remove_if(obs.begin(), obs.end(),
                             [&](auto& o) { return o.address() == dm.source; }),
              obs.end());
    if (st.frozen)
      return;
    for (auto& [id, p] : st.peers) {
      if (p.actor && p.actor.address() == dm.source) {
        on_peer_down(self, id, dm.reason);
        break;
      }
    }
  });
  return {
      // -- local API ----------------------------------------------------------
      [=](cl_ready_atom) -> caf::result<std::uint16_t> {
        auto& st = self->state;
        if (st.published)
          return st.port;
        if (st.publish_error)
          return st.publish_error;
        auto rp = self->make_response_promise();
        st.ready_waiters.push_back(rp);
        return rp;
      },
      [=](cl_members_atom) { return make_view(self); },
      [=](cl_watch_atom, caf::actor& observer) {
        auto& st = self->state;
        if (!observer || st.observers.size() >= st.cfg.max_observers)
          return false;
        self->monitor(observer);
        self->send(observer, cl_view_atom::value, make_view(self));
        st.observers.push_back(std::move(observer));
        return true;
      },
      [=](cl_endpt_atom, caf::strong_actor_ptr& ep) {
        // Announced with the next heartbeat.
        self->state.cfg.endpoint = std::move(ep);
        return true;
      },
      [=](cl_freeze_atom, bool on) {
        auto& st = self->state;
        if (st.frozen && !on) {
          st.frozen = false;
          st.last_tick = time_point{}; // the next tick sees the pause
          on_tick(self);
        }
        st.frozen = on;
        return true;
      },
      [=](cl_leave_atom) {
        auto& st = self->state;
        st.leaving = true;
        auto me = st.table->self();
        for (auto& [id, p] : st.peers)
          if (p.actor)
            self->send(p.actor, cl_leave_atom::value, me.node_id,
                       me.incarnation);
        if (st.published)
          self->send(self->system().middleman().actor_handle(),
                     caf::close_atom::value, st.port);
        self->quit();
        return true;
      },
      // -- peers
      // ----------------------------------------------------------------
      [=](cl_join_atom, const member_info& info) {
        if (self->state.frozen || self->state.leaving)
          return;
        if (on_contact(self, info))
          reply_with_view(self,
                          caf::actor_cast<caf::actor>(self->current_sender()));
      },
      [=](cl_hb_atom, const member_info& info, std::uint64_t digest) {
        auto& st = self->state;
        if (st.frozen || st.leaving)
          return;
        ++st.counters->heartbeats_received;
        auto known = st.table->find(info.addr.node_id) != nullptr;
        if (!on_contact(self, info))
          return;
        auto sender = caf::actor_cast<caf::actor>(self->current_sender());
        if (!known)
          reply_with_view(self, sender);
        else if (digest != st.table->digest())
          self->send(sender, cl_gossip_atom::value, st.table->live_members());
      },
      [=](cl_gossip_atom, const std::vector<member_addr>& members) {
        auto& st = self->state;
        if (st.frozen || st.leaving)
          return;
        auto n = std::min(members.size(), st.cfg.max_members);
        for (std::size_t i = 0; i < n; ++i) {
          auto& m = members[i];
          if (m.node_id == st.table->self().node_id || m.port == 0)
            continue;
          auto rec = st.table->find(m.node_id);
          if (!rec || m.incarnation > rec->addr.incarnation)
            try_connect(self, endpoint{m.host, m.port});
        }
      },
      [=](cl_dead_atom, const std::string& id, std::uint64_t incarnation) {
        auto& st = self->state;
        if (st.frozen || st.leaving)
          return;
        auto& me = st.table->self();
        if (id == me.node_id && incarnation == me.incarnation)
          rejoin(self, caf::actor_cast<caf::actor>(self->current_sender()));
      },
      [=](cl_leave_atom, const std::string& id, std::uint64_t incarnation) {
        auto& st = self->state;
        if (st.frozen || st.leaving)
          return;
        if (st.table->declare_dead(id, incarnation, self->clock().now())) {
          ++st.counters->leaves;
          forget_handle(self, id);
          publish_view_if_changed(self);
        }
      },
      // -- timer
      // ----------------------------------------------------------------
      [=](cl_tick_atom) {
        auto& st = self->state;
        if (st.leaving)
          return;
        self->delayed_send(self, st.cfg.heartbeat_interval,
                           cl_tick_atom::value);
        if (!st.frozen)
          on_tick(self);
      },
  };
}

} // namespace

void add_membership_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<member_addr>("tidings::member_addr");
  cfg.add_message_type<member_info>("tidings::member_info");
  cfg.add_message_type<member_status>("tidings::member_status");
  cfg.add_message_type<membership_view>("tidings::membership_view");
}

void configure_actor_system(caf::actor_system_config& sys_cfg,
                            const membership_config& cfg) {
  sys_cfg.load<caf::io::middleman>();
  add_membership_types(sys_cfg);
  sys_cfg.set("middleman.heartbeat-interval",
              caf::timespan{cfg.heartbeat_interval});
  sys_cfg.set("middleman.connection-timeout",
              caf::timespan{cfg.failure_timeout});
}

caf::actor spawn_membership(caf::actor_system& sys, membership_config cfg) {
  return sys.spawn(membership, std::move(cfg));
}

caf::expected<started_membership>
start_membership(caf::actor_system& sys, membership_config cfg,
                 std::chrono::milliseconds timeout) {
  auto a = spawn_membership(sys, std::move(cfg));
  caf::scoped_actor self{sys};
  caf::expected<started_membership> out{caf::sec::request_timeout};
  self->request(a, timeout, cl_ready_atom::value)
      .receive(
          [&](std::uint16_t port) {
            out = started_membership{a, port};
          },
          [&](caf::error& err) { out = std::move(err); });
  if (!out)
    self->send_exit(a, caf::exit_reason::kill);
  return out;
}

void stop_membership(caf::actor_system& sys, const caf::actor& membership,
                     std::chrono::milliseconds timeout) {
  if (!membership)
    return;
  caf::scoped_actor self{sys};
  self->monitor(membership);
  self->request(membership, timeout, cl_leave_atom::value)
      .receive([](bool) {}, [](caf::error&) {});
  self->send_exit(membership, caf::exit_reason::kill); // no-op once it left
  self->receive([](const caf::down_msg&) {}, caf::after(timeout) >> [] {});
}

caf::expected<std::pair<std::string, std::uint16_t>>
parse_host_port(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    return caf::make_error(caf::sec::invalid_argument, "expected host:port",
                           text);
  auto host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  unsigned long port = 0;
  for (auto c : text.substr(colon + 1)) {
    if (c < '0' || c > '9' || port > 65535)
      return caf::make_error(caf::sec::invalid_argument, "bad port", text);
    port = port * 10 + static_cast<unsigned long>(c - '0');
  }
  if (port == 0 || port > 65535 || host.empty())
    return caf::make_error(caf::sec::invalid_argument, "bad host:port", text);
  return std::make_pair(host, static_cast<std::uint16_t>(port));
}

} // namespace tidings::cluster
