#include "protocol/dialect_s3.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace tidings::protocol;
using ojson = nlohmann::ordered_json;

namespace {

constexpr std::int64_t t0 = 1704067200123;         // 2024-01-01T00:00:00.123Z
constexpr std::int64_t t_modified = 1705312800000; // 2024-01-15T10:00:00Z

publication op_event(std::string type, std::string data) {
  publication p;
  p.room = *parse_room_id("operation:abc123-operation-id");
  p.type = std::move(type);
  p.data = std::move(data);
  p.offset = 3;
  p.epoch = "ep";
  p.timestamp_ms = t0;
  return p;
}

scan_error expect_scan_error(std::string_view text) {
  auto c = decode_s3_scan(text);
  INFO(text);
  REQUIRE(std::holds_alternative<scan_error>(c));
  return std::get<scan_error>(c);
}

std::string resolved(std::string_view root, std::string_view path) {
  auto r = resolve_scan_path(root, path);
  INFO(root << " + " << path);
  REQUIRE(std::holds_alternative<std::string>(r));
  return std::get<std::string>(r);
}

scan_error refused(std::string_view root, std::string_view path) {
  auto r = resolve_scan_path(root, path);
  INFO(root << " + " << path);
  REQUIRE(std::holds_alternative<scan_error>(r));
  return std::get<scan_error>(r);
}

} // namespace

TEST_CASE("S3 operation events carry envelope and flat fields", "[protocol]") {
  SECTION("S3's operation_started example, both shapes") {
    auto pub = op_event(
        "operation_started",
        R"({"operation_id":"abc123-operation-id","operation_type":"index","total_files":42})");
    CHECK(
        encode_s3_event(pub) ==
        R"({"type":"operation_started","timestamp":"2024-01-01T00:00:00.123Z","data":{"operation_id":"abc123-operation-id","operation_type":"index","total_files":42},"operation_id":"abc123-operation-id","operation_type":"index","total_files":42})");
    CHECK(
        encode_s3_event(pub, s3_shape::enveloped) ==
        R"({"type":"operation_started","timestamp":"2024-01-01T00:00:00.123Z","data":{"operation_id":"abc123-operation-id","operation_type":"index","total_files":42}})");
  }
  SECTION("S3's file_processing example: flat readers see their fields") {
    auto frame = ojson::parse(encode_s3_event(op_event(
        "file_processing",
        R"({"current_file":"/documents/report.pdf","processed_files":10,"total_files":42,"status":"Processing"})")));
    CHECK(frame["type"] == "file_processing");
    CHECK(frame["current_file"] == "/documents/report.pdf");
    CHECK(frame["processed_files"] == 10);
    CHECK(frame["data"]["total_files"] == 42);
  }
  SECTION("a payload can not overwrite the envelope") {
    auto frame = ojson::parse(encode_s3_event(op_event(
        "operation_started",
        R"({"type":"index","timestamp":"x","data":1,"status":"processing"})")));
    CHECK(frame["type"] == "operation_started");
    CHECK(frame["timestamp"] == "2024-01-01T00:00:00.123Z");
    CHECK(frame["data"]["type"] == "index");
    CHECK(frame["status"] == "processing");
    // One key each: no duplicates that a parser would resolve either way.
    CHECK(
        encode_s3_event(op_event(
            "x",
            R"({"type":"index","timestamp":"x","data":1,"status":"p"})")) ==
        R"({"type":"x","timestamp":"2024-01-01T00:00:00.123Z","data":{"type":"index","timestamp":"x","data":1,"status":"p"},"status":"p"})");
  }
  SECTION("non-object payloads stay under data only") {
    CHECK(
        encode_s3_event(op_event("tick", "[1,2]")) ==
        R"({"type":"tick","timestamp":"2024-01-01T00:00:00.123Z","data":[1,2]})");
    auto sub = op_event("execution_update", "{}");
    sub.event = "status_changed";
    CHECK(ojson::parse(encode_s3_event(sub))["type"] ==
          "execution_update.status_changed");
  }
}

