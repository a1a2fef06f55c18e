#include "protocol/publish_request.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace tidings::protocol;

namespace {

request_error refused(std::string_view body) {
  auto r = parse_publish_request(body);
  INFO(body);
  REQUIRE(std::holds_alternative<request_error>(r));
  return std::get<request_error>(r);
}

} // namespace

TEST_CASE("publish bodies are validated once", "[protocol]") {
  auto ok = parse_publish_request(
      R"({"room_id":"execution:e1","type":"node_update","event":"status_changed","data":{"b":1,  "a":[1,2]},"publish_id":"p-1"})");
  REQUIRE(std::holds_alternative<publish_request>(ok));
  auto& req = std::get<publish_request>(ok);
  CHECK(req.room.str() == "execution:e1");
  CHECK(req.type == "node_update");
  CHECK(req.event == "status_changed");
  CHECK(req.data == R"({"b":1,"a":[1,2]})"); // compact, key order kept
  CHECK(req.publish_id == "p-1");
  auto scalar =
      parse_publish_request(R"({"room_id":"a:b","type":"t","data":5})");
  REQUIRE(std::holds_alternative<publish_request>(scalar));
  CHECK(std::get<publish_request>(scalar).data == "5");

  CHECK(refused("nope").code == error_code::invalid_json);
  CHECK(refused("[]").code == error_code::invalid_message);
  CHECK(refused(R"({"type":"t","data":1})").code == error_code::missing_field);
  CHECK(refused(R"({"room_id":"bad","type":"t","data":1})").code ==
        error_code::invalid_room);
  CHECK(refused(R"({"room_id":"a:b","data":1})").code ==
        error_code::missing_field);
  CHECK(refused(R"({"room_id":"a:b","type":"","data":1})").code ==
        error_code::missing_field);
  CHECK(refused(R"({"room_id":"a:b","type":"t"})").code ==
        error_code::missing_field);
  CHECK(refused(R"({"room_id":"a:b","type":"error","data":1})").code ==
        error_code::invalid_message);
  CHECK(refused(R"({"room_id":"a:b","type":"a b","data":1})").code ==
        error_code::invalid_message);
  CHECK(refused(R"({"room_id":"a:b","type":"t","event":3,"data":1})").code ==
        error_code::missing_field);
  std::string long_type(65, 't');
  CHECK(refused(R"({"room_id":"a:b","type":")" + long_type + R"(","data":1})")
            .code == error_code::invalid_message);
}

TEST_CASE("HTTP error bodies name the code", "[protocol]") {
  auto body =
      nlohmann::json::parse(encode_http_error(error_code::unauthorized, "x"));
  CHECK(body["error_code"] == "UNAUTHORIZED");
  CHECK(body["detail"] == "x");
  CHECK(describe(error_code::unauthorized).http_status == 401);
}
