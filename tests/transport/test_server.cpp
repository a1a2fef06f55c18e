// The transport over real loopback sockets, with a fake application. Waits
// are on events (a condition variable, a future) with timeouts, never sleeps.
#include "test_support.hpp"
#include "transport/origin.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace tidings::transport;
using namespace tidings::transport::testing;
using namespace std::chrono_literals;
namespace protocol = tidings::protocol;

// --- tests ---------------------------------------------------------------

TEST_CASE("the origin rule", "[transport]") {
  SECTION("empty list: same host and port only") {
    CHECK(origin_allowed({}, "http://127.0.0.1:8000", "127.0.0.1:8000"));
    CHECK(origin_allowed({}, "https://Example.COM", "example.com"));
    CHECK_FALSE(origin_allowed({}, "http://127.0.0.1:9000", "127.0.0.1:8000"));
    CHECK_FALSE(origin_allowed({}, "http://evil.test", "127.0.0.1:8000"));
    CHECK_FALSE(origin_allowed({}, "null", "null"));
    CHECK_FALSE(origin_allowed({}, "http://a.test", ""));
  }
  SECTION("a star allows any origin") {
    CHECK(origin_allowed({"*"}, "http://evil.test", "127.0.0.1:8000"));
  }
  SECTION("a list needs an exact match") {
    std::vector<std::string> list{"https://app.test", "http://b.test:81"};
    CHECK(origin_allowed(list, "https://app.test", "x"));
    CHECK(origin_allowed(list, "http://b.test:81", "x"));
    CHECK_FALSE(origin_allowed(list, "http://app.test", "app.test"));
    CHECK_FALSE(origin_allowed(list, "https://app.test.evil", "x"));
  }
}

