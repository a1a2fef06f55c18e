#include "actors/runtime.hpp"

#include "actors/gateway.hpp"
#include "actors/history_writer.hpp"
#include "actors/messages.hpp"
#include "actors/room_directory.hpp"
#include "persistence/memory_store.hpp"
#include "persistence/sqlite_store.hpp"

#include <caf/all.hpp>

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
  bool stopped = false;
};

runtime::runtime() : impl_(std::make_unique<impl>()) {}

runtime::~runtime() {
  shutdown();
}

result<std::unique_ptr<runtime>> runtime::start(node_config cfg) {
  std::shared_ptr<persistence::history_store> store;
  if (cfg.memory_store) {
    store = std::make_shared<persistence::memory_store>();
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
  im.directory = spawn_room_directory(*im.sys, im.writer, im.node, rc);
  gateway_config gc;
  gc.conn = std::make_shared<const connection_config>(im.cfg.conn);
  gc.api_key = im.cfg.api_key;
  gc.node_id = im.cfg.node_id;
  gc.extra_metrics = im.cfg.extra_metrics;
  gc.kinds = kinds;
  im.app = std::make_shared<gateway>(*im.sys, im.directory, im.writer, im.node,
                                     std::move(gc));
  return rt;
}

std::shared_ptr<transport::application> runtime::application() {
  return impl_->app;
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
  im.app.reset();
  im.directory = nullptr;
  im.writer = nullptr;
  im.sys->await_all_actors_done();
}

} // namespace tidings::actors
