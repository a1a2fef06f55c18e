#include "protocol/sse.hpp"

#include <catch2/catch.hpp>

using namespace tidings::protocol;

namespace {

constexpr std::int64_t t_progress = 1706263290000; // 2024-01-26T10:01:30Z

} // namespace

TEST_CASE("SSE event blocks", "[protocol]") {
  CHECK(encode_sse_event("pipeline.progress", "ep:7", R"({"progress":45})") ==
        "event: pipeline.progress\nid: ep:7\ndata: {\"progress\":45}\n\n");
  CHECK(encode_sse_event({}, {}, "x") == "data: x\n\n");
  CHECK(encode_sse_event("a", {}, "") == "event: a\ndata: \n\n");

  SECTION("multi-line data gets one data field per line") {
    CHECK(encode_sse_event("e", "1", "a\nb") ==
          "event: e\nid: 1\ndata: a\ndata: b\n\n");
    CHECK(encode_sse_event("e", {}, "a\r\nb\rc\n") ==
          "event: e\ndata: a\ndata: b\ndata: c\ndata: \n\n");
    CHECK(encode_sse_event("e", {}, "\n\n") ==
          "event: e\ndata: \ndata: \ndata: \n\n");
  }
  SECTION("names and ids can not inject fields or events") {
    auto block =
        encode_sse_event("x\n\ndata: evil\nevent: y", "1\r\nid: 2\0", "ok");
    CHECK(block == "event: xdata: evilevent: y\nid: 1id: 2\ndata: ok\n\n");
    std::string nul_id("a\0b", 3);
    CHECK(encode_sse_event("e", nul_id, "d") ==
          "event: e\nid: ab\ndata: d\n\n");
    // Exactly one blank line, at the end: one event.
    CHECK(block.find("\n\n") == block.size() - 2);
  }
  SECTION("comments and retry") {
    CHECK(encode_sse_comment("keepalive") == ": keepalive\n\n");
    CHECK(encode_sse_comment("a\nevent: x\r") == ": a event: x \n\n");
    CHECK(encode_sse_comment("") == ": \n\n");
    CHECK(encode_sse_retry(5000) == "retry: 5000\n\n");
  }
}

TEST_CASE("S0 SSE events name the event and send the payload", "[protocol]") {
  publication p;
  p.room = *parse_room_id("pipeline:850e8400-e29b-41d4-a716-446655440003");
  p.type = "progress";
  p.data = R"({"run_id":"950e","progress":45})";
  p.offset = 12;
  p.epoch = "3f9a0c1d2e4b5a69";
  p.timestamp_ms = t_progress;
  CHECK(encode_s0_sse_event(p) ==
        "event: pipeline.progress\nid: 3f9a0c1d2e4b5a69:12\n"
        "data: {\"run_id\":\"950e\",\"progress\":45}\n\n");
  CHECK(encode_s0_sse_event(p, "pipeline:a=e:1,system:all=e:2") ==
        "event: pipeline.progress\nid: pipeline:a=e:1,system:all=e:2\n"
        "data: {\"run_id\":\"950e\",\"progress\":45}\n\n");
  p.type = "pipeline.completed";
  CHECK(encode_s0_sse_event(p).rfind("event: pipeline.completed\n", 0) == 0);
}
