#include "protocol/native.hpp"
#include "protocol/timefmt.hpp"
#include "protocol/uri.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace tidings::protocol;
using json = nlohmann::json;

namespace {

template <class T>
T expect_command(std::string_view text) {
  auto d = decode_native(text);
  INFO(text);
  REQUIRE(std::holds_alternative<command>(d));
  auto& cmd = std::get<command>(d);
  REQUIRE(std::holds_alternative<T>(cmd));
  return std::get<T>(cmd);
}

decode_error expect_error(std::string_view text) {
  auto d = decode_native(text);
  INFO(text);
  REQUIRE(std::holds_alternative<decode_error>(d));
  return std::get<decode_error>(d);
}

constexpr std::int64_t t0 = 1704067200123; // 2024-01-01T00:00:00.123Z

} // namespace

TEST_CASE("native commands decode", "[protocol]") {
  auto sub = expect_command<cmd_subscribe>(
      R"({"type":"subscribe","room_id":"execution:e1"})");
  CHECK(sub.room.str() == "execution:e1");
  CHECK_FALSE(sub.since);
  auto resume = expect_command<cmd_subscribe>(
      R"({"type":"subscribe","room_id":"execution:e1","since":{"epoch":"ab","offset":7}})");
  REQUIRE(resume.since);
  CHECK(resume.since->epoch == "ab");
  CHECK(resume.since->offset == 7);
  CHECK(expect_command<cmd_unsubscribe>(
            R"({"type":"unsubscribe","room_id":"workflow:w"})")
            .room.str() == "workflow:w");
  expect_command<cmd_ping>(R"({"type":"ping"})");
  expect_command<cmd_pong>(R"({"type":"pong","timestamp":"x"})");
  expect_command<cmd_list_subscriptions>(R"({"type":"list_subscriptions"})");
  CHECK(expect_command<cmd_auth>(R"({"type":"auth","token":"a.b.c"})").token ==
        "a.b.c");
}

TEST_CASE("malformed messages give the documented error codes", "[protocol]") {
  CHECK(expect_error("{").code == error_code::invalid_json);
  CHECK(expect_error("").code == error_code::invalid_json);
  CHECK(expect_error("\xff\xfe").code == error_code::invalid_json);
  CHECK(expect_error("[1,2]").code == error_code::invalid_message);
  CHECK(expect_error(R"({"type":5})").code == error_code::invalid_message);
  CHECK(expect_error(R"({"room_id":"a:b"})").code ==
        error_code::invalid_message);
  CHECK(expect_error(R"({"type":"dance"})").code == error_code::unknown_type);
  CHECK(expect_error(R"({"type":"subscribe"})").code ==
        error_code::missing_field);
  CHECK(expect_error(R"({"type":"subscribe","room_id":7})").code ==
        error_code::missing_field);
  auto bad_room = expect_error(R"({"type":"subscribe","room_id":"nocolon"})");
  CHECK(bad_room.code == error_code::invalid_room);
  CHECK(bad_room.room == "nocolon");
  CHECK(
      expect_error(
          R"({"type":"subscribe","room_id":"a:b","since":{"epoch":"x","offset":-1}})")
          .code == error_code::missing_field);
  CHECK(expect_error(R"({"type":"auth"})").code == error_code::missing_field);
  CHECK(expect_error(R"({"type":"auth","token":""})").code ==
        error_code::missing_field);
  std::string deep(10000, '[');
  CHECK(expect_error(deep).code == error_code::invalid_json);
}

