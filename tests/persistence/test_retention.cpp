#include "persistence/retention.hpp"

#include <catch2/catch.hpp>

using namespace tidings::persistence;

TEST_CASE("retention rules parse per kind with a default", "[persistence]") {
  auto r = parse_retention("events=10000,age=7d;execution:events=1000;"
                           "audit:age=90d");
  REQUIRE(r);
  CHECK(r->fallback.max_events == 10000);
  CHECK(r->fallback.max_age_seconds == 7 * 86400);
  CHECK(r->for_room("execution:e1").max_events == 1000);
  CHECK(r->for_room("execution:e1").max_age_seconds == 0);
  CHECK(r->for_room("audit:a").max_age_seconds == 90 * 86400);
  CHECK(r->for_room("workflow:w").max_events == 10000);
  auto empty = parse_retention("");
  REQUIRE(empty);
  CHECK_FALSE(empty->fallback.bounded());
  auto kinds_only = parse_retention("execution:age=1h");
  REQUIRE(kinds_only);
  CHECK(kinds_only->by_kind.at("execution").max_age_seconds == 3600);
  for (const char* bad :
       {"events=x", "events=-1", "age=5y", "size=3", "execution:events",
        ":events=1", "execution:events=1;events=5", "events=1e3"}) {
    INFO(bad);
    CHECK_FALSE(parse_retention(bad));
  }
}

#include "persistence/sqlite_store.hpp"

#include <algorithm>

TEST_CASE("stores list their rooms for retention sweeps", "[persistence]") {
  auto opened = sqlite_store::open({":memory:", durability::full});
  REQUIRE(opened);
  auto& store = **opened;
  REQUIRE(store.append(
      {{"a:1", 1, 1, "t", "", "1", ""}, {"b:2", 1, 1, "t", "", "1", ""}}));
  REQUIRE(store.position("c:3"));
  auto rooms = store.rooms();
  REQUIRE(rooms);
  std::sort(rooms->begin(), rooms->end());
  CHECK(*rooms == std::vector<std::string>{"a:1", "b:2", "c:3"});
}
