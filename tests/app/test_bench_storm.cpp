#include "app/bench_storm.hpp"

#include <catch2/catch.hpp>

using namespace tidings::app::bench;

TEST_CASE("the native cursor comes from epoch and offset", "[app]") {
  SECTION("event and confirmation frames") {
    auto c = scan_cursor(
        R"({"type":"bench","room_id":"bench:0","offset":7,"epoch":"5f0c",)"
        R"("data":{"seq":1,"room":"bench:0","sent_ns":9}})");
    REQUIRE(c);
    CHECK(c->epoch == "5f0c");
    CHECK(c->offset == 7);
    auto s = scan_cursor(R"({"type":"subscription","event":"subscribed",)"
                         R"("room_id":"bench:0","epoch" : "e1","offset": 0})");
    REQUIRE(s);
    CHECK(s->epoch == "e1");
    CHECK(s->offset == 0);
  }
  SECTION("incomplete or malformed") {
    CHECK_FALSE(scan_cursor(R"({"offset":7})"));
    CHECK_FALSE(scan_cursor(R"({"epoch":"e"})"));
    CHECK_FALSE(scan_cursor(R"({"epoch":7,"offset":7})"));
    CHECK_FALSE(scan_cursor(R"({"epoch":"e","offset":"7"})"));
    CHECK_FALSE(scan_cursor(R"({"epoch":"e","offset":-1})"));
    CHECK_FALSE(scan_cursor(R"({"epoch":"e\"x","offset":1})"));
    CHECK_FALSE(scan_cursor(R"({"epoch":"e","offset":)"));
    CHECK_FALSE(scan_cursor(""));
  }
}

// One room unless said otherwise: event s is the room's s-th event.
TEST_CASE("catch-up after a storm", "[app]") {
  constexpr std::uint64_t ms = 1'000'000;
  SECTION("a replay in order catches up at its last event") {
    catchup_tracker t(2, 1, 10);
    for (std::uint64_t s = 0; s < 4; ++s) {
      t.record(0, s, 1 * ms);
      t.record(1, s, 1 * ms);
    }
    // Drop at 10 ms after 6 events were sent; sub 0 back at 20 ms.
    t.resubscribed(0, 20 * ms, 6);
    t.record(0, 4, 21 * ms);
    t.record(0, 5, 22 * ms); // now holds everything sent before 20 ms
    t.record(0, 6, 30 * ms); // live, in order: no hole, no change
    t.resubscribed(1, 25 * ms, 7);
    for (std::uint64_t s = 4; s < 7; ++s)
      t.record(1, s, 26 * ms);
    for (std::uint64_t s = 7; s < 10; ++s) {
      t.record(0, s, 40 * ms);
      t.record(1, s, 40 * ms);
    }
    auto r = t.summarize(10);
    CHECK(r.tracked == 2);
    CHECK(r.caught_up == 2);
    REQUIRE(r.last_caught_up_ns);
    CHECK(*r.last_caught_up_ns == 26 * ms);
  }
  SECTION("already complete when resubscribed") {
    catchup_tracker t(1, 1, 3);
    t.record(0, 0, 1 * ms);
    t.resubscribed(0, 5 * ms, 1);
    t.record(0, 1, 6 * ms);
    t.record(0, 2, 7 * ms);
    auto r = t.summarize(3);
    REQUIRE(r.last_caught_up_ns);
    CHECK(*r.last_caught_up_ns == 5 * ms);
  }
  SECTION("arrival order does not matter, only what is held") {
    // Concurrent publishers commit out of sequence order: no gap.
    catchup_tracker t(1, 1, 6);
    t.resubscribed(0, 10 * ms, 3); // needs 0, 1 and 2
    t.record(0, 2, 11 * ms);
    t.record(0, 0, 12 * ms);
    t.record(0, 1, 13 * ms); // caught up here
    t.record(0, 4, 14 * ms); // a later event ahead of 3: not a backlog
    t.record(0, 3, 15 * ms);
    t.record(0, 5, 16 * ms);
    auto r = t.summarize(6);
    REQUIRE(r.last_caught_up_ns);
    CHECK(*r.last_caught_up_ns == 13 * ms);
    CHECK(r.caught_up == 1);
  }
  SECTION("a lost event is never caught up") {
    catchup_tracker t(1, 1, 4);
    t.resubscribed(0, 10 * ms, 0);
    t.record(0, 0, 11 * ms);
    t.record(0, 2, 12 * ms);
    t.record(0, 3, 13 * ms);
    auto r = t.summarize(4);
    CHECK(r.tracked == 1);
    CHECK(r.caught_up == 0);
    CHECK_FALSE(r.last_caught_up_ns);
  }
  SECTION("a subscriber that gets nothing after resubscribing") {
    catchup_tracker t(1, 1, 4);
    t.record(0, 0, 1 * ms);
    t.record(0, 1, 1 * ms);
    t.resubscribed(0, 10 * ms, 2); // ok at once...
    auto r = t.summarize(4);       // ...but events 2 and 3 never came
    CHECK(r.caught_up == 0);
    CHECK_FALSE(r.last_caught_up_ns);
  }
  SECTION("a refused publish no longer holds anyone back") {
    catchup_tracker t(2, 1, 3);
    t.resubscribed(0, 10 * ms, 3);
    t.resubscribed(1, 10 * ms, 3);
    t.record(0, 0, 11 * ms);
    t.record(0, 2, 12 * ms);
    t.record(1, 0, 11 * ms);
    t.record(1, 2, 12 * ms);
    t.forget(1, 20 * ms);
    auto r = t.summarize(3);
    CHECK(r.caught_up == 2);
    REQUIRE(r.last_caught_up_ns);
    CHECK(*r.last_caught_up_ns == 20 * ms);
  }
  SECTION("rooms: each subscriber needs its own room's events only") {
    // Two rooms: sub 0 gets events 0, 2, 4; sub 1 gets 1, 3.
    catchup_tracker t(2, 2, 5);
    t.resubscribed(0, 10 * ms, 5);
    t.resubscribed(1, 10 * ms, 5);
    for (std::uint64_t s : {0, 2, 4})
      t.record(0, s, (11 + s) * ms);
    t.record(1, 1, 12 * ms);
    t.record(1, 3, 13 * ms);
    t.record(1, 2, 14 * ms); // misrouted: ignored
    auto r = t.summarize(5);
    CHECK(r.caught_up == 2);
    REQUIRE(r.last_caught_up_ns);
    CHECK(*r.last_caught_up_ns == 15 * ms);
  }
  SECTION("subscribers that never resubscribed are not tracked") {
    catchup_tracker t(3, 1, 1);
    t.resubscribed(1, 10 * ms, 0);
    t.record(1, 0, 11 * ms);
    auto r = t.summarize(1);
    CHECK(r.tracked == 1);
    CHECK(r.caught_up == 1);
  }
}
