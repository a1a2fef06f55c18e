#include "protocol/dialect_common.hpp"
#include "protocol/dialect_s0.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace tidings::protocol;
using ojson = nlohmann::ordered_json;

namespace {

// Timestamps of S0's examples, in unix ms.
constexpr std::int64_t t_started = 1706263200000;  // 2024-01-26T10:00:00Z
constexpr std::int64_t t_progress = 1706263290000; // 2024-01-26T10:01:30Z
constexpr std::int64_t t_status = 1706264100000;   // 2024-01-26T10:15:00Z
constexpr std::int64_t t_discovered = 1706264400000;
constexpr std::int64_t t_alert = 1706264700000;
constexpr std::int64_t t_heartbeat = 1706265000123; // 10:30:00.123Z
constexpr std::int64_t t_error = 1706265300000;     // 10:35:00Z

// A publication whose payload is the `payload` of S0's example `doc`.
publication pub_from(std::string_view doc, std::string_view room,
                     std::string type, std::int64_t ts,
                     std::string event = {}) {
  publication p;
  p.room = *parse_room_id(room);
  p.type = std::move(type);
  p.event = std::move(event);
  p.data = ojson::parse(doc)["payload"].dump();
  p.offset = 7;
  p.epoch = "ep";
  p.timestamp_ms = ts;
  return p;
}

template <class T>
T expect_command(std::string_view text) {
  auto d = decode_s0(text);
  INFO(text);
  REQUIRE(std::holds_alternative<command>(d));
  auto& cmd = std::get<command>(d);
  REQUIRE(std::holds_alternative<T>(cmd));
  return std::get<T>(cmd);
}

s0_decode_error expect_error(std::string_view text) {
  auto d = decode_s0(text);
  INFO(text);
  REQUIRE(std::holds_alternative<s0_decode_error>(d));
  return std::get<s0_decode_error>(d);
}

} // namespace

TEST_CASE("S0 subscribe frames map channels to rooms", "[protocol]") {
  SECTION("channels with ids") {
    CHECK(
        expect_command<cmd_subscribe>(
            R"({"type":"subscribe","channel":"pipeline","pipeline_id":"850e8400-e29b-41d4-a716-446655440003"})")
            .room.str() == "pipeline:850e8400-e29b-41d4-a716-446655440003");
    CHECK(
        expect_command<cmd_subscribe>(
            R"({"type":"subscribe","channel":"connector","connector_id":"c50e8400"})")
            .room.str() == "connector:c50e8400");
    CHECK(
        expect_command<cmd_subscribe>(
            R"({"type":"subscribe","channel":"project","project_id":"550e8400"})")
            .room.str() == "project:550e8400");
    auto sub = expect_command<cmd_subscribe>(
        R"({"type":"subscribe","channel":"pipeline","pipeline_id":"p1"})");
    CHECK_FALSE(sub.since);
  }
  SECTION("global channels without an id, or with null as S0's client sends") {
    CHECK(expect_command<cmd_subscribe>(
              R"({"type":"subscribe","channel":"system"})")
              .room.str() == "system:all");
    CHECK(expect_command<cmd_subscribe>(
              R"({"type":"subscribe","channel":"system","system_id":null})")
              .room.str() == "system:all");
    CHECK(expect_command<cmd_subscribe>(
              R"({"type":"subscribe","channel":"discovery"})")
              .room.str() == "discovery:all");
    CHECK(expect_command<cmd_subscribe>(
              R"({"type":"subscribe","channel":"system","system_id":"eu"})")
              .room.str() == "system:eu");
  }
  SECTION("unsubscribe and the other commands") {
    CHECK(
        expect_command<cmd_unsubscribe>(
            R"({"type":"unsubscribe","channel":"pipeline","pipeline_id":"p1"})")
            .room.str() == "pipeline:p1");
    expect_command<cmd_list_subscriptions>(R"({"type":"list_subscriptions"})");
    expect_command<cmd_ping>(R"({"type":"ping"})");
    expect_command<cmd_pong>(R"({"type":"pong"})");
    CHECK(
        expect_command<cmd_auth>(R"({"type":"auth","token":"YOUR_JWT_TOKEN"})")
            .token == "YOUR_JWT_TOKEN");
  }
}