TEST_CASE("S3 current_state, status_update, pong and errors", "[protocol]") {
  auto room = *s3_operation_room("abc123-operation-id");
  CHECK(room.str() == "operation:abc123-operation-id");
  CHECK(s3_operation_room("x", "index")->str() == "index:x");
  CHECK_FALSE(s3_operation_room("a/b"));
  CHECK_FALSE(s3_operation_room(""));

  CHECK(
      encode_s3_current_state(
          room, {"ep", 5},
          R"({"status":"processing","kind":"index","error":null})", t0) ==
      R"({"type":"current_state","timestamp":"2024-01-01T00:00:00.123Z","data":{"status":"processing","kind":"index","error":null,"operation_type":"index","error_message":null},"operation_id":"abc123-operation-id","offset":5,"epoch":"ep"})");
  auto failed = ojson::parse(encode_s3_current_state(
      room, {"ep", 5}, R"({"status":"failed","error":"disk full"})", t0));
  CHECK(failed["data"]["error_message"] == "disk full");
  CHECK(failed["data"]["operation_type"].is_null());
  auto garbage =
      ojson::parse(encode_s3_current_state(room, {"ep", 0}, "{", t0));
  CHECK(garbage["data"].is_object());

  CHECK(
      encode_s3_status_update("completed", t0) ==
      R"({"type":"status_update","timestamp":"2024-01-01T00:00:00.123Z","data":{"status":"completed"}})");
  CHECK(encode_s3_pong(t0) ==
        R"({"type":"pong","timestamp":"2024-01-01T00:00:00.123Z"})");
  CHECK(
      encode_s3_error(error_code::internal, t0) ==
      R"({"type":"error","timestamp":"2024-01-01T00:00:00.123Z","data":{"message":"Internal error"},"message":"Internal error"})");

  SECTION("terminal statuses come from the payload, not the type") {
    CHECK(
        s3_terminal_status(op_event(
            "operation_completed",
            R"({"operation_id":"abc123-operation-id","status":"completed","message":"Operation completed successfully"})")) ==
        std::optional<std::string>{"completed"});
    CHECK(s3_terminal_status(
              op_event("status_update", R"({"status":"failed"})")) ==
          std::optional<std::string>{"failed"});
    CHECK_FALSE(s3_terminal_status(op_event(
        "file_completed", R"({"processed_files":11,"total_files":42})")));
    CHECK_FALSE(s3_terminal_status(
        op_event("scanning_completed", R"({"status":"scanning_completed"})")));
    CHECK_FALSE(s3_terminal_status(
        op_event("file_processing", R"({"status":"Processing"})")));
    CHECK_FALSE(
        s3_terminal_status(op_event("status_update", R"({"status":1})")));
    CHECK_FALSE(s3_terminal_status(op_event("x", "not json")));
  }
  SECTION("client frames: ping answered, the rest ignored") {
    CHECK(decode_s3_operation_message(R"({"type":"ping"})") ==
          s3_client_frame::ping);
    CHECK(decode_s3_operation_message(R"({"type":"pong"})") ==
          s3_client_frame::ignored);
    CHECK(decode_s3_operation_message(R"({"type":["ping"]})") ==
          s3_client_frame::ignored);
    CHECK(decode_s3_operation_message("ping") == s3_client_frame::ignored);
    CHECK(decode_s3_operation_message(std::string(1000, '[')) ==
          s3_client_frame::ignored);
  }
  SECTION("connection limits close with S3's reasons") {
    CHECK_FALSE(s3_admit(9, 99));
    CHECK(s3_admit(10, 0) == close_reason::user_connection_limit);
    CHECK(s3_admit(0, 100) == close_reason::operation_connection_limit);
    CHECK(s3_admit(2, 2, {2, 5}) == close_reason::user_connection_limit);
    const auto& user = describe(close_reason::user_connection_limit);
    CHECK(static_cast<unsigned>(user.code) == 1008);
    CHECK(user.reason == "User connection limit exceeded");
    CHECK(describe(close_reason::operation_forbidden).reason ==
          "You don't have access to this operation");
    CHECK(static_cast<unsigned>(
              describe(close_reason::operation_completed).code) == 1000);
  }
}

