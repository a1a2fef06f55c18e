#include "app/bench_source.hpp"

#include <catch2/catch.hpp>

using namespace tidings::app::bench;

TEST_CASE("connections spread over 127.0.0.x beyond one address", "[app]") {
  source_plan plan;
  SECTION("few connections: no binding, as before") {
    REQUIRE_FALSE(plan_sources(20'000, 28'232, 20'000, &plan));
    CHECK(plan.per_address == 0);
    CHECK(plan.addresses == 1);
    CHECK_FALSE(plan.address_for(0));
    CHECK_FALSE(plan.address_for(19'999));
  }
  SECTION("50,000 connections take three addresses") {
    REQUIRE_FALSE(plan_sources(50'004, 28'232, 20'000, &plan));
    CHECK(plan.per_address == 20'000);
    CHECK(plan.addresses == 3);
    CHECK(*plan.address_for(0) == 0x7f000001);
    CHECK(*plan.address_for(19'999) == 0x7f000001);
    CHECK(*plan.address_for(20'000) == 0x7f000002);
    CHECK(*plan.address_for(50'003) == 0x7f000003);
    CHECK(ipv4_text(*plan.address_for(40'000)) == "127.0.0.3");
  }
  SECTION("a small port range caps the share per address") {
    REQUIRE_FALSE(plan_sources(2'500, 1'000, 20'000, &plan));
    CHECK(plan.per_address == 1'000);
    CHECK(plan.addresses == 3);
  }
  SECTION("addresses carry over into the next octet") {
    REQUIRE_FALSE(plan_sources(1'000, 28'232, 1, &plan));
    CHECK(ipv4_text(*plan.address_for(255)) == "127.0.1.0");
    CHECK(ipv4_text(*plan.address_for(999)) == "127.0.3.232");
  }
  SECTION("impossible plans are errors") {
    CHECK(plan_sources(10, 0, 20'000, &plan));
    CHECK(plan_sources(100'000'000, 1, 1, &plan));
  }
}
