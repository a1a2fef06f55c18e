#include "app/bench_sio.hpp"

#include <catch2/catch.hpp>

using namespace tidings::app::bench::sio;

// Frames as a Socket.IO 4.8 server writes them (captured from one).
TEST_CASE("Engine.IO and Socket.IO packets are classified", "[app]") {
  SECTION("Engine.IO") {
    CHECK(parse(R"(0{"sid":"a","upgrades":[],"pingInterval":25000,)"
                R"("pingTimeout":20000,"maxPayload":1000000})")
              .kind == packet_kind::eio_open);
    CHECK(parse("1").kind == packet_kind::eio_close);
    CHECK(parse("2").kind == packet_kind::eio_ping);
    CHECK(parse("6").kind == packet_kind::eio_noop);
    CHECK(parse("").kind == packet_kind::invalid);
    CHECK(parse("x").kind == packet_kind::invalid);
    CHECK(parse("4").kind == packet_kind::other);
  }
  SECTION("CONNECT ack with and without a pid") {
    auto plain = parse(R"(40{"sid":"Yx3_BcEtcQ4hNZHcAAAB"})");
    CHECK(plain.kind == packet_kind::connect);
    CHECK(plain.sid == "Yx3_BcEtcQ4hNZHcAAAB");
    CHECK(plain.pid.empty());
    auto rec = parse(R"(40{"sid":"s1","pid":"p-9_A"})");
    CHECK(rec.kind == packet_kind::connect);
    CHECK(rec.sid == "s1");
    CHECK(rec.pid == "p-9_A");
    CHECK(parse(R"(40{"pid" : "p2","sid":"s"})").pid == "p2");
    // An escaped value is not a Socket.IO id: refused, not unescaped.
    CHECK(parse(R"(40{"sid":"s","pid":"a\"b"})").pid.empty());
  }
  SECTION("events, errors, other namespaces") {
    CHECK(parse(R"(42["job:update",{"seq":1}])").kind == packet_kind::event);
    CHECK(parse(R"(4212["ev",1])").kind == packet_kind::event); // with ack id
    CHECK(parse(R"(431[true])").kind == packet_kind::event);
    CHECK(parse(R"(44{"message":"Not authorized"})").kind ==
          packet_kind::connect_err);
    CHECK(parse("41").kind == packet_kind::disconnect);
    CHECK(parse(R"(42/admin,["ev"])").kind == packet_kind::other);
    CHECK(parse(R"(40/admin,{"sid":"x"})").kind == packet_kind::other);
  }
}

TEST_CASE("the recovery offset is the trailing string argument", "[app]") {
  SECTION("present") {
    CHECK(trailing_offset(R"(42["bench",{"seq":3},"MzUPkW0"])") == "MzUPkW0");
    CHECK(trailing_offset(R"(42["bench",{"a":"]"} , "off-1" ] )") == "off-1");
    CHECK(trailing_offset(R"(42["bench","room","x"])") == "x");
  }
  SECTION("absent") {
    CHECK(trailing_offset(R"(42["bench",{"seq":3}])").empty());
    CHECK(trailing_offset(R"(42["bench"])").empty()); // the name itself
    CHECK(trailing_offset(R"(42["bench",7])").empty());
    CHECK(trailing_offset(R"(42["bench","a\"b"])").empty()); // escaped
    CHECK(trailing_offset("42").empty());
    CHECK(trailing_offset("").empty());
    CHECK(trailing_offset(R"(42["x","unterminated)").empty());
  }
  SECTION("an escaped quote inside the value does not end it early") {
    // The opening quote is found past the escaped one; the value holds an
    // escape, so it is refused rather than returned wrong.
    CHECK(trailing_offset(R"(42["e","a\",b"])").empty());
  }
}

TEST_CASE("CONNECT packets resume only with pid and offset", "[app]") {
  CHECK(connect_packet("", "") == "40");
  CHECK(connect_packet("p", "") == "40");
  CHECK(connect_packet("", "o") == "40");
  CHECK(connect_packet("p1", "o-2") == R"(40{"pid":"p1","offset":"o-2"})");
  CHECK(connect_packet("a\"b", "o") == R"(40{"pid":"a\"b","offset":"o"})");
  CHECK(pong == "3");
}
