// The membership actor over real middleman connections: several actor
// systems in one process, each with its own middleman on an ephemeral
// loopback port. Short timings (200 ms heartbeats, 1 s failure timeout);
// every wait is a bounded poll of `cl_members`, never a fixed sleep.
#include "cluster/membership.hpp"
#include "cluster/placement.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

using namespace tidings::cluster;
using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

namespace {

constexpr auto heartbeat = 200ms;
constexpr auto failure_timeout = 1000ms;
// Detection may take the timeout, one sweep interval and scheduling slack
// on two shared cores.
constexpr auto detection_bound = failure_timeout + 2 * heartbeat + 800ms;

membership_config base_config(const std::string& id,
                              std::vector<std::string> seeds) {
  membership_config cfg;
  cfg.node_id = id;
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  cfg.seeds = std::move(seeds);
  cfg.heartbeat_interval = heartbeat;
  cfg.failure_timeout = failure_timeout;
  cfg.reconnect_interval = 300ms;
  cfg.connect_timeout = 2000ms;
  return cfg;
}

/// Records every view an observer receives.
struct view_log {
  std::mutex m;
  std::vector<membership_view> views;
  std::vector<membership_view> all() {
    std::lock_guard<std::mutex> g{m};
    return views;
  }
};

/// One cluster node: an actor system with a middleman, a membership actor
/// and an `echo` actor announced as the node's endpoint.
struct node {
  std::string id;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::actor echo;
  caf::actor m;
  std::uint16_t port = 0;
  std::shared_ptr<membership_counters> counters =
      std::make_shared<membership_counters>();

  node(std::string node_id, std::vector<std::string> seeds)
      : id(std::move(node_id)) {
    auto mc = base_config(id, std::move(seeds));
    configure_actor_system(cfg, mc);
    cfg.set("scheduler.max-threads", std::size_t{2});
    sys = std::make_unique<caf::actor_system>(cfg);
    auto name = id;
    echo = sys->spawn([name]() -> caf::behavior {
      return {[name](const std::string& s) { return name + ":" + s; }};
    });
    mc.endpoint = caf::actor_cast<caf::strong_actor_ptr>(echo);
    mc.counters = counters;
    auto started = start_membership(*sys, std::move(mc));
    REQUIRE(started);
    m = started->actor;
    port = started->port;
  }

  ~node() { stop(); }

  std::string address() const { return "127.0.0.1:" + std::to_string(port); }

  /// Graceful: leave, then shut the system down.
  void stop() {
    if (!sys)
      return;
    stop_membership(*sys, m);
    shutdown();
  }

  /// Abrupt: the membership actor dies without a word, then the system
  /// (and its connections) goes away.
  void crash() {
    if (!sys)
      return;
    caf::anon_send_exit(m, caf::exit_reason::kill);
    shutdown();
  }

  void shutdown() {
    caf::anon_send_exit(echo, caf::exit_reason::kill);
    m = nullptr;
    echo = nullptr;
    sys.reset();
  }

  membership_view view() {
    caf::scoped_actor self{*sys};
    membership_view out;
    self->request(m, 2s, cl_members_atom::value)
        .receive([&](membership_view& v) { out = std::move(v); },
                 [&](caf::error& err) { FAIL(sys->render(err)); });
    return out;
  }

  std::vector<std::string> live() { return view().live; }

  void freeze(bool on) {
    caf::scoped_actor self{*sys};
    self->request(m, 2s, cl_freeze_atom::value, on)
        .receive([](bool) {}, [&](caf::error& err) { FAIL(sys->render(err)); });
  }

  std::shared_ptr<view_log> watch() {
    auto log = std::make_shared<view_log>();
    auto obs = sys->spawn([log]() -> caf::behavior {
      return {[log](cl_view_atom, const membership_view& v) {
        std::lock_guard<std::mutex> g{log->m};
        log->views.push_back(v);
      }};
    });
    caf::scoped_actor self{*sys};
    bool ok = false;
    self->request(m, 2s, cl_watch_atom::value, obs)
        .receive([&](bool b) { ok = b; }, [](caf::error&) {});
    REQUIRE(ok);
    return log;
  }