TEST_CASE("S3 scan messages decode", "[protocol]") {
  auto start = decode_s3_scan(
      R"({"action":"scan","path":"/path/to/directory","recursive":true})");
  REQUIRE(std::holds_alternative<s3_scan_start>(start));
  CHECK(std::get<s3_scan_start>(start).path == "/path/to/directory");
  CHECK(std::get<s3_scan_start>(start).recursive);
  auto flat =
      decode_s3_scan(R"({"action":"scan","path":"docs","recursive":false})");
  REQUIRE(std::holds_alternative<s3_scan_start>(flat));
  CHECK_FALSE(std::get<s3_scan_start>(flat).recursive);
  auto dflt = decode_s3_scan(R"({"action":"scan","path":"docs"})");
  REQUIRE(std::holds_alternative<s3_scan_start>(dflt));
  CHECK(std::get<s3_scan_start>(dflt).recursive);
  CHECK(std::holds_alternative<s3_scan_cancel>(
      decode_s3_scan(R"({"action":"cancel"})")));

  CHECK(expect_scan_error("{") == scan_error::invalid_message);
  CHECK(expect_scan_error("[]") == scan_error::invalid_message);
  CHECK(expect_scan_error(R"({"path":"/x"})") == scan_error::invalid_message);
  CHECK(expect_scan_error(R"({"action":"delete"})") ==
        scan_error::invalid_message);
  CHECK(expect_scan_error(R"({"action":1})") == scan_error::invalid_message);
  CHECK(expect_scan_error(R"({"action":"scan"})") == scan_error::path_required);
  CHECK(expect_scan_error(R"({"action":"scan","path":null})") ==
        scan_error::path_required);
  CHECK(expect_scan_error(R"({"action":"scan","path":""})") ==
        scan_error::path_required);
  CHECK(expect_scan_error(R"({"action":"scan","path":["/x"]})") ==
        scan_error::invalid_message);
  CHECK(
      expect_scan_error(R"({"action":"scan","path":"/x","recursive":"yes"})") ==
      scan_error::invalid_message);
  CHECK(expect_scan_error(R"({"action":"scan","path":"/x\u0000y"})") ==
        scan_error::path_not_allowed);
  CHECK(expect_scan_error(R"({"action":"scan","path":")" +
                          std::string(max_scan_path_size + 1, 'a') + "\"}") ==
        scan_error::path_not_allowed);
  CHECK(expect_scan_error(std::string(100, '{')) ==
        scan_error::invalid_message);
}

