#include "protocol/acl.hpp"

#include <catch2/catch.hpp>

using namespace tidings::protocol;

namespace {

room_id room(const char* text) {
  auto r = parse_room_id(text);
  REQUIRE(r);
  return *r;
}

} // namespace

TEST_CASE("rooms claim grants exact ids and kind:* patterns", "[protocol]") {
  claims alice;
  alice.sub = "alice";
  alice.rooms = {"execution:e1", "workflow:*"};
  CHECK(may_subscribe(alice, room("execution:e1")));
  CHECK_FALSE(may_subscribe(alice, room("execution:e2")));
  CHECK_FALSE(may_subscribe(alice, room("execution:e1x"))); // no prefixes
  CHECK(may_subscribe(alice, room("workflow:anything")));
  CHECK_FALSE(may_subscribe(alice, room("workflowx:1")));
  CHECK_FALSE(may_subscribe(alice, room("pipeline:1")));
}

TEST_CASE("user rooms belong to their user only", "[protocol]") {
  claims alice;
  alice.sub = "alice";
  alice.rooms = {"user:*", "user:bob"}; // patterns never grant other users
  CHECK(may_subscribe(alice, room("user:alice")));
  CHECK_FALSE(may_subscribe(alice, room("user:bob")));
  claims admin;
  admin.sub = "root";
  admin.admin = true;
  CHECK(may_subscribe(admin, room("user:bob")));
  CHECK(may_subscribe(admin, room("execution:any")));
}

TEST_CASE("patterns are only exact or kind:*", "[protocol]") {
  CHECK(pattern_grants("execution:*", room("execution:1")));
  CHECK_FALSE(pattern_grants("*", room("execution:1")));
  CHECK_FALSE(pattern_grants("exec*", room("execution:1")));
  CHECK_FALSE(pattern_grants("execution:1*", room("execution:12")));
  CHECK_FALSE(pattern_grants("", room("execution:1")));
}
