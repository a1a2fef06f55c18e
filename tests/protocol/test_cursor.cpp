#include "protocol/cursor.hpp"

#include <catch2/catch.hpp>

using namespace tidings::protocol;

namespace {

room_id room(std::string_view text) {
  auto r = parse_room_id(text);
  REQUIRE(r);
  return *r;
}

} // namespace

TEST_CASE("one-room cursors round-trip and reject garbage", "[protocol]") {
  for (auto pos :
       {stream_position{"3f9a0c1d2e4b5a69", 0}, stream_position{"mem-1", 42},
        stream_position{"a.b_c-D", UINT64_MAX}}) {
    auto text = encode_cursor(pos);
    auto back = parse_cursor(text);
    INFO(text);
    REQUIRE(back);
    CHECK(back->epoch == pos.epoch);
    CHECK(back->offset == pos.offset);
  }
  CHECK(encode_cursor(stream_position{"ep", 7}) == "ep:7");
  publication p;
  p.epoch = "ep";
  p.offset = 9;
  CHECK(encode_cursor(p) == "ep:9");
  for (std::string_view bad :
       {"", ":", "ep:", ":5", "ep", "ep:-1", "ep:+1", "ep:01", "ep:1x", "ep:1 ",
        " ep:1", "e p:1", "ep:18446744073709551616", "ep:99999999999999999999",
        "ep:1:2", "é:1", "ep\n:1", "e=p:1"}) {
    INFO(bad);
    CHECK_FALSE(parse_cursor(bad));
  }
  CHECK_FALSE(parse_cursor(std::string(max_epoch_size + 1, 'e') + ":1"));
  CHECK(parse_cursor(std::string(max_epoch_size, 'e') + ":1"));
  CHECK(valid_epoch("mem-12"));
  CHECK_FALSE(valid_epoch(""));
}

TEST_CASE("cursor sets round-trip, sorted and escaped", "[protocol]") {
  cursor_set s;
  CHECK(s.empty());
  CHECK(s.set(room("system:all"), {"e1", 9}));
  CHECK(s.set(room("pipeline:a"), {"e2", 3}));
  CHECK(s.set(room("pipeline:a"), {"e2", 4})); // replaces
  CHECK(s.entries().size() == 2);
  CHECK(encode_cursor_set(s) == "pipeline:a=e2:4,system:all=e1:9");
  REQUIRE(s.find(room("pipeline:a")));
  CHECK(s.find(room("pipeline:a"))->offset == 4);
  CHECK_FALSE(s.find(room("pipeline:b")));

  SECTION("room ids with separators") {
    cursor_set odd;
    odd.set(room("weird:a=b,c%d"), {"ep", 1});
    odd.set(room("k:x:y"), {"ep", 2});
    auto text = encode_cursor_set(odd);
    CHECK(text == "k:x:y=ep:2,weird:a%3Db%2Cc%25d=ep:1");
    auto back = parse_cursor_set(text);
    REQUIRE(back);
    CHECK(back->entries().size() == 2);
    CHECK(back->find(room("weird:a=b,c%d"))->offset == 1);
    CHECK(encode_cursor_set(*back) == text);
  }
  SECTION("garbage") {
    for (std::string_view bad :
         {"", ",", "pipeline:a", "pipeline:a=", "=e:1", "pipeline:a=e",
          "pipeline:a=e:1,", ",pipeline:a=e:1", "nocolon=e:1",
          "system:all=e:1,pipeline:a=e:1", "pipeline:a=e:1,pipeline:a=e:2",
          "pipe%41:a=e:1", "pipe%2:a=e:1", "pipeline:a b=e:1",
          "pipeline:a=e:1;system:all=e:2"}) {
      INFO(bad);
      CHECK_FALSE(parse_cursor_set(bad));
    }
  }
  SECTION("bounded") {
    cursor_set full;
    for (std::size_t i = 0; i < max_cursor_rooms; ++i)
      CHECK(full.set(room("r:" + std::to_string(1000 + i)), {"e", i}));
    CHECK_FALSE(full.set(room("r:9999"), {"e", 1}));
    CHECK(full.set(room("r:1000"), {"e", 5})); // replacing still works
    auto text = encode_cursor_set(full);
    CHECK(parse_cursor_set(text));
    CHECK_FALSE(parse_cursor_set(text + ",z:z=e:1"));
    CHECK_FALSE(parse_cursor_set(std::string(max_cursor_size + 1, 'a')));
  }
}

TEST_CASE("Last-Event-ID gives each room its resume point", "[protocol]") {
  std::vector<room_id> one{room("pipeline:p")};
  std::vector<room_id> two{room("system:all"), room("pipeline:p")};

  auto fresh = parse_last_event_id("  ", two);
  REQUIRE(std::holds_alternative<resume_points>(fresh));
  CHECK(std::get<resume_points>(fresh).size() == 2);
  CHECK_FALSE(std::get<resume_points>(fresh)[0]);

  auto single = parse_last_event_id(" ep:5 ", one);
  REQUIRE(std::holds_alternative<resume_points>(single));
  CHECK(std::get<resume_points>(single)[0]->offset == 5);

  auto set_for_one = parse_last_event_id("pipeline:p=ep:6", one);
  REQUIRE(std::holds_alternative<resume_points>(set_for_one));
  CHECK(std::get<resume_points>(set_for_one)[0]->offset == 6);

  auto multi = parse_last_event_id("other:x=e:1,pipeline:p=ep:8", two);
  REQUIRE(std::holds_alternative<resume_points>(multi));
  auto& pts = std::get<resume_points>(multi);
  CHECK_FALSE(pts[0]); // system:all not named: fresh
  REQUIRE(pts[1]);
  CHECK(pts[1]->offset == 8);
  CHECK(pts[1]->epoch == "ep");

  // A bare cursor names no room: refused for a stream of several.
  CHECK(std::get<error_code>(parse_last_event_id("ep:5", two)) ==
        error_code::invalid_cursor);
  CHECK(std::get<error_code>(parse_last_event_id("garbage", one)) ==
        error_code::invalid_cursor);
  CHECK(std::get<error_code>(parse_last_event_id("a=b=c", one)) ==
        error_code::invalid_cursor);
  CHECK(std::get<error_code>(
            parse_last_event_id(std::string(max_cursor_size + 1, '1'), one)) ==
        error_code::invalid_cursor);
}
