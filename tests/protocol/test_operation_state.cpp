#include "protocol/operation_state.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace tidings::protocol;
using json = nlohmann::json;

namespace {

publication event(const std::string& type, const std::string& data,
                  std::int64_t ts = 1704067200000) {
  publication p;
  p.room = *parse_room_id("index:op1");
  p.type = type;
  p.data = data;
  p.timestamp_ms = ts;
  return p;
}

} // namespace

TEST_CASE("default reducer folds the seeds' operation events", "[protocol]") {
  default_reducer r;
  operation_info op{"op1", "index", "alice", R"({"source":"/docs"})", 0};
  auto s = r.initial(op);
  CHECK(json::parse(s)["status"] == "pending");
  CHECK(json::parse(s)["meta"]["source"] == "/docs");
  s = r.apply(s, event("operation_started", R"({"total_files":40})"));
  s = r.apply(
      s,
      event(
          "file_processing",
          R"({"current_file":"/a.pdf","processed_files":10,"total_files":40,"status":"Processing"})"));
  auto j = json::parse(s);
  CHECK(j["status"] == "Processing");
  CHECK(j["progress"]["completed"] == 10);
  CHECK(j["progress"]["total"] == 40);
  CHECK(j["progress"]["percent"] == Approx(25.0));
  CHECK(j["current_step"] == "/a.pdf");
  CHECK(j["events"] == 2);
  CHECK(j["terminal"] == false);
  s = r.apply(
      s, event("operation_completed",
               R"({"status":"completed","message":"done","result":{"n":40}})",
               1704067260000));
  j = json::parse(s);
  CHECK(j["status"] == "completed");
  CHECK(j["terminal"] == true);
  CHECK(j["message"] == "done");
  CHECK(j["result"]["n"] == 40);
  CHECK(j["updated_at"] == "2024-01-01T00:01:00.000Z");
  // Terminal is kept: a late event is counted but changes nothing else.
  s = r.apply(s, event("file_processing", R"({"status":"Processing"})"));
  j = json::parse(s);
  CHECK(j["status"] == "completed");
  CHECK(j["events"] == 4);
}

TEST_CASE("errors, S1 progress and S4 terminal states", "[protocol]") {
  default_reducer r;
  auto s = r.initial({"e1", "execution", "bob", "{}", 0});
  s = r.apply(
      s,
      event(
          "execution_update",
          R"({"status":"running","progress_percentage":45.5,"completed_nodes":3,"total_nodes":7,"current_node":"node-3"})"));
  auto j = json::parse(s);
  CHECK(j["progress"]["percent"] == 45.5); // given wins over computed
  CHECK(j["current_step"] == "node-3");
  auto f = r.apply(s, event("error", R"({"message":"Permission denied"})"));
  j = json::parse(f);
  CHECK(j["status"] == "failed");
  CHECK(j["error"] == "Permission denied");
  CHECK(j["terminal"] == true);
  for (const char* st :
       {"DELIVERED", "BLOCKED", "ABORTED", "cancelled", "Canceled"}) {
    INFO(st);
    CHECK(terminal_status(st));
  }
  CHECK_FALSE(terminal_status("PROCESSING"));
  // Garbage in, a valid object out.
  auto g = r.apply("not json", event("x", "[1,2]"));
  CHECK(json::parse(g).is_object());
}

TEST_CASE("current_state frame golden bytes", "[protocol]") {
  CHECK(
      encode_current_state(*parse_room_id("index:op1"), {"ep", 4},
                           R"({"status":"pending"})", 1704067200123) ==
      R"({"type":"current_state","room_id":"index:op1","offset":4,"epoch":"ep","data":{"status":"pending"},"timestamp":"2024-01-01T00:00:00.123Z"})");
}

TEST_CASE("step events never end an operation, terminal types do",
          "[protocol]") {
  default_reducer r;
  auto fresh = r.initial({"op1", "operation", "alice", "{}", 0});
  auto status_after = [&](const std::string& type,
                          const std::string& data = "{}") {
    return json::parse(r.apply(fresh, event(type, data)))["status"];
  };
  SECTION("S3 per-file and per-stage events keep it running") {
    for (const char* t :
         {"file_completed", "scanning_completed", "document_processed",
          "pipeline.task_completed", "pipeline.task_failed", "file_failed",
          "validation_complete"}) {
      INFO(t);
      CHECK(status_after(t) == "pending");
    }
    auto s =
        r.apply(fresh, event("file_completed",
                             R"({"processed_files":11,"total_files":42})"));
    s = r.apply(s, event("file_processing", R"({"status":"Processing"})"));
    CHECK(json::parse(s)["status"] == "Processing");
    CHECK(json::parse(s)["terminal"] == false);
  }
  SECTION("exact terminal types and operation subjects end it") {
    CHECK(status_after("completed") == "completed");
    CHECK(status_after("failed") == "failed");
    CHECK(status_after("cancelled") == "cancelled");
    CHECK(status_after("operation_completed") == "completed");
    CHECK(status_after("operation_failed") == "failed");
    CHECK(status_after("pipeline.completed") == "completed");
    CHECK(status_after("pipeline.failed") == "failed");
    CHECK(status_after("job:completed") == "completed");
    CHECK(status_after("job:error") == "failed");
    CHECK(status_after("index_completed") == "completed");
    CHECK(status_after("error") == "failed");
  }
  SECTION("the payload's status wins over the type") {
    CHECK(status_after("operation_completed", R"({"status":"failed"})") ==
          "failed");
    CHECK(status_after("file_completed", R"({"status":"completed"})") ==
          "completed");
  }
}