TEST_CASE("S0 malformed frames give the documented errors", "[protocol]") {
  CHECK(expect_error("{").code == error_code::invalid_json);
  CHECK(expect_error("").code == error_code::invalid_json);
  CHECK(expect_error("\"\xff\"").code == error_code::invalid_json);
  CHECK(expect_error("[]").code == error_code::invalid_message);
  CHECK(expect_error(R"({"channel":"system"})").code ==
        error_code::invalid_message);
  CHECK(expect_error(R"({"type":["subscribe"]})").code ==
        error_code::invalid_message);
  CHECK(expect_error(R"({"type":"dance"})").code == error_code::unknown_type);

  SECTION("channel problems name the channel") {
    auto no_channel = expect_error(R"({"type":"subscribe"})");
    CHECK(no_channel.code == error_code::missing_field);
    CHECK(no_channel.channel.empty());
    CHECK(expect_error(R"({"type":"subscribe","channel":7})").code ==
          error_code::missing_field);
    auto unknown = expect_error(
        R"({"type":"subscribe","channel":"weather","weather_id":"x"})");
    CHECK(unknown.code == error_code::invalid_channel);
    CHECK(unknown.channel == "weather");
    auto no_id = expect_error(R"({"type":"subscribe","channel":"pipeline"})");
    CHECK(no_id.code == error_code::missing_field);
    CHECK(no_id.channel == "pipeline");
    CHECK(expect_error(
              R"({"type":"subscribe","channel":"pipeline","pipeline_id":null})")
              .code == error_code::missing_field);
    CHECK(expect_error(
              R"({"type":"subscribe","channel":"pipeline","pipeline_id":""})")
              .code == error_code::missing_field);
    CHECK(expect_error(
              R"({"type":"subscribe","channel":"pipeline","pipeline_id":42})")
              .code == error_code::missing_field);
    CHECK(
        expect_error(R"({"type":"subscribe","channel":"system","system_id":5})")
            .code == error_code::missing_field);
    auto bad_id = expect_error(
        R"({"type":"unsubscribe","channel":"pipeline","pipeline_id":"a b"})");
    CHECK(bad_id.code == error_code::invalid_room);
    CHECK(bad_id.channel == "pipeline");
    CHECK(bad_id.id == "a b");
    // The id is taken from `<channel>_id`, not from another channel's key.
    CHECK(expect_error(
              R"({"type":"subscribe","channel":"pipeline","connector_id":"c"})")
              .code == error_code::missing_field);
  }
  SECTION("oversize values are not echoed, oversize messages refused") {
    std::string long_id(300, 'x');
    auto e = expect_error(
        R"({"type":"subscribe","channel":"pipeline","pipeline_id":")" +
        long_id + "\"}");
    CHECK(e.code == error_code::invalid_room);
    CHECK(e.id.empty());
    std::string huge = R"({"type":"ping","pad":")" +
                       std::string(max_dialect_message_size, 'a') + "\"}";
    CHECK(expect_error(huge).code == error_code::payload_too_large);
    std::string deep = R"({"type":"ping","x":)" + std::string(100, '[') +
                       std::string(100, ']') + "}";
    CHECK(expect_error(deep).code == error_code::invalid_json);
    CHECK(expect_error(R"({"type":"auth","token":")" +
                       std::string(max_token_size + 1, 'a') + "\"}")
              .code == error_code::missing_field);
    CHECK(expect_error(R"({"type":"auth"})").code == error_code::missing_field);
  }
}