TEST_CASE("server frames have golden bytes", "[protocol]") {
  CHECK(iso8601_ms(t0) == "2024-01-01T00:00:00.123Z");
  CHECK(
      encode_connected("abc-1", t0) ==
      R"({"type":"connection","event":"connected","connection_id":"abc-1","timestamp":"2024-01-01T00:00:00.123Z"})");
  auto room = *parse_room_id("execution:e1");
  CHECK(
      encode_subscription(true, room, {"ep", 3}, t0) ==
      R"({"type":"subscription","event":"subscribed","room_id":"execution:e1","epoch":"ep","offset":3,"timestamp":"2024-01-01T00:00:00.123Z"})");
  CHECK(
      encode_subscription(true, room, {"ep", 9}, t0, true) ==
      R"({"type":"subscription","event":"subscribed","room_id":"execution:e1","epoch":"ep","offset":9,"recovered":true,"timestamp":"2024-01-01T00:00:00.123Z"})");
  CHECK(json::parse(encode_subscription(true, room, {"ep", 9}, t0,
                                        false))["recovered"] == false);
  CHECK(encode_pong(t0) ==
        R"({"type":"pong","timestamp":"2024-01-01T00:00:00.123Z"})");
  CHECK(
      encode_error(error_code::access_denied, "execution:e1", t0) ==
      R"({"type":"error","error_code":"ACCESS_DENIED","message":"Access denied to room","room_id":"execution:e1","timestamp":"2024-01-01T00:00:00.123Z"})");
  CHECK(
      encode_subscriptions({"a:1", "b:2"}, t0) ==
      R"({"type":"subscriptions","rooms":["a:1","b:2"],"timestamp":"2024-01-01T00:00:00.123Z"})");
  publication pub;
  pub.room = room;
  pub.type = "execution_update";
  pub.event = "status_changed";
  pub.data = R"({"status":"running"})";
  pub.offset = 42;
  pub.epoch = "e";
  pub.timestamp_ms = t0;
  CHECK(
      encode_event(pub) ==
      R"({"type":"execution_update","event":"status_changed","room_id":"execution:e1","offset":42,"epoch":"e","timestamp":"2024-01-01T00:00:00.123Z","data":{"status":"running"}})");
  pub.event.clear();
  CHECK(json::parse(encode_event(pub)).count("event") == 0);
  auto hb = json::parse(encode_heartbeat(t0));
  CHECK(hb["type"] == "heartbeat");
  CHECK(hb["server_time"] == "2024-01-01T00:00:00.123Z");
}

TEST_CASE("strings are escaped into valid JSON", "[protocol]") {
  std::string out;
  append_json_string(out, std::string("a\"b\\c\n\x01\x1f/é", 11));
  CHECK(out == "\"a\\\"b\\\\c\\n\\u0001\\u001f/é\"");
  CHECK(json::parse(out).get<std::string>() ==
        std::string("a\"b\\c\n\x01\x1f/é", 11));
}

TEST_CASE("request targets and bearer headers", "[protocol]") {
  auto t = split_target("/api/v1/ws?token=a%2Eb.c&x=1");
  CHECK(t.path == "/api/v1/ws");
  CHECK(query_param(t.query, "token") == std::optional<std::string>{"a.b.c"});
  CHECK(query_param(t.query, "x") == std::optional<std::string>{"1"});
  CHECK_FALSE(query_param(t.query, "tok"));
  CHECK_FALSE(query_param("token=%zz", "token"));
  CHECK_FALSE(query_param("token=%4", "token"));
  CHECK(split_target("/healthz").query.empty());
  CHECK(bearer_token("Bearer abc") == std::optional<std::string_view>{"abc"});
  CHECK(bearer_token("bearer abc") == std::optional<std::string_view>{"abc"});
  CHECK_FALSE(bearer_token("Basic abc"));
  CHECK_FALSE(bearer_token("Bearer "));
  CHECK_FALSE(bearer_token(""));
}

TEST_CASE("command messages decode and results encode", "[protocol]") {
  auto c = expect_command<cmd_command>(
      R"({"type":"command","room_id":"checklist:r","command":"check","args":{"item":"a"}})");
  CHECK(c.room.str() == "checklist:r");
  CHECK(c.name == "check");
  CHECK(c.args == R"({"item":"a"})");
  CHECK(expect_command<cmd_command>(
            R"({"type":"command","room_id":"a:b","command":"go"})")
            .args == "{}");
  CHECK(expect_error(R"({"type":"command","room_id":"a:b"})").code ==
        error_code::missing_field);
  CHECK(expect_error(R"({"type":"command","room_id":"a:b","command":"x y"})")
            .code == error_code::invalid_message);
  CHECK(expect_error(
            R"({"type":"command","room_id":"a:b","command":"x","args":[1]})")
            .code == error_code::missing_field);
  CHECK(
      encode_command_result(*parse_room_id("a:b"), "go", 7, t0) ==
      R"({"type":"command_result","room_id":"a:b","command":"go","offset":7,"timestamp":"2024-01-01T00:00:00.123Z"})");
}