  const member_status* status(const membership_view& v,
                              const std::string& who) {
    for (auto& s : v.members)
      if (s.addr.node_id == who)
        return &s;
    return nullptr;
  }
};

/// Polls `pred` every 20 ms until it holds or `limit` passes.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 5000ms) {
  auto deadline = clk::now() + limit;
  while (clk::now() < deadline) {
    if (pred())
      return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

using ids = std::vector<std::string>;

bool all_see(std::vector<node*> nodes, const ids& expected) {
  for (auto* n : nodes)
    if (n->live() != expected)
      return false;
  return true;
}

/// Every node holds the same incarnation for every live member.
bool incarnations_agree(std::vector<node*> nodes) {
  std::map<std::string, std::uint64_t> seen;
  for (auto* n : nodes)
    for (auto& s : n->view().members) {
      if (s.state == member_state::dead)
        continue;
      auto [it, fresh] = seen.emplace(s.addr.node_id, s.addr.incarnation);
      if (!fresh && it->second != s.addr.incarnation)
        return false;
    }
  return true;
}

void check_placement_agrees(std::vector<node*> nodes) {
  std::vector<ids> views;
  for (auto* n : nodes)
    views.push_back(n->live());
  for (int i = 0; i < 200; ++i) {
    auto room = "execution:" + std::to_string(i);
    auto owner = owner_of(room, views.front());
    auto ranked = rank_members(room, views.front());
    for (auto& v : views) {
      CHECK(owner_of(room, v) == owner);
      CHECK(rank_members(room, v) == ranked);
    }
  }
}

struct three_nodes {
  std::unique_ptr<node> a, b, c;
  three_nodes() {
    a = std::make_unique<node>("node-a", ids{});
    // Seeds may include the node itself: it notices and skips it.
    b = std::make_unique<node>("node-b", ids{a->address()});
    c = std::make_unique<node>("node-c", ids{a->address(), b->address()});
    REQUIRE(eventually([&] {
      return all_see({a.get(), b.get(), c.get()}, all());
    }));
  }
  static ids all() { return {"node-a", "node-b", "node-c"}; }
  std::vector<node*> nodes() { return {a.get(), b.get(), c.get()}; }
};

} // namespace

TEST_CASE("three nodes joining through one seed see the same members",
          "[cluster][integration]") {
  auto a = std::make_unique<node>("node-a", ids{});
  auto log = a->watch();
  auto b = std::make_unique<node>("node-b", ids{a->address()});
  auto c = std::make_unique<node>("node-c", ids{a->address()});
  std::vector<node*> nodes{a.get(), b.get(), c.get()};
  REQUIRE(eventually([&] { return all_see(nodes, three_nodes::all()); }));
  CHECK(incarnations_agree(nodes));
  check_placement_agrees(nodes);

  SECTION("every member is alive and carries its address and endpoint") {
    for (auto* n : nodes) {
      auto v = n->view();
      REQUIRE(v.members.size() == 3);
      for (auto* other : nodes) {
        auto* s = n->status(v, other->id);
        REQUIRE(s);
        CHECK(s->state == member_state::alive);
        CHECK(s->addr.port == other->port);
        CHECK(s->addr.host == "127.0.0.1");
        CHECK(s->endpoint);
      }
    }
  }
  SECTION("a member's endpoint answers across the middleman") {
    auto v = a->view();
    auto ep = caf::actor_cast<caf::actor>(a->status(v, "node-c")->endpoint);
    caf::scoped_actor self{*a->sys};
    std::string reply;
    self->request(ep, 2s, std::string{"ping"})
        .receive([&](std::string& s) { reply = s; }, [](caf::error&) {});
    CHECK(reply == "node-c:ping");
  }
  SECTION("the view itself crosses the middleman") {
    // Ask node-b's membership actor from node-a: membership_view and
    // member_status must be registered or the reply is dropped.
    auto v = a->view();
    caf::scoped_actor self{*a->sys};
    auto mm = a->sys->middleman().actor_handle();
    caf::strong_actor_ptr remote;
    self->request(mm, 2s, caf::connect_atom::value, std::string{"127.0.0.1"},
                  b->port)
        .receive([&](caf::node_id&, caf::strong_actor_ptr& p,
                     std::set<std::string>&) { remote = p; },
                 [](caf::error&) {});
    REQUIRE(remote);
    membership_view remote_view;
    self->request(caf::actor_cast<caf::actor>(remote), 2s,
                  cl_members_atom::value)
        .receive([&](membership_view& rv) { remote_view = std::move(rv); },
                 [&](caf::error& err) { FAIL(a->sys->render(err)); });
    CHECK(remote_view.live == three_nodes::all());
  }
  SECTION("observers get every change with a growing version") {
    REQUIRE(eventually([&] {
      auto views = log->all();
      return !views.empty() && views.back().live == three_nodes::all();
    }));
    auto views = log->all();
    CHECK(views.front().live.size() <= 2); // subscribed before the joins
    for (std::size_t i = 1; i < views.size(); ++i)
      CHECK(views[i].version > views[i - 1].version);
  }
  SECTION("counters count joins and heartbeats") {
    REQUIRE(eventually([&] { return b->counters->heartbeats_received >= 4; }));
    for (auto* n : nodes) {
      CHECK(n->counters->joins >= 2);
      CHECK(n->counters->heartbeats_sent > 0);
      CHECK(n->counters->members_alive == 3);
      CHECK(n->counters->deaths == 0);
    }
  }
}

TEST_CASE("a node that goes away is dropped within the failure timeout",
          "[cluster][integration]") {
  three_nodes t;
  auto start = clk::now();
  SECTION("crash: actor killed and actor system shut down") {
    t.c->crash();
    REQUIRE(eventually([&] {
      return all_see({t.a.get(), t.b.get()}, {"node-a", "node-b"});
    }));
    CHECK(clk::now() - start < detection_bound);
    CHECK(t.a->counters->deaths == 1);
    CHECK(t.a->counters->members_alive == 2);
  }
  SECTION("graceful leave") {
    t.c->stop();
    REQUIRE(eventually([&] {
      return all_see({t.a.get(), t.b.get()}, {"node-a", "node-b"});
    }));
    CHECK(clk::now() - start < detection_bound);
    CHECK(t.a->counters->leaves + t.a->counters->deaths == 1);
  }
  check_placement_agrees({t.a.get(), t.b.get()});
}

TEST_CASE("a frozen node is declared dead and rejoins when it resumes",
          "[cluster][integration]") {
  three_nodes t;
  auto old_inc = t.a->status(t.a->view(), "node-b")->addr.incarnation;
  auto start = clk::now();
  t.b->freeze(true);
  REQUIRE(eventually([&] {
    return all_see({t.a.get(), t.c.get()}, {"node-a", "node-c"});
  }));
  auto took = clk::now() - start;
  // Only the heartbeat timeout can find it: its connections stay open.
  CHECK(took >= failure_timeout / 2);
  CHECK(took < detection_bound);
  CHECK(t.a->status(t.a->view(), "node-b")->state == member_state::dead);
  CHECK(t.c->counters->deaths == 1);

  t.b->freeze(false);
  REQUIRE(eventually([&] { return all_see(t.nodes(), three_nodes::all()); }));
  REQUIRE(eventually([&] { return incarnations_agree(t.nodes()); }));
  CHECK(t.a->status(t.a->view(), "node-b")->addr.incarnation > old_inc);
  CHECK(t.b->counters->self_rejoins >= 1);
  check_placement_agrees(t.nodes());
}

TEST_CASE("a restarted node with the same id is accepted again",
          "[cluster][integration]") {
  three_nodes t;
  auto old = *t.a->status(t.a->view(), "node-c");
  t.c->crash();
  REQUIRE(eventually([&] {
    return all_see({t.a.get(), t.b.get()}, {"node-a", "node-b"});
  }));
  t.c = std::make_unique<node>("node-c", ids{t.b->address()});
  REQUIRE(eventually([&] { return all_see(t.nodes(), three_nodes::all()); }));
  REQUIRE(eventually([&] { return incarnations_agree(t.nodes()); }));
  auto now = *t.a->status(t.a->view(), "node-c");
  CHECK(now.addr.incarnation > old.addr.incarnation);
  CHECK(now.addr.port == t.c->port);
  check_placement_agrees(t.nodes());
}

TEST_CASE("host:port parsing accepts addresses and refuses garbage",
          "[cluster]") {
  auto hp = parse_host_port("127.0.0.1:7000");
  REQUIRE(hp);
  CHECK(hp->first == "127.0.0.1");
  CHECK(hp->second == 7000);
  auto v6 = parse_host_port("[::1]:80");
  REQUIRE(v6);
  CHECK(v6->first == "::1");
  for (auto bad : {"", "host", "host:", ":80", "h:0", "h:65536", "h:8x",
                   "h:99999999999999999999"})
    CHECK_FALSE(parse_host_port(bad));
}
