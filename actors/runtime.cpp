#include "actors/runtime.hpp"

#include "actors/cluster_api.hpp"
#include "actors/cluster_node.hpp"
#include "actors/gateway.hpp"
#include "actors/s2_gateway.hpp"
#include "actors/history_writer.hpp"
#include "actors/messages.hpp"
#include "actors/room_directory.hpp"
#include "cluster/membership.hpp"
#include "persistence/memory_store.hpp"
#include "persistence/sqlite_store.hpp"

#include <caf/all.hpp>

#include <cstdio>
#include <optional>
#include <random>
#include <thread>

#include <sys/stat.h>

namespace tidings::actors {

struct runtime::impl {
  node_config cfg;
  caf::actor_system_config sys_cfg;
  std::unique_ptr<caf::actor_system> sys;
  node_state node;
  caf::actor writer;
  caf::actor directory;
  std::shared_ptr<gateway> app;
  std::shared_ptr<s2_gateway> s2_app;
  // Cluster (null / 0 when off).
  std::shared_ptr<placement_table> placement;
  std::shared_ptr<cluster::membership_counters> cl_counters;
  caf::actor membership;
  caf::actor cluster_node;
  std::uint16_t cluster_port = 0;
  bool stopped = false;
};

namespace {

/// The membership settings for `cfg.cluster`, checked before anything
/// starts. "host:0" picks a free port (parse_host_port refuses port 0).
result<cluster::membership_config> membership_settings(const node_config& cfg) {
  auto& c = cfg.cluster;
  cluster::membership_config mc;
  mc.node_id = cfg.node_id;
  if (c.listen.size() > 2 &&
      c.listen.compare(c.listen.size() - 2, 2, ":0") == 0) {
    mc.host = c.listen.substr(0, c.listen.size() - 2);
    mc.port = 0;
  } else {
    auto hp = cluster::parse_host_port(c.listen);
    if (!hp)
      return error_info{"CONFIG", "--cluster-listen must be host:port, got '" +
                                      c.listen + "'"};
    mc.host = hp->first;
    mc.port = hp->second;
  }
  if (mc.host.size() >= 2 && mc.host.front() == '[' && mc.host.back() == ']')
    mc.host = mc.host.substr(1, mc.host.size() - 2);
  for (auto& seed : c.join) {
    if (!cluster::parse_host_port(seed))
      return error_info{"CONFIG",
                        "--join entries must be host:port, got '" + seed + "'"};
    mc.seeds.push_back(seed);
  }
  mc.advertise_host = c.advertise;
  if (c.heartbeat_interval.count() < 10 ||
      c.failure_timeout < 2 * c.heartbeat_interval)
    return error_info{"CONFIG", "cluster heartbeat must be at least 10 ms and "
                                "the failure timeout at least twice it"};
  mc.heartbeat_interval = c.heartbeat_interval;
  mc.failure_timeout = c.failure_timeout;
  // Retry dead members and unreached seeds about as often as we beat.
  mc.reconnect_interval =
      std::max(c.heartbeat_interval, std::chrono::milliseconds(200));
  return mc;
}

} // namespace

runtime::runtime() : impl_(std::make_unique<impl>()) {}

runtime::~runtime() {
  shutdown();
}

result<std::unique_ptr<runtime>> runtime::start(node_config cfg) {
  std::optional<cluster::membership_config> mc;
  if (!cfg.cluster.listen.empty()) {
    auto checked = membership_settings(cfg);
    if (!checked)
      return checked.error();
    mc = std::move(*checked);
  } else if (!cfg.cluster.join.empty()) {
    return error_info{"CONFIG", "--join needs --cluster-listen"};
  }
  std::shared_ptr<persistence::history_store> store;
  if (cfg.memory_store) {
    // Epochs unique per process: nodes of a cluster compare them.
    std::random_device rd;
    char prefix[16];
    std::snprintf(prefix, sizeof prefix, "mem-%08x", rd());
    store = std::make_shared<persistence::memory_store>(
        [p = std::string{prefix}, n = 0]() mutable {
          return p + "-" + std::to_string(++n);
        });
  } else {
    ::mkdir(cfg.data_dir.c_str(), 0750); // an existing one is fine
    persistence::sqlite_options opt;
    opt.path = cfg.data_dir + "/" + cfg.node_id + ".sqlite";
    opt.mode = cfg.durability_normal ? persistence::durability::normal
                                     : persistence::durability::full;
    auto opened = persistence::sqlite_store::open(opt);
    if (!opened)
      return opened.error();
    store = std::shared_ptr<persistence::history_store>(std::move(*opened));
  }
  std::unique_ptr<runtime> rt{new runtime};
  auto& im = *rt->impl_;
  im.cfg = std::move(cfg);
  im.sys_cfg.set("scheduler.max-threads",
                 static_cast<std::size_t>(im.cfg.actor_threads));
  // CAF's idle workers poll: 100 spins, then 500 sleeps of 50 us, then a
  // condition variable. Between events of a steady stream (every few ms)
  // the middle phase is 20,000 wake-ups a second per worker for nothing;
  // go from spinning straight to the condition variable (woken on enqueue),
  // and let a sleeping worker look for work to steal every 2 ms.
  im.sys_cfg.set("work-stealing.moderate-poll-attempts", std::size_t{0});
  im.sys_cfg.set("work-stealing.relaxed-sleep-duration",
                 caf::timespan{std::chrono::milliseconds(2)});
  if (mc) { // loads the middleman, registers the membership types
    cluster::configure_actor_system(im.sys_cfg, *mc);
    add_history_types(im.sys_cfg);
  }
  im.sys = std::make_unique<caf::actor_system>(im.sys_cfg);
  history_writer_config wc;
  wc.retention = im.cfg.retention;
  im.writer = spawn_history_writer(*im.sys, std::move(store), im.node, wc);
  room_config rc;
  rc.replay_limit = im.cfg.replay_limit;
  auto kinds = std::make_shared<const kind_registry>(im.cfg.kinds);
  rc.kinds = kinds;
  rc.idle_timeout = im.cfg.room_idle_timeout;
  rc.max_pending_publishes = im.cfg.max_pending_publishes;
  rc.replicate = im.cfg.cluster.replicate;
  rc.retention =
      std::make_shared<const persistence::retention_rules>(im.cfg.retention);
  im.placement = std::make_shared<placement_table>(im.cfg.node_id);
  if (mc)
    rc.placement = im.placement;
  im.directory = spawn_room_directory(*im.sys, im.writer, im.node, rc);
  if (mc) {
    im.cluster_node =
        spawn_cluster_node(*im.sys, im.placement, im.directory);
    // The other nodes reach this one through its directory: forwarded
    // publishes, mirrors attaching, replication, history reads.
    mc->endpoint = caf::actor_cast<caf::strong_actor_ptr>(im.directory);
    mc->counters = im.cl_counters =
        std::make_shared<cluster::membership_counters>();
    auto started = cluster::start_membership(*im.sys, std::move(*mc));
    if (!started)
      return error_info{"CLUSTER", "cannot open the cluster port " +
                                       im.cfg.cluster.listen + ": " +
                                       im.sys->render(started.error())};
    im.membership = started->actor;
    im.cluster_port = started->port;
    caf::scoped_actor self{*im.sys};
    bool watching = false;
    self->request(im.cluster_node, std::chrono::seconds(5),
                  cn_attach_atom::value, im.membership)
        .receive([&](bool ok) { watching = ok; }, [](caf::error&) {});
    if (!watching)
      return error_info{"CLUSTER", "the placement component could not "
                                   "watch the membership"};
    // A node that joins must not serve before it sees the others: alone it
    // would own every room and start ones it has no copy of afresh. Wait
    // (bounded by the failure timeout: the others may all be down) until
    // another member is live.
    if (!im.cfg.cluster.join.empty()) {
      auto deadline =
          std::chrono::steady_clock::now() + im.cfg.cluster.failure_timeout;
      while (im.placement->current()->live.size() < 2 &&
             std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  gateway_config gc;
  gc.conn = std::make_shared<const connection_config>(im.cfg.conn);
  gc.api_key = im.cfg.api_key;
  gc.node_id = im.cfg.node_id;
  gc.extra_metrics = im.cfg.extra_metrics;
  if (im.cl_counters)
    gc.extra_metrics = [base = im.cfg.extra_metrics,
                        counters = im.cl_counters] {
      return (base ? base() : std::string{}) +
             cluster::render_membership_metrics(*counters);
    };
  gc.cluster = std::make_shared<cluster_api>(
      *im.sys, im.cfg.node_id, im.membership, im.directory, im.placement);
  gc.kinds = kinds;
  gc.streams = im.cfg.streams;
  im.app = std::make_shared<gateway>(*im.sys, im.directory, im.writer, im.node,
                                     std::move(gc));
  im.s2_app = std::make_shared<s2_gateway>(
      *im.sys, im.directory, im.node,
      s2_gateway_config{im.cfg.conn.key, im.cfg.conn.policy, im.cfg.api_key,
                        im.cfg.s2});
  return rt;
}

std::shared_ptr<transport::application> runtime::application() {
  return impl_->app;
}

std::shared_ptr<transport::application> runtime::s2_application() {
  return impl_->s2_app;
}

std::uint16_t runtime::cluster_port() const {
  return impl_->cluster_port;
}

void runtime::shutdown() {
  auto& im = *impl_;
  if (im.stopped || !im.sys)
    return;
  im.stopped = true;
  {
    caf::scoped_actor self{*im.sys};
    bool clean = false;
    self->request(im.directory, std::chrono::seconds(30), shutdown_atom::value)
        .receive([&](bool) { clean = true; }, [](caf::error&) {});
    if (!clean) {
      // Rooms did not drain in time: stop them; the writer still commits
      // what reached it.
      self->send_exit(im.directory, caf::exit_reason::user_shutdown);
      self->send(im.writer, shutdown_atom::value);
    }
  }
  // After the rooms drained; before waiting for the actors: the membership
  // actor's heartbeat timer would keep the actor system alive.
  if (im.membership) {
    cluster::stop_membership(*im.sys, im.membership);
    im.membership = nullptr;
  }
  if (im.cluster_node) {
    caf::anon_send_exit(im.cluster_node, caf::exit_reason::user_shutdown);
    im.cluster_node = nullptr;
  }
  // The API relay lives as long as the gateway, which the server holds.
  if (im.app)
    im.app->stop();
  im.app.reset();
  im.s2_app.reset();
  im.directory = nullptr;
  im.writer = nullptr;
  im.sys->await_all_actors_done();
}

} // namespace tidings::actors
