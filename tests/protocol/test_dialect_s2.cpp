#include "protocol/dialect_s2.hpp"

#include <catch2/catch.hpp>

using namespace tidings::protocol;

namespace {

constexpr std::int64_t t0 = 1704067200000; // 2024-01-01T00:00:00.000Z
constexpr std::string_view ts = R"(,"timestamp":"2024-01-01T00:00:00.000Z"})";

template <class T>
T expect_command(std::string_view text) {
  auto d = decode_s2(text);
  INFO(text);
  REQUIRE(std::holds_alternative<s2_command>(d));
  auto& cmd = std::get<s2_command>(d);
  REQUIRE(std::holds_alternative<T>(cmd));
  return std::get<T>(cmd);
}

error_code expect_error(std::string_view text) {
  auto d = decode_s2(text);
  INFO(text);
  REQUIRE(std::holds_alternative<error_code>(d));
  return std::get<error_code>(d);
}

s2_filter filter(std::string_view filters_json) {
  auto compiled = compile_s2_filter(s2_json::parse(filters_json));
  INFO(filters_json);
  REQUIRE(std::holds_alternative<s2_filter>(compiled));
  return std::get<s2_filter>(compiled);
}

bool matches(std::string_view filters_json, std::string_view event_json) {
  return filter(filters_json).matches(s2_json::parse(event_json));
}

// With S2's own frames, "timestamp" is appended before the closing brace.
std::string with_ts(std::string_view frame) {
  std::string out{frame.substr(0, frame.size() - 1)};
  out += ts;
  return out;
}

std::string env_value(const s2_env_mapping& m, std::string_view option) {
  for (const auto& [k, v] : m.options)
    if (k == option)
      return v;
  return "<unset>";
}

} // namespace

TEST_CASE("S2 client messages decode", "[protocol]") {
  CHECK(expect_command<s2_auth>(
            R"({"type":"auth","data":{"token":"your-auth-token"}})")
            .token == "your-auth-token");
  auto sub = expect_command<s2_subscribe>(
      R"({"type":"subscribe","data":{"type":"events","filters":{"event_type":"user_action","user_id":["user123","user456"]}}})");
  CHECK(sub.stream == s2_stream::events);
  CHECK(sub.filter.size() == 2);
  auto metrics = expect_command<s2_subscribe>(
      R"({"type":"subscribe","data":{"type":"metrics"}})");
  CHECK(metrics.stream == s2_stream::metrics);
  CHECK(metrics.filter.empty());
  // S2's server defaults a missing type to events.
  CHECK(expect_command<s2_subscribe>(R"({"type":"subscribe"})").stream ==
        s2_stream::events);
  CHECK(
      expect_command<s2_subscribe>(
          R"({"type":"subscribe","data":{"type":"system_status","filters":null}})")
          .stream == s2_stream::system_status);
  CHECK(
      expect_command<s2_unsubscribe>(
          R"({"type":"unsubscribe","data":{"subscription_id":"subscription-uuid"}})")
          .subscription_id == "subscription-uuid");
  expect_command<s2_ping>(R"({"type":"ping"})");
  expect_command<s2_pong>(R"({"type":"pong"})");
  // The message format's other members are accepted and ignored.
  expect_command<s2_ping>(
      R"({"type":"ping","data":null,"subscription_id":null,"timestamp":"2024-01-01T00:00:00.000Z","metadata":{}})");
}

