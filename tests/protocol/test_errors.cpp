#include "protocol/errors.hpp"

#include <catch2/catch.hpp>

#include <set>
#include <string>

using namespace tidings::protocol;

TEST_CASE("every error code has one distinct entry", "[protocol]") {
  std::set<std::string> names;
  for (auto* e = error_table_begin(); e != error_table_end(); ++e) {
    CHECK(&describe(e->code) == e);
    CHECK(names.insert(std::string{e->name}).second);
    CHECK(!e->message.empty());
    CHECK(e->http_status >= 400);
    CHECK(e->http_status < 600);
  }
  CHECK(describe(error_code::access_denied).message == "Access denied to room");
}

TEST_CASE("close reasons fit a close frame", "[protocol]") {
  std::set<std::string> names;
  for (auto* c = close_table_begin(); c != close_table_end(); ++c) {
    CHECK(names.insert(std::string{c->name}).second);
    CHECK(c->reason.size() <= 123); // RFC 6455 control frame limit
    auto code = static_cast<unsigned>(c->code);
    CHECK(((code >= 1000 && code <= 1014) || (code >= 4000 && code <= 4999)));
  }
  CHECK(static_cast<unsigned>(describe(close_reason::auth_timeout).code) ==
        1008);
  CHECK(static_cast<unsigned>(describe(close_reason::slow_consumer).code) ==
        4001);
}
