// The failure detector's bookkeeping without actors or clocks: incarnation
// rules, thresholds, bounds and the view digest.
#include "cluster/member_table.hpp"
#include "cluster/membership_counters.hpp"

#include <catch2/catch.hpp>

#include <chrono>

using namespace tidings::cluster;
using namespace std::chrono_literals;

namespace {

using tp = member_table::time_point;
const tp t0 = tp{} + 1000s;

member_addr addr(const std::string& id, std::uint64_t inc = 1,
                 std::uint16_t port = 7000) {
  return member_addr{id, inc, "127.0.0.1", port};
}

const failure_thresholds limits{500ms, 1000ms, 10000ms};

} // namespace

TEST_CASE("member table follows the incarnation rules", "[cluster]") {
  member_table t{addr("a"), 8};
  REQUIRE(t.live_ids() == std::vector<std::string>{"a"});

  SECTION("unknown members join, known ones refresh") {
    CHECK(t.heard_from(addr("b"), t0) == contact_result::joined);
    CHECK(t.heard_from(addr("b"), t0 + 1s) == contact_result::refreshed);
    CHECK(t.live_ids() == std::vector<std::string>{"a", "b"});
    CHECK(t.find("b")->last_heard == t0 + 1s);
  }
  SECTION("our own id is refused") {
    CHECK(t.heard_from(addr("a", 99), t0) == contact_result::rejected);
    CHECK(t.size() == 1);
  }
  SECTION("older incarnations are stale, newer ones rejoin") {
    CHECK(t.heard_from(addr("b", 5), t0) == contact_result::joined);
    CHECK(t.heard_from(addr("b", 4), t0) == contact_result::stale);
    CHECK(t.heard_from(addr("b", 6, 7001), t0) == contact_result::rejoined);
    CHECK(t.find("b")->addr.port == 7001);
  }
  SECTION("a dead incarnation stays dead until a newer one comes") {
    t.heard_from(addr("b", 5), t0);
    CHECK(t.declare_dead("b", 4, t0) == false); // not the one we hold
    CHECK(t.declare_dead("b", 5, t0) == true);
    CHECK(t.declare_dead("b", 5, t0) == false); // already dead
    CHECK(t.heard_from(addr("b", 5), t0 + 1s) == contact_result::dead);
    CHECK(t.live_ids() == std::vector<std::string>{"a"});
    CHECK(t.heard_from(addr("b", 6), t0 + 1s) == contact_result::rejoined);
    CHECK(t.find("b")->state == member_state::alive);
  }
}

TEST_CASE("member table suspects, kills and forgets silent members",
          "[cluster]") {
  member_table t{addr("a"), 8};
  t.heard_from(addr("b"), t0);
  t.heard_from(addr("c"), t0);

  SECTION("suspect after the suspect threshold, still live") {
    t.heard_from(addr("c"), t0 + 400ms);
    auto r = t.sweep(t0 + 600ms, limits);
    CHECK(r.suspected == std::vector<std::string>{"b"});
    CHECK(r.died.empty());
    CHECK(t.find("b")->state == member_state::suspect);
    CHECK(t.live_count() == 3);
    // Heard again: alive.
    CHECK(t.heard_from(addr("b"), t0 + 700ms) == contact_result::refreshed);
    CHECK(t.find("b")->state == member_state::alive);
  }
  SECTION("dead after the failure timeout, forgotten later") {
    t.heard_from(addr("c"), t0 + 900ms);
    auto r = t.sweep(t0 + 1000ms, limits);
    CHECK(r.died == std::vector<std::string>{"b"});
    CHECK(t.live_ids() == std::vector<std::string>{"a", "c"});
    CHECK(t.find("b")->state == member_state::dead);
    r = t.sweep(t0 + 1000ms + 10s, limits);
    CHECK(r.forgotten == std::vector<std::string>{"b"});
    CHECK(t.find("b") == nullptr);
  }
  SECTION("touch_live after our own pause spares everyone") {
    t.touch_live(t0 + 5s);
    auto r = t.sweep(t0 + 5s, limits);
    CHECK(r.died.empty());
    CHECK(t.live_count() == 3);
  }
}

TEST_CASE("member table is bounded and evicts the oldest dead first",
          "[cluster]") {
  member_table t{addr("a"), 4}; // a + 3 others
  t.heard_from(addr("b"), t0);
  t.heard_from(addr("c"), t0);
  t.heard_from(addr("d"), t0);
  CHECK(t.heard_from(addr("e"), t0) == contact_result::rejected);
  t.declare_dead("c", 1, t0 + 1s);
  t.declare_dead("b", 1, t0 + 2s);
  CHECK(t.heard_from(addr("e"), t0 + 3s) == contact_result::joined);
  CHECK(t.find("c") == nullptr); // died first, evicted
  CHECK(t.find("b") != nullptr);
  CHECK(t.size() == 4);
}

TEST_CASE("member table digest depends on the live set only", "[cluster]") {
  member_table x{addr("a"), 8};
  member_table y{addr("b"), 8};
  x.heard_from(addr("b"), t0);
  x.heard_from(addr("c", 3), t0);
  y.heard_from(addr("c", 3), t0);
  y.heard_from(addr("a"), t0);
  CHECK(x.live_ids() == y.live_ids());
  CHECK(x.digest() == y.digest());
  y.heard_from(addr("c", 4), t0); // another incarnation of c
  CHECK(x.digest() != y.digest());
  x.heard_from(addr("c", 4), t0);
  CHECK(x.digest() == y.digest());
  x.declare_dead("c", 4, t0);
  CHECK(x.digest() != y.digest());
}

TEST_CASE("membership counters render as Prometheus text", "[cluster]") {
  membership_counters c;
  c.joins = 3;
  auto text = render_membership_metrics(c);
  CHECK(text.find("# TYPE tidings_cluster_joins_total counter\n"
                  "tidings_cluster_joins_total 3\n") != std::string::npos);
  CHECK(text.find("tidings_cluster_members_alive 1\n") != std::string::npos);
}