TEST_CASE("S2 malformed messages give the documented errors", "[protocol]") {
  CHECK(expect_error("{") == error_code::invalid_json);
  CHECK(expect_error("") == error_code::invalid_json);
  CHECK(expect_error("\"\xff\"") == error_code::invalid_json);
  CHECK(expect_error(std::string(100, '[')) == error_code::invalid_json);
  CHECK(expect_error(std::string(70000, ' ')) == error_code::payload_too_large);
  CHECK(expect_error("[]") == error_code::invalid_message);
  CHECK(expect_error(R"({"data":{}})") == error_code::invalid_message);
  CHECK(expect_error(R"({"type":1})") == error_code::invalid_message);
  CHECK(expect_error(R"({"type":"subscribe","data":[1]})") ==
        error_code::invalid_message);
  CHECK(expect_error(R"({"type":"data"})") == error_code::unknown_type);
  CHECK(expect_error(R"({"type":"auth_success"})") == error_code::unknown_type);
  CHECK(expect_error(R"({"type":"auth"})") == error_code::invalid_credentials);
  CHECK(expect_error(R"({"type":"auth","token":"t"})") ==
        error_code::invalid_credentials); // S2 puts it under data
  CHECK(expect_error(R"({"type":"auth","data":{"token":""}})") ==
        error_code::invalid_credentials);
  CHECK(expect_error(R"({"type":"auth","data":{"token":5}})") ==
        error_code::invalid_credentials);
  CHECK(expect_error(R"({"type":"subscribe","data":{"type":"logs"}})") ==
        error_code::invalid_channel);
  CHECK(expect_error(R"({"type":"subscribe","data":{"type":"Events"}})") ==
        error_code::invalid_channel);
  CHECK(expect_error(R"({"type":"subscribe","data":{"type":3}})") ==
        error_code::invalid_channel);
  CHECK(expect_error(
            R"({"type":"subscribe","data":{"type":"events","filters":[1]}})") ==
        error_code::invalid_filter);
  CHECK(
      expect_error(
          R"({"type":"subscribe","data":{"type":"events","filters":"a=b"}})") ==
      error_code::invalid_filter);
  CHECK(expect_error(R"({"type":"unsubscribe"})") == error_code::missing_field);
  CHECK(
      expect_error(R"({"type":"unsubscribe","data":{"subscription_id":7}})") ==
      error_code::missing_field);
  CHECK(
      expect_error(R"({"type":"unsubscribe","data":{"subscription_id":""}})") ==
      error_code::missing_field);
  CHECK(expect_error(R"({"type":"unsubscribe","data":{"subscription_id":")" +
                     std::string(max_s2_subscription_id_size + 1, 'x') +
                     "\"}}") == error_code::missing_field);
}

TEST_CASE("S2 filters: dot paths, arrays, exact matches", "[protocol]") {
  constexpr std::string_view ev =
      R"({"event_id":"evt_123","event_type":"user_action","user_id":"user_456","count":3,"ratio":1.5,"flag":true,"nothing":null,"tags":["a","b"],"payload":{"user_id":"user123","user":{"id":"123","n":1}}})";
  struct row {
    std::string_view filters;
    bool expected;
  };
  const row rows[] = {
      {"{}", true},
      {"null", true},
      {R"({"event_type":"user_action"})", true},
      {R"({"event_type":"login"})", false},
      {R"({"event_type":["login","user_action"]})", true},
      {R"({"event_type":["login","purchase"]})", false},
      {R"({"event_type":[]})", false},
      {R"({"payload.user_id":"user123"})", true},
      {R"({"payload.user.id":"123"})", true},
      {R"({"payload.user.id":123})", false}, // string vs number
      {R"({"payload.user.n":1.0})", true},   // 1 == 1.0
      {R"({"payload.user.n":true})", false}, // bool is not a number
      {R"({"count":"3"})", false},
      {R"({"count":[1,2,3]})", true},
      {R"({"ratio":1.5})", true},
      {R"({"flag":true})", true},
      {R"({"flag":1})", false},
      {R"({"nothing":null})", true},
      {R"({"missing":null})", false}, // missing ≠ null
      {R"({"missing":"x"})", false},
      {R"({"payload.missing.deeper":"x"})", false},
      {R"({"user_id.x":"y"})", false},   // through a string
      {R"({"tags.0":"a"})", false},      // arrays are not indexed
      {R"({"tags":["a","b"]})", false},  // array means any-of
      {R"({"tags":[["a","b"]]})", true}, // ... of which one is it
      {R"({"payload.user":{"n":1,"id":"123"}})", true}, // object equality
      {R"({"payload.user":{"id":"123"}})", false},
      {R"({"event_type":"user_action","user_id":"user_456"})", true},
      {R"({"event_type":"user_action","user_id":"other"})", false},
      {R"({"":"x"})", false},
      {R"({"payload..user_id":"user123"})", false},
      {R"({"event_type":"USER_ACTION"})", false},
  };
  for (const auto& r : rows) {
    INFO(r.filters);
    CHECK(matches(r.filters, ev) == r.expected);
  }
  SECTION("events that are not objects match only empty filters") {
    CHECK(matches("{}", "[1]"));
    CHECK_FALSE(matches(R"({"a":1})", "[1]"));
    CHECK_FALSE(matches(R"({"a":1})", "null"));
  }
  SECTION("bounds") {
    std::string many = "{";
    for (std::size_t i = 0; i <= max_s2_filter_keys; ++i)
      many += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":1";
    many += "}";
    CHECK(std::get<error_code>(compile_s2_filter(s2_json::parse(many))) ==
          error_code::invalid_filter);
    std::string long_path =
        R"({")" + std::string(max_s2_filter_path_size + 1, 'a') + R"(":1})";
    CHECK(std::holds_alternative<error_code>(
        compile_s2_filter(s2_json::parse(long_path))));
    std::string deep_path = "{\"";
    for (std::size_t i = 0; i <= max_s2_filter_path_segments; ++i)
      deep_path += i ? ".a" : "a";
    deep_path += "\":1}";
    CHECK(std::holds_alternative<error_code>(
        compile_s2_filter(s2_json::parse(deep_path))));
    s2_json wide = {{"k", s2_json::array()}};
    for (std::size_t i = 0; i <= max_s2_filter_values; ++i)
      wide["k"].push_back(i);
    CHECK(std::holds_alternative<error_code>(compile_s2_filter(wide)));
    s2_json big = {{"k", std::string(max_s2_filters_size, 'x')}};
    CHECK(std::holds_alternative<error_code>(compile_s2_filter(big)));
    CHECK(std::holds_alternative<error_code>(
        compile_s2_filter(s2_json::parse("[]"))));
    CHECK(std::holds_alternative<error_code>(
        compile_s2_filter(s2_json::parse("5"))));
  }
}

