#include "protocol/room_id.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace tidings::protocol;

TEST_CASE("room ids parse into kind and id once", "[protocol]") {
  SECTION("valid ids") {
    auto r = parse_room_id("execution:123e4567-e89b-12d3-a456-426614174000");
    REQUIRE(r);
    CHECK(r->kind() == "execution");
    CHECK(r->id() == "123e4567-e89b-12d3-a456-426614174000");
    CHECK(r->str() == "execution:123e4567-e89b-12d3-a456-426614174000");
    auto nested = parse_room_id("user:auth0|abc:def");
    REQUIRE(nested);
    CHECK(nested->kind() == "user");
    CHECK(nested->id() == "auth0|abc:def"); // only the first ':' separates
  }
  SECTION("malformed ids are refused") {
    for (const char* bad :
         {"", ":", "execution", "execution:", ":123", "Execution:1",
          "exec ution:1", "execution:a b", "execution:a\"b", "execution:*",
          "execution:a\\b", "execution:a/b", "execution:\x01", "k\xc3\xa9:1",
          "execution:\xc3\xa9"}) {
      INFO(bad);
      CHECK_FALSE(parse_room_id(bad));
    }
  }
  SECTION("length bounds") {
    std::string kind(max_room_kind_size, 'k');
    CHECK(parse_room_id(kind + ":1"));
    CHECK_FALSE(parse_room_id(kind + "k:1"));
    std::string id(max_room_id_size - 2, 'x');
    CHECK(parse_room_id("a:" + id));
    CHECK_FALSE(parse_room_id("a:" + id + "x"));
  }
  SECTION("make builds the same value as parse") {
    auto a = room_id::make("workflow", "w1");
    auto b = parse_room_id("workflow:w1");
    REQUIRE(a);
    REQUIRE(b);
    CHECK(*a == *b);
    CHECK_FALSE(room_id::make("", "x"));
    CHECK_FALSE(room_id::make("x", ""));
  }
}
