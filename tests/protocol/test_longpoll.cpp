#include "protocol/longpoll.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace tidings::protocol;

namespace {

longpoll_query query(std::string_view q) {
  auto r = parse_longpoll_query(q);
  INFO(q);
  REQUIRE(std::holds_alternative<longpoll_query>(r));
  return std::get<longpoll_query>(r);
}

error_code query_error(std::string_view q) {
  auto r = parse_longpoll_query(q);
  INFO(q);
  REQUIRE(std::holds_alternative<error_code>(r));
  return std::get<error_code>(r);
}

publication run_event(std::string type, std::string data,
                      std::uint64_t offset) {
  publication p;
  p.room = *longpoll_run_room("950e8400-e29b-41d4-a716-446655440004");
  p.type = std::move(type);
  p.data = std::move(data);
  p.offset = offset;
  p.epoch = "ep";
  p.timestamp_ms = 1706263380000; // 2024-01-26T10:03:00Z
  return p;
}

} // namespace

TEST_CASE("long-poll queries parse within bounds", "[protocol]") {
  auto q = query("wait=30");
  CHECK(q.wait_seconds == 30);
  CHECK_FALSE(q.cursor);
  CHECK(q.limit == default_longpoll_limit);
  CHECK(query("").wait_seconds == 0);
  CHECK(query("wait=0").wait_seconds == 0);
  CHECK(query("wait=61").wait_seconds == max_longpoll_wait_seconds);
  CHECK(query("wait=99999999999999999999999").wait_seconds ==
        max_longpoll_wait_seconds);
  auto full = query("token=abc&wait=5&cursor=ep%3A12&limit=7&wait=9");
  CHECK(full.wait_seconds == 5); // the first one counts
  REQUIRE(full.cursor);
  CHECK(full.cursor->epoch == "ep");
  CHECK(full.cursor->offset == 12);
  CHECK(full.limit == 7);
  CHECK(query("cursor=ep:3").cursor->offset == 3);
  CHECK(query("limit=5000").limit == max_longpoll_limit);
  CHECK(query("x=%zz&wait=1").wait_seconds == 1); // others left alone

  CHECK(query_error("wait=") == error_code::invalid_query);
  CHECK(query_error("wait") == error_code::invalid_query);
  CHECK(query_error("wait=-1") == error_code::invalid_query);
  CHECK(query_error("wait=1.5") == error_code::invalid_query);
  CHECK(query_error("wait=abc") == error_code::invalid_query);
  CHECK(query_error("wait=%zz") == error_code::invalid_query);
  CHECK(query_error("limit=0") == error_code::invalid_query);
  CHECK(query_error("cursor=") == error_code::invalid_cursor);
  CHECK(query_error("cursor=garbage") == error_code::invalid_cursor);
  CHECK(query_error("cursor=ep:01") == error_code::invalid_cursor);
  CHECK(query_error("cursor=%zz") == error_code::invalid_cursor);
  CHECK(query_error("cursor=" + std::string(20000, 'a')) ==
        error_code::invalid_cursor);
}

TEST_CASE("long-poll answers are arrays S0's client reads", "[protocol]") {
  CHECK(encode_longpoll_events({}) == "[]");
  auto completed = run_event(
      "completed", R"({"status":"success","duration_seconds":180})", 6);
  auto failed = run_event("pipeline.failed", R"({"status":"failed"})", 7);
  auto task = run_event("pipeline", "{}", 5);
  task.event = "task_completed";
  CHECK(
      encode_longpoll_events({completed}) ==
      R"([{"event_type":"completed","type":"pipeline.completed","run_id":"950e8400-e29b-41d4-a716-446655440004","timestamp":"2024-01-26T10:03:00Z","payload":{"status":"success","duration_seconds":180},"cursor":"ep:6"}])");
  auto arr =
      nlohmann::json::parse(encode_longpoll_events({task, completed, failed}));
  REQUIRE(arr.is_array());
  REQUIRE(arr.size() == 3);
  CHECK(arr[0]["event_type"] == "task_completed");
  CHECK(arr[0]["type"] == "pipeline.task_completed");
  CHECK(arr[1]["event_type"] == "completed");
  CHECK(arr[2]["event_type"] == "failed");
  CHECK(arr[2]["type"] == "pipeline.failed");
  CHECK(arr[2]["cursor"] == "ep:7");
  CHECK(longpoll_run_room("r1")->str() == "run:r1");
  CHECK_FALSE(longpoll_run_room("a/b"));
  CHECK_FALSE(longpoll_run_room(""));
}