TEST_CASE("S2 server frames have the bytes of S2's examples", "[protocol]") {
  CHECK(
      encode_s2_auth_success("client-uuid", t0) ==
      with_ts(R"({"type":"auth_success","data":{"client_id":"client-uuid"}})"));
  CHECK(
      encode_s2_auth_failed(error_code::invalid_credentials, t0) ==
      with_ts(
          R"({"type":"auth_failed","data":{"error":"Invalid credentials"}})"));
  CHECK(
      encode_s2_auth_failed(error_code::auth_required, t0) ==
      with_ts(
          R"({"type":"auth_failed","data":{"error":"Authentication required"}})"));
  CHECK(
      encode_s2_error(error_code::rate_limited, t0) ==
      with_ts(
          R"({"type":"error","data":{"error":"Rate limit exceeded","error_code":"RATE_LIMITED"}})"));
  CHECK(
      encode_s2_error(error_code::unknown_type, t0) ==
      with_ts(
          R"({"type":"error","data":{"error":"Unknown message type","error_code":"UNKNOWN_TYPE"}})"));
  CHECK(
      encode_s2_error(error_code::subscription_not_found, t0) ==
      with_ts(
          R"({"type":"error","data":{"error":"Subscription not found","error_code":"SUBSCRIPTION_NOT_FOUND"}})"));
  CHECK(encode_s2_pong(t0) == with_ts(R"({"type":"pong"})"));
  CHECK(encode_s2_ping(t0) == with_ts(R"({"type":"ping"})"));
  CHECK(
      encode_s2_subscribed("sub_789", s2_stream::events, t0) ==
      with_ts(
          R"({"type":"data","data":{"status":"subscribed","subscription_id":"sub_789","type":"events"},"subscription_id":"sub_789"})"));
  CHECK(
      encode_s2_unsubscribed("sub_789", t0) ==
      with_ts(
          R"({"type":"data","data":{"status":"unsubscribed","subscription_id":"sub_789"}})"));

  SECTION("S2's DATA example from a publication") {
    publication p;
    p.room = s2_room(s2_stream::events);
    p.type = "user_action";
    p.data =
        R"({"event_id":"evt_123","event_type":"user_action","user_id":"user_456","timestamp":"2024-01-01T00:00:00Z","payload":{}})";
    p.offset = 4;
    p.epoch = "ep";
    p.timestamp_ms = t0;
    auto ev = s2_event_object(p, s2_stream::events);
    auto payload = encode_s2_payload(ev, s2_stream::events);
    CHECK(
        encode_s2_data("sub_789", payload, t0) ==
        with_ts(
            R"({"type":"data","data":{"event":{"event_id":"evt_123","event_type":"user_action","user_id":"user_456","timestamp":"2024-01-01T00:00:00Z","payload":{}},"subscription_type":"events"},"subscription_id":"sub_789"})"));
    CHECK(filter(R"({"user_id":["user_456"]})").matches(ev));
  }
}