TEST_CASE("S0 events have the bytes of S0's examples", "[protocol]") {
  SECTION("pipeline events, with and without the channel in the type") {
    constexpr std::string_view progress =
        R"({"type":"pipeline.progress","timestamp":"2024-01-26T10:01:30Z","channel":"pipeline","pipeline_id":"850e8400-e29b-41d4-a716-446655440003","payload":{"run_id":"950e8400-e29b-41d4-a716-446655440004","progress":45,"current_task":"transform_data","tasks_completed":2,"tasks_total":5,"elapsed_seconds":90,"estimated_remaining_seconds":90,"stats":{"rows_processed":450000,"rows_total":1000000,"throughput_rows_per_sec":5000}}})";
    auto room = "pipeline:850e8400-e29b-41d4-a716-446655440003";
    CHECK(encode_s0_event(pub_from(progress, room, "progress", t_progress)) ==
          progress);
    CHECK(encode_s0_event(pub_from(progress, room, "pipeline.progress",
                                   t_progress)) == progress);
    // Milliseconds are cut: S0 writes whole seconds.
    CHECK(encode_s0_event(pub_from(progress, room, "progress",
                                   t_progress + 999)) == progress);
    constexpr std::string_view started =
        R"({"type":"pipeline.started","timestamp":"2024-01-26T10:00:00Z","channel":"pipeline","pipeline_id":"850e8400-e29b-41d4-a716-446655440003","payload":{"run_id":"950e8400-e29b-41d4-a716-446655440004","pipeline_name":"Daily Sales ETL","triggered_by":"user@example.com","configuration":{"date":"2024-01-26"},"estimated_duration_seconds":180}})";
    CHECK(encode_s0_event(pub_from(started, room, "started", t_started)) ==
          started);
  }
  SECTION("connector events from type plus sub-event") {
    constexpr std::string_view status =
        R"({"type":"connector.status_changed","timestamp":"2024-01-26T10:15:00Z","channel":"connector","connector_id":"c50e8400-e29b-41d4-a716-446655440003","payload":{"previous_status":"healthy","current_status":"degraded","reason":"Response time increased above threshold","metrics":{"response_time_ms":850,"threshold_ms":500,"availability_percent":98.5}}})";
    auto room = "connector:c50e8400-e29b-41d4-a716-446655440003";
    CHECK(encode_s0_event(pub_from(status, room, "connector", t_status,
                                   "status_changed")) == status);
    CHECK(encode_s0_event(pub_from(status, room, "status_changed", t_status)) ==
          status);
  }
  SECTION("global channels carry no id") {
    constexpr std::string_view discovered =
        R"({"type":"connector.discovered","timestamp":"2024-01-26T10:20:00Z","channel":"discovery","payload":{"type":"postgresql","host":"192.168.1.15","port":5432,"name":"dev-postgres-02","confidence_score":0.92,"discovery_method":"port_scan"}})";
    CHECK(encode_s0_event(pub_from(discovered, "discovery:all",
                                   "connector.discovered", t_discovered)) ==
          discovered);
    constexpr std::string_view alert =
        R"({"type":"system.alert","timestamp":"2024-01-26T10:25:00Z","channel":"system","payload":{"severity":"warning","category":"resource","message":"Kafka consumer lag exceeding threshold","details":{"topic":"events","consumer_group":"analytics","lag":50000,"threshold":10000},"recommended_action":"Scale up consumer instances"}})";
    CHECK(encode_s0_event(pub_from(alert, "system:all", "alert", t_alert)) ==
          alert);
    // A scoped system room and a pipeline literally named "all" keep ids.
    auto scoped = ojson::parse(
        encode_s0_event(pub_from(alert, "system:eu", "alert", t_alert)));
    CHECK(scoped["system_id"] == "eu");
    auto all = ojson::parse(encode_s0_event(
        pub_from(R"({"payload":{}})", "pipeline:all", "progress", t_alert)));
    CHECK(all["pipeline_id"] == "all");
  }
}

TEST_CASE("S0 server frames have the bytes of S0's examples", "[protocol]") {
  CHECK(
      encode_s0_heartbeat(t_heartbeat, 142) ==
      R"({"type":"heartbeat","timestamp":"2024-01-26T10:30:00Z","server_time":"2024-01-26T10:30:00.123Z","active_connections":142})");
  CHECK(
      encode_s0_subscriptions(
          {*parse_room_id("pipeline:850e8400-e29b-41d4-a716-446655440003"),
           *parse_room_id("system:all")}) ==
      R"({"type":"subscriptions","payload":{"subscriptions":[{"channel":"pipeline","pipeline_id":"850e8400-e29b-41d4-a716-446655440003"},{"channel":"system"}]}})");
  CHECK(encode_s0_subscriptions({}) ==
        R"({"type":"subscriptions","payload":{"subscriptions":[]}})");
  CHECK(encode_s0_pong(t_heartbeat) ==
        R"({"type":"pong","timestamp":"2024-01-26T10:30:00Z"})");

  SECTION("errors: S0's categories, the table's fixed messages") {
    CHECK(
        encode_s0_error(error_code::connection_failed, {}, {}, t_error) ==
        R"({"type":"error","error_code":"CONNECTION_FAILED","message":"WebSocket connection failed","timestamp":"2024-01-26T10:35:00Z"})");
    CHECK(
        encode_s0_error(error_code::unauthorized, {}, {}, t_error) ==
        R"({"type":"error","error_code":"UNAUTHORIZED","message":"Missing or invalid credentials","timestamp":"2024-01-26T10:35:00Z"})");
    CHECK(
        encode_s0_room_error(error_code::access_denied,
                             *parse_room_id("pipeline:invalid-id"), t_error) ==
        R"({"type":"error","error_code":"SUBSCRIPTION_FAILED","message":"Access denied to room","details":{"pipeline_id":"invalid-id"},"timestamp":"2024-01-26T10:35:00Z"})");
    CHECK(
        encode_s0_room_error(error_code::too_many_subscriptions,
                             *parse_room_id("system:all"), t_error) ==
        R"({"type":"error","error_code":"SUBSCRIPTION_FAILED","message":"Subscription limit reached for this connection","details":{"channel":"system"},"timestamp":"2024-01-26T10:35:00Z"})");
    auto e = expect_error(
        R"({"type":"subscribe","channel":"weather","weather_id":"x"})");
    auto frame = ojson::parse(encode_s0_error(e, t_error));
    CHECK(frame["error_code"] == "SUBSCRIPTION_FAILED");
    CHECK(frame["message"] == "Unknown channel or subscription type");
    CHECK(frame["details"]["channel"] == "weather");
    auto plain = ojson::parse(encode_s0_error(expect_error("{"), t_error));
    CHECK(plain["error_code"] == "INVALID_JSON");
    CHECK(plain.count("details") == 0);
  }
  SECTION("error categories") {
    CHECK(s0_error_category(error_code::not_authenticated, false) ==
          error_code::unauthorized);
    CHECK(s0_error_category(error_code::unavailable, true) ==
          error_code::connection_failed);
    CHECK(s0_error_category(error_code::invalid_room, true) ==
          error_code::subscription_failed);
    CHECK(s0_error_category(error_code::rate_limited, false) ==
          error_code::rate_limited);
  }
  SECTION("echoed values are escaped") {
    auto frame = encode_s0_error(error_code::invalid_room, "pipeline", "a\"b\n",
                                 t_error);
    CHECK(ojson::parse(frame)["details"]["pipeline_id"] == "a\"b\n");
  }
}