TEST_CASE("S3 scan frames have the bytes of S3's examples", "[protocol]") {
  CHECK(
      encode_s3_scan_progress(100, 500, "/documents/subfolder/file.txt") ==
      R"({"type":"progress","scanned":100,"total":500,"current_path":"/documents/subfolder/file.txt"})");
  CHECK(
      encode_s3_scan_completed(
          {{"/documents/file1.pdf", 1024000, t_modified,
            scan_extension("/documents/file1.pdf")}},
          42, 52428800, {scan_permission_warning("/documents/private")}) ==
      R"({"type":"completed","files":[{"path":"/documents/file1.pdf","size":1024000,"modified":"2024-01-15T10:00:00Z","extension":".pdf"}],"count":42,"total_size":52428800,"warnings":["Permission denied: /documents/private"]})");
  CHECK(
      encode_s3_scan_error(scan_error::not_found) ==
      R"({"type":"error","message":"Failed to scan directory: Directory not found"})");
  CHECK(
      encode_s3_scan_completed({}, 0, 0, {}) ==
      R"({"type":"completed","files":[],"count":0,"total_size":0,"warnings":[]})");
  SECTION("every scan error has its own non-empty message") {
    for (int i = 0; i <= static_cast<int>(scan_error::internal); ++i) {
      auto m = describe(static_cast<scan_error>(i));
      CHECK_FALSE(m.empty());
      for (int j = 0; j < i; ++j)
        CHECK(describe(static_cast<scan_error>(j)) != m);
    }
  }
  SECTION("file names that are not UTF-8 still make a valid frame") {
    auto frame = encode_s3_scan_progress(1, 2, "/d/bad\xff\xfe.txt");
    auto j = nlohmann::json::parse(frame, nullptr, false);
    REQUIRE_FALSE(j.is_discarded());
    CHECK(j["current_path"] == "/d/bad\xEF\xBF\xBD\xEF\xBF\xBD.txt");
    auto ok = nlohmann::json::parse(
        encode_s3_scan_progress(1, 2, "/d/caf\xc3\xa9\xf0\x9f\x93\x84"));
    CHECK(ok["current_path"] == "/d/caf\xc3\xa9\xf0\x9f\x93\x84");
    for (std::string_view bad :
         {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"}) {
      auto j2 = nlohmann::json::parse(
          encode_s3_scan_progress(0, 0, std::string{bad}), nullptr, false);
      CHECK_FALSE(j2.is_discarded());
    }
  }
  CHECK(scan_extension("/a/b.tar.gz") == ".gz");
  CHECK(scan_extension("/a/.bashrc").empty());
  CHECK(scan_extension("/a/file.").empty());
  CHECK(scan_extension("/a.d/file").empty());
  CHECK(scan_extension("README").empty());
}

TEST_CASE("scan paths stay inside the root", "[protocol]") {
  SECTION("relative and absolute paths inside") {
    CHECK(resolved("/documents", "sub") == "/documents/sub");
    CHECK(resolved("/documents", "./sub//x/") == "/documents/sub/x");
    CHECK(resolved("/documents", "a/../b") == "/documents/b");
    CHECK(resolved("/documents", ".") == "/documents");
    CHECK(resolved("/documents", "/documents") == "/documents");
    CHECK(resolved("/documents", "/documents/sub/./y") == "/documents/sub/y");
    CHECK(resolved("/documents/", "//documents//sub") == "/documents/sub");
    CHECK(resolved("/srv/../documents", "x") == "/documents/x");
    CHECK(resolved("/", "etc") == "/etc");
    CHECK(resolved("/", "/etc/x") == "/etc/x");
    CHECK(resolved("/documents", "..hidden") == "/documents/..hidden");
  }
  SECTION("escapes are refused") {
    CHECK(refused("/documents", "..") == scan_error::path_not_allowed);
    CHECK(refused("/documents", "../etc") == scan_error::path_not_allowed);
    CHECK(refused("/documents", "a/../../etc") == scan_error::path_not_allowed);
    CHECK(refused("/documents", "a/../../documents/x") ==
          scan_error::path_not_allowed);
    CHECK(refused("/documents", "/etc/passwd") == scan_error::path_not_allowed);
    CHECK(refused("/documents", "/documents2") == scan_error::path_not_allowed);
    CHECK(refused("/documents", "/documents/../etc") ==
          scan_error::path_not_allowed);
    CHECK(refused("/documents", "/") == scan_error::path_not_allowed);
    CHECK(refused("/", "..") == scan_error::path_not_allowed);
    CHECK(refused("/documents", std::string("a\0b", 3)) ==
          scan_error::path_not_allowed);
    CHECK(refused("relative/root", "x") == scan_error::path_not_allowed);
    CHECK(refused("", "x") == scan_error::path_not_allowed);
    CHECK(refused("/documents", std::string(max_scan_path_size + 1, 'a')) ==
          scan_error::path_not_allowed);
    CHECK(refused("/documents", "") == scan_error::path_required);
  }
}