TEST_CASE("S2 event objects and streams", "[protocol]") {
  publication p;
  p.room = s2_room(s2_stream::events);
  p.type = "user_action";
  p.data = R"({"user_id":"u1"})";
  p.offset = 4;
  p.epoch = "ep";
  p.timestamp_ms = t0;
  auto ev = s2_event_object(p, s2_stream::events);
  CHECK(
      ev.dump() ==
      R"({"user_id":"u1","event_id":"ep:4","event_type":"user_action","timestamp":"2024-01-01T00:00:00.000Z"})");
  p.publish_id = "pub-1";
  CHECK(s2_event_object(p, s2_stream::events)["event_id"] == "pub-1");
  p.data = "[1,2]";
  p.event = "click";
  CHECK(
      s2_event_object(p, s2_stream::events).dump() ==
      R"({"event_id":"pub-1","event_type":"user_action.click","timestamp":"2024-01-01T00:00:00.000Z","payload":[1,2]})");
  p.data = R"({"cpu":0.5})";
  auto m = s2_event_object(p, s2_stream::metrics);
  CHECK(m.dump() == R"({"cpu":0.5})");
  CHECK(encode_s2_payload(m, s2_stream::metrics) ==
        R"({"metrics":{"cpu":0.5},"subscription_type":"metrics"})");
  CHECK(encode_s2_payload(m, s2_stream::alerts) ==
        R"({"alert":{"cpu":0.5},"subscription_type":"alerts"})");
  p.data = std::string(200, '[') + std::string(200, ']');
  CHECK(s2_event_object(p, s2_stream::metrics).is_null());

  CHECK(s2_room(s2_stream::system_status).str() == "stream:system_status");
  CHECK(s2_stream_of(*parse_room_id("stream:alerts")) == s2_stream::alerts);
  CHECK_FALSE(s2_stream_of(*parse_room_id("stream:logs")));
  CHECK_FALSE(s2_stream_of(*parse_room_id("pipeline:events")));
  for (auto s : {s2_stream::events, s2_stream::metrics, s2_stream::alerts,
                 s2_stream::predictions, s2_stream::aggregations,
                 s2_stream::system_status})
    CHECK(parse_s2_stream(s2_stream_name(s)) == s);
}