TEST_CASE("HTTP requests reach the application", "[transport]") {
  auto app = std::make_shared<fake_app>();
  running_server s{test_options(), app};

  SECTION("GET with the fields the application needs") {
    auto r = get(s.port(), "/api/v1/runs/7/events?wait=0",
                 {{"Authorization", "Bearer abc"},
                  {"Origin", "http://page.test"},
                  {"Last-Event-ID", "42"},
                  {"Content-Type", "text/plain"}});
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "ok");
    REQUIRE(app->locked([&] { return app->requests.size(); }) == 1);
    const auto& q = app->requests[0];
    CHECK(q.method == "GET");
    CHECK(q.target == "/api/v1/runs/7/events?wait=0");
    CHECK(q.authorization == "Bearer abc");
    CHECK(q.origin == "http://page.test");
    CHECK(q.last_event_id == "42");
    CHECK(q.content_type == "text/plain");
    CHECK(q.host == s.host());
    CHECK(q.remote.rfind("127.0.0.1:", 0) == 0);
    CHECK(q.body.empty());
    CHECK(s.srv.counters().http_requests == 1);
  }
  SECTION("POST delivers the body") {
    auto r =
        http_call("127.0.0.1", s.port(), "POST", "/api/v1/publish",
                  {{"Content-Type", "application/json"}}, R"({"a":1})", 5000ms);
    REQUIRE(r);
    CHECK(r->status == 200);
    REQUIRE(app->locked([&] { return app->requests.size(); }) == 1);
    CHECK(app->requests[0].method == "POST");
    CHECK(app->requests[0].body == R"({"a":1})");
    CHECK(app->requests[0].content_type == "application/json");
  }
  SECTION("the application's status, body and headers pass through") {
    app->locked([&] {
      app->answer = http_response{404,
                                  "application/json",
                                  R"({"error_code":"NOT_FOUND"})",
                                  {{"X-Test", "1"}, {"Content-Length", "99"}}};
    });
    auto r = get(s.port(), "/nowhere");
    REQUIRE(r);
    CHECK(r->status == 404);
    CHECK(r->body == R"({"error_code":"NOT_FOUND"})");

    raw_conn c{s.port()};
    REQUIRE(c.connected);
    REQUIRE(c.send_all("GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto res = read_response(c);
    REQUIRE(res);
    CHECK(res->status == 404);
    CHECK(res->headers["server"] == "tidings");
    CHECK(res->headers["x-test"] == "1");
    CHECK(res->headers["content-type"] == "application/json");
    CHECK(res->headers["content-length"] == std::to_string(res->body.size()));
  }
  SECTION("Expect: 100-continue is answered before the body is read") {
    raw_conn c{s.port()};
    REQUIRE(c.connected);
    REQUIRE(c.send_all("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                       "Expect: 100-continue\r\n\r\n"));
    auto go_on = read_response(c, false);
    REQUIRE(go_on);
    CHECK(go_on->status == 100);
    REQUIRE(c.send_all("hello"));
    auto res = read_response(c);
    REQUIRE(res);
    CHECK(res->status == 200);
    REQUIRE(app->locked([&] { return app->requests.size(); }) == 1);
    CHECK(app->requests[0].body == "hello");
  }
  SECTION("a 204 answer goes out without a body") {
    app->locked([&] {
      app->answer = http_response{204, "", "not allowed here", {}};
    });
    raw_conn c{s.port()};
    REQUIRE(c.connected);
    REQUIRE(c.send_all("DELETE /x HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /y HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto first = read_response(c);
    REQUIRE(first);
    CHECK(first->status == 204);
    auto second = read_response(c); // the connection is still in step
    REQUIRE(second);
    CHECK(second->status == 204);
    CHECK(second->body.empty());
  }
  SECTION("keep-alive serves several requests on one connection") {
    raw_conn c{s.port()};
    REQUIRE(c.connected);
    for (int i = 0; i < 3; ++i) {
      REQUIRE(c.send_all("GET /r" + std::to_string(i) +
                         " HTTP/1.1\r\nHost: x\r\n\r\n"));
      auto res = read_response(c);
      REQUIRE(res);
      CHECK(res->status == 200);
      CHECK(res->body == "ok");
    }
    CHECK_FALSE(c.eof);
    REQUIRE(app->locked([&] { return app->requests.size(); }) == 3);
    CHECK(app->requests[2].target == "/r2");
    CHECK(app->requests[0].remote == app->requests[2].remote);
  }
}

TEST_CASE("HTTP limits", "[transport]") {
  auto app = std::make_shared<fake_app>();
  auto opts = test_options();
  opts.max_http_body = 1024;
  opts.max_header_bytes = 1024;
  opts.http_timeout = 1s;
  running_server s{opts, app};

  SECTION("a body over max_http_body gets 413 with a JSON error") {
    auto r = http_call("127.0.0.1", s.port(), "POST", "/api/v1/publish", {},
                       std::string(4096, 'x'), 5000ms);
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(
        r->body ==
        R"({"error_code":"PAYLOAD_TOO_LARGE","message":"Request body too large"})");
    CHECK(app->locked([&] { return app->requests.empty(); }));
    // A body at the limit is fine.
    auto ok = http_call("127.0.0.1", s.port(), "POST", "/p", {},
                        std::string(1024, 'x'), 5000ms);
    REQUIRE(ok);
    CHECK(ok->status == 200);
  }
  SECTION("a head over max_header_bytes gets 431") {
    raw_conn c{s.port()};
    REQUIRE(c.connected);
    REQUIRE(c.send_all("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " +
                       std::string(4000, 'a') + "\r\n\r\n"));
    auto res = read_response(c);
    REQUIRE(res);
    CHECK(res->status == 431);
    CHECK(app->locked([&] { return app->requests.empty(); }));
  }
  SECTION("an unanswered request ends at http_timeout") {
    app->locked([&] { app->hold_http = true; });
    auto r = get(s.port(), "/slow");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == "IO");
    // The late answer goes nowhere and harms nothing.
    auto late = app->locked([&] { return app->held.at(0); });
    late(http_response{200, "text/plain", "late", {}});
    app->locked([&] { app->hold_http = false; });
    auto again = get(s.port(), "/fast");
    REQUIRE(again);
    CHECK(again->status == 200);
  }
}

TEST_CASE("a responder may answer later from another thread", "[transport]") {
  auto app = std::make_shared<fake_app>();
  app->hold_http = true;
  running_server s{test_options(), app};
  auto reply =
      std::async(std::launch::async, [&] { return get(s.port(), "/later"); });
  REQUIRE(app->wait([&] { return !app->held.empty(); }));
  auto respond = app->locked([&] { return app->held[0]; });
  std::thread([respond] {
    respond(http_response{202, "text/plain", "later", {}});
    respond(http_response{500, "text/plain", "twice", {}}); // ignored
  }).join();
  REQUIRE(reply.wait_for(event_timeout) == std::future_status::ready);
  auto r = reply.get();
  REQUIRE(r);
  CHECK(r->status == 202);
  CHECK(r->body == "later");
}

TEST_CASE("WebSocket sessions", "[transport]") {
  auto app = std::make_shared<fake_app>();
  {
    running_server s{test_options(), app};
    ws_client c;
    auto connected = c.connect("127.0.0.1", s.port(), "/ws/echo?x=1");
    REQUIRE(connected);
    REQUIRE(app->wait([&] { return app->sinks.size() == 1; }));
    CHECK(app->opened[0].target == "/ws/echo?x=1");
    CHECK(app->opened[0].host == s.host());

    SECTION("echo, then a client close ends the session once") {
      REQUIRE(c.send("hello"));
      auto m = c.read(5000ms);
      REQUIRE(m);
      CHECK(*m == "hello");
      auto k = s.srv.counters();
      CHECK(k.connections_open == 1);
      CHECK(k.connections_total == 1);
      CHECK(k.frames_in == 1);
      CHECK(k.bytes_in == 5);
      c.close();
      REQUIRE(app->wait([&] { return app->closed[0] == 1; }));
      k = s.srv.counters();
      CHECK(k.connections_open == 0);
      // The write completed before the session read the client's close.
      CHECK(k.frames_out == 1);
      CHECK(k.bytes_out == 5);
      CHECK_FALSE(app->sinks[0]->deliver(make_frame("after")));
    }
    SECTION("a read timeout leaves the client usable") {
      auto m = c.read(50ms);
      REQUIRE_FALSE(m);
      CHECK(m.error().code == "TIMEOUT");
      REQUIRE(app->sinks[0]->deliver(make_frame("late")));
      auto m2 = c.read(5000ms);
      REQUIRE(m2);
      CHECK(*m2 == "late");
    }
    SECTION("server close sends the queued frames first, once") {
      auto sink = app->locked([&] { return app->sinks[0]; });
      for (auto text : {"a", "b", "c"})
        REQUIRE(sink->deliver(make_frame(text)));
      sink->close(1000, "Normal closure");
      sink->close(1011, "Internal error"); // ignored: already closing
      CHECK_FALSE(sink->deliver(make_frame("d")));
      for (auto text : {"a", "b", "c"}) {
        auto m = c.read(5000ms);
        REQUIRE(m);
        CHECK(*m == text);
      }
      auto end = c.read(5000ms);
      REQUIRE_FALSE(end);
      CHECK(end.error().code == "CLOSED");
      CHECK(end.error().message == "1000 Normal closure");
      REQUIRE(app->wait([&] { return app->closed[0] == 1; }));
      CHECK(sink->queued_bytes() == 0);
    }
    SECTION("frames from many threads keep each thread's order") {
      auto sink = app->locked([&] { return app->sinks[0]; });
      constexpr int producers = 4, per_producer = 200;
      std::vector<std::thread> threads;
      for (int t = 0; t < producers; ++t)
        threads.emplace_back([sink, t] {
          for (int i = 0; i < per_producer; ++i)
            sink->deliver(
                make_frame(std::to_string(t) + ":" + std::to_string(i)));
        });
      for (auto& t : threads)
        t.join();
      std::vector<int> next(producers, 0);
      for (int n = 0; n < producers * per_producer; ++n) {
        auto m = c.read(5000ms);
        REQUIRE(m);
        auto colon = m->find(':');
        int t = std::stoi(m->substr(0, colon));
        int i = std::stoi(m->substr(colon + 1));
        REQUIRE(i == next[t]);
        ++next[t];
      }
      CHECK(next == std::vector<int>(producers, per_producer));
    }
    SECTION("stop() closes with 1001 and run() returns") {
      s.srv.stop();
      auto end = c.read(5000ms);
      REQUIRE_FALSE(end);
      CHECK(end.error().code == "CLOSED");
      CHECK(end.error().message ==
            closed_text(protocol::close_reason::shutting_down));
      REQUIRE(s.run_returned.wait_for(event_timeout) ==
              std::future_status::ready);
      CHECK(app->locked([&] { return app->closed[0]; }) == 1);
    }
  }
  // Whatever ended it, each session's handler heard of it exactly once.
  CHECK(all_closed_once(*app));
}

TEST_CASE("stop() ends run() even when a client never answers the close",
          "[transport]") {
  auto app = std::make_shared<fake_app>();
  running_server s{test_options(), app};
  ws_client c; // never reads: its close reply never comes
  REQUIRE(c.connect("127.0.0.1", s.port(), "/ws"));
  REQUIRE(app->wait([&] { return app->sinks.size() == 1; }));
  s.srv.stop();
  REQUIRE(s.run_returned.wait_for(event_timeout) == std::future_status::ready);
  CHECK(app->locked([&] { return app->closed[0]; }) == 1);
}

TEST_CASE("check_upgrade can refuse the handshake", "[transport]") {
  auto app = std::make_shared<fake_app>();
  app->upgrade_answer = http_response{404, "application/json", "{}", {}};
  running_server s{test_options(), app};
  ws_client c;
  auto r = c.connect("127.0.0.1", s.port(), "/unknown");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == "HANDSHAKE");
  CHECK(r.error().message.find("404") != std::string::npos);
  CHECK(app->locked([&] { return app->sinks.empty(); }));
}

TEST_CASE("a message over max_message_size closes with 1009", "[transport]") {
  auto app = std::make_shared<fake_app>();
  auto opts = test_options();
  opts.max_message_size = 1024;
  running_server s{opts, app};
  ws_client c;
  REQUIRE(c.connect("127.0.0.1", s.port(), "/ws"));
  REQUIRE(c.send(std::string(1024, 'a'))); // at the limit: fine
  auto echo = c.read(5000ms);
  REQUIRE(echo);
  CHECK(echo->size() == 1024);
  REQUIRE(c.send(std::string(2000, 'a')));
  auto end = c.read(5000ms);
  REQUIRE_FALSE(end);
  INFO(end.error().message);
  CHECK(end.error().code == "CLOSED");
  CHECK(end.error().message.rfind("1009", 0) == 0);
  REQUIRE(app->wait(
      [&] { return app->closed.size() == 1 && app->closed[0] == 1; }));
  CHECK(s.srv.counters().oversize_closes == 1);
  CHECK(app->locked([&] { return app->messages.size(); }) == 1);
}

TEST_CASE("a slow consumer is closed with 4001", "[transport]") {
  auto app = std::make_shared<fake_app>();
  auto opts = test_options();
  opts.max_queue_bytes = 256 * 1024;
  running_server s{opts, app};
  ws_client c; // does not read until the end
  REQUIRE(c.connect("127.0.0.1", s.port(), "/ws"));
  REQUIRE(app->wait([&] { return app->sinks.size() == 1; }));
  auto sink = app->locked([&] { return app->sinks[0]; });

  const auto big = make_frame(std::string(64 * 1024, 'x'));
  int delivered = 0;
  bool refused = false;
  // The kernel's socket buffers take some megabytes first.
  for (int i = 0; i < 4000 && !refused; ++i) {
    if (sink->deliver(big))
      ++delivered;
    else
      refused = true;
  }
  REQUIRE(refused);
  CHECK(sink->queued_bytes() <= opts.max_queue_bytes);
  CHECK_FALSE(sink->deliver(make_frame("small")));
  CHECK(s.srv.counters().slow_consumer_closes == 1);

  int received = 0;
  std::optional<tidings::error_info> end;
  while (!end && received <= delivered) {
    auto m = c.read(5000ms);
    if (m)
      ++received;
    else
      end = m.error();
  }
  REQUIRE(end);
  CHECK(end->code == "CLOSED");
  CHECK(end->message == closed_text(protocol::close_reason::slow_consumer));
  CHECK(received < delivered); // the backlog was dropped, not sent
  REQUIRE(app->wait([&] { return app->closed[0] == 1; }));
  CHECK(sink->queued_bytes() == 0);
  CHECK(s.srv.counters().slow_consumer_closes == 1);
}

TEST_CASE("the Origin header is checked before opening", "[transport]") {
  auto app = std::make_shared<fake_app>();
  running_server s{test_options(), app};
  raw_conn c{s.port()};
  REQUIRE(c.connected);

  SECTION("another origin: accepted, then closed with 1008") {
    REQUIRE(c.send_all(upgrade_request(s.host(), "http://evil.test")));
    auto res = read_response(c, false);
    REQUIRE(res);
    CHECK(res->status == 101);
    CHECK(res->headers["server"] == "tidings");
    auto f = read_frame(c);
    REQUIRE(f);
    CHECK(f->opcode == 0x8);
    CHECK(close_code_of(*f) == 1008);
    CHECK(f->payload.substr(2) == "Origin not allowed");
    CHECK(s.srv.counters().rejected_connections == 1);
    CHECK(app->locked([&] { return app->sinks.empty(); }));
  }
  SECTION("the same host: opened") {
    REQUIRE(c.send_all(upgrade_request(s.host(), "http://" + s.host())));
    auto res = read_response(c, false);
    REQUIRE(res);
    CHECK(res->status == 101);
    REQUIRE(app->wait([&] { return app->sinks.size() == 1; }));
    CHECK(app->opened[0].origin == "http://" + s.host());
    REQUIRE(c.send_all(client_text_frame("hi")));
    auto f = read_frame(c);
    REQUIRE(f);
    CHECK(f->opcode == 0x1);
    CHECK(f->payload == "hi");
  }
}

TEST_CASE("max_connections turns further sessions away with 1013",
          "[transport]") {
  auto app = std::make_shared<fake_app>();
  auto opts = test_options();
  opts.max_connections = 1;
  running_server s{opts, app};
  ws_client first;
  REQUIRE(first.connect("127.0.0.1", s.port(), "/ws"));
  REQUIRE(app->wait([&] { return app->sinks.size() == 1; }));

  ws_client second;
  REQUIRE(second.connect("127.0.0.1", s.port(), "/ws"));
  auto end = second.read(5000ms);
  REQUIRE_FALSE(end);
  CHECK(end.error().code == "CLOSED");
  CHECK(end.error().message ==
        closed_text(protocol::close_reason::too_many_connections));
  CHECK(s.srv.counters().rejected_connections == 1);
  CHECK(app->locked([&] { return app->sinks.size(); }) == 1);

  // Once the first is gone, its slot is free again.
  first.close();
  REQUIRE(app->wait([&] { return app->closed[0] == 1; }));
  ws_client third;
  REQUIRE(third.connect("127.0.0.1", s.port(), "/ws"));
  REQUIRE(third.send("x"));
  auto m = third.read(5000ms);
  REQUIRE(m);
  CHECK(*m == "x");
}

TEST_CASE("an idle session times out and ends once", "[transport]") {
  auto app = std::make_shared<fake_app>();
  auto opts = test_options();
  opts.idle_timeout = 1s; // ping after 0.5 s, give up after 1 s
  running_server s{opts, app};
  ws_client c; // never runs its io_context, so never answers the ping
  REQUIRE(c.connect("127.0.0.1", s.port(), "/ws"));
  REQUIRE(app->wait([&] { return app->sinks.size() == 1; }));
  REQUIRE(app->wait([&] { return app->closed[0] == 1; }));
  CHECK(s.srv.counters().connections_open == 0);
}