TEST_CASE("S0 and native messages are told apart", "[protocol]") {
  CHECK(classify_ws_message(
            R"({"type":"subscribe","channel":"pipeline","pipeline_id":"p"})") ==
        ws_dialect::s0);
  CHECK(classify_ws_message(R"({"type":"unsubscribe","channel":"system"})") ==
        ws_dialect::s0);
  CHECK(
      classify_ws_message(R"({"type":"subscribe","room_id":"execution:e"})") ==
      ws_dialect::native);
  CHECK(classify_ws_message(
            R"({"type":"subscribe","room_id":"a:b","channel":"system"})") ==
        ws_dialect::undecided);
  CHECK(classify_ws_message(R"({"type":"subscribe"})") ==
        ws_dialect::undecided);
  CHECK(classify_ws_message(R"({"type":"ping"})") == ws_dialect::undecided);
  CHECK(classify_ws_message(R"({"type":"list_subscriptions"})") ==
        ws_dialect::undecided);
  CHECK(classify_ws_message(R"({"type":"auth","channel":"x"})") ==
        ws_dialect::undecided);
  CHECK(classify_ws_message("not json") == ws_dialect::undecided);
  CHECK(classify_ws_message(std::string(200, '[')) == ws_dialect::undecided);
}

TEST_CASE("S0 rooms and event types", "[protocol]") {
  CHECK(s0_room("pipeline", "p")->str() == "pipeline:p");
  CHECK_FALSE(s0_room("pipeline", ""));
  CHECK_FALSE(s0_room("weather", "x"));
  CHECK_FALSE(s0_room("pipeline", "a/b"));
  CHECK(s0_room("discovery", "")->str() == "discovery:all");
  publication p;
  p.room = *parse_room_id("pipeline:x");
  p.type = "task_failed";
  CHECK(s0_event_type(p) == "pipeline.task_failed");
  p.type = "pipeline";
  p.event = "progress";
  CHECK(s0_event_type(p) == "pipeline.progress");
}

TEST_CASE("plan limits parse and apply", "[protocol]") {
  auto d = plan_limits::defaults();
  CHECK(d.str() == "free=5/10,pro=50/100,enterprise=500/1000");
  REQUIRE(d.for_plan("pro"));
  CHECK(d.for_plan("pro")->max_connections == 50);
  CHECK(d.for_plan("PRO")->messages_per_second == 100);
  CHECK(d.for_plan("enterprise")->max_connections == 500);
  CHECK_FALSE(d.for_plan(""));
  // An unknown plan gets the most restrictive (first) entry.
  CHECK(d.for_plan("platinum")->plan == "free");

  SECTION("config strings") {
    auto p = parse_plan_limits(" free = 2/3 , Team=20/30 ");
    REQUIRE(p.ok());
    CHECK(p->str() == "free=2/3,team=20/30");
    auto round = parse_plan_limits(d.str());
    REQUIRE(round.ok());
    CHECK(round->str() == d.str());
    for (auto bad :
         {"", " ", "free", "free=5", "free=5/", "free=/5", "free=0/5",
          "free=5/0", "free=5/10,free=6/10", "fr ee=5/10", "free=5/10,",
          "free=-1/5", "free=5/1.5", "=5/10", "free=10000000/1", "free=5/10/3",
          "f\xc3\xa9=1/1"}) {
      INFO(bad);
      auto r = parse_plan_limits(bad);
      CHECK_FALSE(r.ok());
      if (!r.ok())
        CHECK(r.error().code == "CONFIG");
    }
    std::string many;
    for (int i = 0; i < 17; ++i)
      many += (i ? ",p" : "p") + std::to_string(i) + "=1/1";
    CHECK_FALSE(parse_plan_limits(many).ok());
  }
}