TEST_CASE("S2 environment maps to Tidings options", "[protocol]") {
  auto r = map_s2_env({
      {"STREAMING_WEBSOCKET__HOST", "0.0.0.0"},
      {"STREAMING_WEBSOCKET__PORT", "8765"},
      {"STREAMING_WEBSOCKET__MAX_CONNECTIONS", "1000"},
      {"STREAMING_WEBSOCKET__REQUIRE_AUTH", "true"},
      {"STREAMING_WEBSOCKET__RATE_LIMIT_PER_MINUTE", "60"},
      {"streaming_websocket__ping_interval", " 20 "},
      {"STREAMING_WEBSOCKET__PING_TIMEOUT", "10"},
      {"STREAMING_WEBSOCKET__MAX_MESSAGE_SIZE", "1048576"},
      {"STREAMING_WEBSOCKET__AUTH_TIMEOUT_SECONDS", "30"},
      {"STREAMING_WEBSOCKET__ALLOWED_ORIGINS",
       R"(["https://a.example","http://localhost:3000"])"},
      {"STREAMING_WEBSOCKET__COMPRESSION", "deflate"},
      {"STREAMING_OTHER__X", "1"},
      {"PATH", "/usr/bin"},
  });
  REQUIRE(r.ok());
  const std::vector<std::pair<std::string, std::string>> expected{
      {"s2-host", "0.0.0.0"},
      {"s2-port", "8765"},
      {"s2-max-connections", "1000"},
      {"s2-ping-interval", "20"},
      {"s2-ping-timeout", "10"},
      {"s2-max-message-size", "1048576"},
      {"s2-require-auth", "true"},
      {"s2-auth-timeout", "30"},
      {"s2-allowed-origins", "https://a.example,http://localhost:3000"},
      {"s2-rate-limit-per-minute", "60"},
  };
  CHECK(r->options == expected);
  REQUIRE(r->ignored.size() == 1);
  CHECK(r->ignored[0] == "STREAMING_WEBSOCKET__COMPRESSION");

  SECTION("booleans, lists and the rate-limit switch") {
    auto off = map_s2_env({{"STREAMING_WEBSOCKET__ENABLE_RATE_LIMITING", "no"},
                           {"STREAMING_WEBSOCKET__RATE_LIMIT_PER_MINUTE", "60"},
                           {"STREAMING_WEBSOCKET__REQUIRE_AUTH", "0"},
                           {"STREAMING_WEBSOCKET__ALLOWED_ORIGINS", "*"}});
    REQUIRE(off.ok());
    CHECK(env_value(*off, "s2-rate-limit-per-minute") == "0");
    CHECK(env_value(*off, "s2-require-auth") == "false");
    CHECK(env_value(*off, "s2-allowed-origins") == "*");
    CHECK(off->options.size() == 3);
    auto on = map_s2_env(
        {{"STREAMING_WEBSOCKET__ENABLE_RATE_LIMITING", "On"},
         {"STREAMING_WEBSOCKET__ALLOWED_ORIGINS", " https://a , https://b "}});
    REQUIRE(on.ok());
    CHECK(env_value(*on, "s2-rate-limit-per-minute") == "<unset>");
    CHECK(env_value(*on, "s2-allowed-origins") == "https://a,https://b");
    auto unknown = map_s2_env({{"STREAMING_WEBSOCKET__TURBO", "1"}});
    REQUIRE(unknown.ok());
    CHECK(unknown->options.empty());
    CHECK(unknown->ignored.size() == 1);
  }
  SECTION("bad values name the variable, not the value") {
    const std::pair<std::string, std::string> bad[] = {
        {"STREAMING_WEBSOCKET__PORT", "70000"},
        {"STREAMING_WEBSOCKET__PORT", "80a"},
        {"STREAMING_WEBSOCKET__PORT", "-1"},
        {"STREAMING_WEBSOCKET__PORT", ""},
        {"STREAMING_WEBSOCKET__MAX_CONNECTIONS", "0"},
        {"STREAMING_WEBSOCKET__REQUIRE_AUTH", "maybe"},
        {"STREAMING_WEBSOCKET__ENABLE_RATE_LIMITING", "2"},
        {"STREAMING_WEBSOCKET__HOST", "a host"},
        {"STREAMING_WEBSOCKET__HOST", ""},
        {"STREAMING_WEBSOCKET__ALLOWED_ORIGINS", R"(["a",1])"},
        {"STREAMING_WEBSOCKET__ALLOWED_ORIGINS", R"(["a b"])"},
        {"STREAMING_WEBSOCKET__ALLOWED_ORIGINS", "[oops"},
        {"STREAMING_WEBSOCKET__PING_INTERVAL", "1.5"},
    };
    for (const auto& b : bad) {
      INFO(b.first << "=" << b.second);
      auto res = map_s2_env({b});
      REQUIRE_FALSE(res.ok());
      CHECK(res.error().code == "CONFIG");
      CHECK(res.error().message.find(b.first) == 0);
      if (!b.second.empty())
        CHECK(res.error().message.find(b.second) == std::string::npos);
    }
    auto twice = map_s2_env({{"STREAMING_WEBSOCKET__PORT", "1"},
                             {"streaming_websocket__port", "2"}});
    CHECK_FALSE(twice.ok());
  }
}
