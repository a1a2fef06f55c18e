// The transport over real loopback sockets, with a fake application. Waits
// are on events (a condition variable, a future) with timeouts, never sleeps.
#include "protocol/errors.hpp"
#include "transport/client.hpp"
#include "transport/origin.hpp"
#include "transport/server.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace tidings::transport;
using namespace std::chrono_literals;
namespace protocol = tidings::protocol;

namespace {

constexpr auto event_timeout = 5s;

// --- the fake application -------------------------------------------------

struct fake_app;

struct fake_handler : connection_handler {
  fake_handler(fake_app& app, std::size_t index,
               std::shared_ptr<frame_sink> sink)
      : app(app), index(index), sink(std::move(sink)) {}
  void on_message(std::string msg) override;
  void on_closed() override;

  fake_app& app;
  std::size_t index;
  std::shared_ptr<frame_sink> sink;
};

// Records everything; every change notifies `cv`. Thread-safe.
struct fake_app : application {
  std::mutex mtx;
  std::condition_variable cv;

  // HTTP
  std::vector<http_request> requests;
  bool hold_http = false; // keep responders in `held` instead of answering
  std::vector<http_responder> held;
  http_response answer{200, "text/plain", "ok", {}};

  // WebSocket
  std::optional<http_response> upgrade_answer;
  std::vector<http_request> opened;
  std::vector<std::shared_ptr<frame_sink>> sinks;
  std::vector<int> closed; // on_closed calls, per session
  std::vector<std::string> messages;
  bool echo = true;

  template <class Predicate>
  bool wait(Predicate pred) {
    std::unique_lock<std::mutex> lock{mtx};
    return cv.wait_for(lock, event_timeout, pred);
  }

  template <class F>
  auto locked(F f) {
    std::lock_guard<std::mutex> lock{mtx};
    return f();
  }

  void handle_http(http_request req, http_responder respond) override {
    std::unique_lock<std::mutex> lock{mtx};
    requests.push_back(std::move(req));
    if (hold_http) {
      held.push_back(std::move(respond));
      lock.unlock();
      cv.notify_all();
      return;
    }
    auto res = answer;
    lock.unlock();
    cv.notify_all();
    respond(std::move(res));
  }

  std::optional<http_response> check_upgrade(const http_request&) override {
    std::lock_guard<std::mutex> lock{mtx};
    return upgrade_answer;
  }

  std::shared_ptr<connection_handler>
  open(const http_request& req, std::shared_ptr<frame_sink> sink) override {
    std::shared_ptr<connection_handler> h;
    {
      std::lock_guard<std::mutex> lock{mtx};
      opened.push_back(req);
      sinks.push_back(sink);
      closed.push_back(0);
      h = std::make_shared<fake_handler>(*this, sinks.size() - 1, sink);
    }
    cv.notify_all();
    return h;
  }
};

void fake_handler::on_message(std::string msg) {
  bool echo_back;
  {
    std::lock_guard<std::mutex> lock{app.mtx};
    app.messages.push_back(msg);
    echo_back = app.echo;
  }
  app.cv.notify_all();
  if (echo_back)
    sink->deliver(make_frame(std::move(msg)));
}

void fake_handler::on_closed() {
  {
    std::lock_guard<std::mutex> lock{app.mtx};
    ++app.closed[index];
  }
  app.cv.notify_all();
}

// --- a running server ----------------------------------------------------

server_options test_options() {
  server_options o;
  o.port = 0;
  o.threads = 2;
  return o;
}

// Runs a server on a background thread; `run_returned` becomes ready when
// server::run() returns.
struct running_server {
  running_server(server_options opts, std::shared_ptr<fake_app> app)
      : app(std::move(app)), srv(std::move(opts), this->app) {
    auto err = srv.listen();
    REQUIRE_FALSE(err);
    run_returned = std::async(std::launch::async, [this] { srv.run(); });
  }
  ~running_server() {
    srv.stop();
    run_returned.wait();
  }
  std::uint16_t port() const { return srv.port(); }
  std::string host() const { return "127.0.0.1:" + std::to_string(port()); }

  std::shared_ptr<fake_app> app;
  server srv;
  std::future<void> run_returned;
};

bool all_closed_once(fake_app& app) {
  return app.locked([&] {
    return std::all_of(app.closed.begin(), app.closed.end(),
                       [](int n) { return n == 1; });
  });
}

tidings::result<http_reply>
get(std::uint16_t port, const std::string& target,
    std::vector<std::pair<std::string, std::string>> h = {}) {
  return http_call("127.0.0.1", port, "GET", target, h, "", 5000ms);
}

// --- a raw socket, for what the clients in client.hpp cannot send --------

struct raw_conn {
  explicit raw_conn(std::uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    connected = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr),
                                     sizeof(addr)) == 0;
  }
  ~raw_conn() {
    if (fd >= 0)
      ::close(fd);
  }
  raw_conn(const raw_conn&) = delete;
  raw_conn& operator=(const raw_conn&) = delete;

  bool send_all(std::string_view s) {
    while (!s.empty()) {
      auto n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0)
        return false;
      s.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Reads until `pred(in)`, the peer closes, or the timeout.
  template <class Predicate>
  bool read_until(Predicate pred) {
    const auto deadline = std::chrono::steady_clock::now() + event_timeout;
    char buf[65536];
    while (!pred(in)) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        return false;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        return false;
      auto n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) {
        eof = true;
        return pred(in);
      }
      in.append(buf, static_cast<std::size_t>(n));
    }
    return true;
  }

  int fd = -1;
  bool connected = false;
  bool eof = false;
  std::string in;
};

struct raw_response {
  unsigned status = 0;
  std::map<std::string, std::string> headers; // names in lower case
  std::string body;
};

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Reads one response head, and a Content-Length body if `with_body`.
std::optional<raw_response> read_response(raw_conn& c, bool with_body = true) {
  if (!c.read_until([](const std::string& in) {
        return in.find("\r\n\r\n") != std::string::npos;
      }))
    return std::nullopt;
  const auto head_end = c.in.find("\r\n\r\n");
  const std::string head = c.in.substr(0, head_end);
  c.in.erase(0, head_end + 4);
  raw_response r;
  if (head.size() < 12)
    return std::nullopt;
  r.status = static_cast<unsigned>(std::stoul(head.substr(9, 3)));
  std::size_t pos = head.find("\r\n");
  while (pos != std::string::npos) {
    auto next = head.find("\r\n", pos + 2);
    auto line =
        head.substr(pos + 2, next == std::string::npos ? std::string::npos
                                                       : next - pos - 2);
    auto colon = line.find(':');
    if (colon != std::string::npos) {
      auto value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      r.headers[lower(line.substr(0, colon))] = value;
    }
    pos = next;
  }
  if (with_body && r.headers.count("content-length")) {
    auto len = std::stoul(r.headers["content-length"]);
    if (!c.read_until([&](const std::string& in) { return in.size() >= len; }))
      return std::nullopt;
    r.body = c.in.substr(0, len);
    c.in.erase(0, len);
  }
  return r;
}

std::string upgrade_request(const std::string& host,
                            const std::string& origin) {
  std::string req = "GET /ws HTTP/1.1\r\nHost: " + host +
                    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n";
  if (!origin.empty())
    req += "Origin: " + origin + "\r\n";
  return req + "\r\n";
}

// A masked client text frame (payload shorter than 126 bytes).
std::string client_text_frame(std::string_view payload) {
  const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
  std::string f;
  f += static_cast<char>(0x81);
  f += static_cast<char>(0x80 | payload.size());
  f.append(reinterpret_cast<const char*>(key), 4);
  for (std::size_t i = 0; i < payload.size(); ++i)
    f += static_cast<char>(payload[i] ^ key[i % 4]);
  return f;
}

struct raw_frame {
  unsigned opcode = 0;
  std::string payload;
};

// One unmasked server frame.
std::optional<raw_frame> read_frame(raw_conn& c) {
  std::size_t head = 0, len = 0;
  auto complete = [&](const std::string& in) {
    if (in.size() < 2)
      return false;
    const auto b1 = static_cast<unsigned char>(in[1]) & 0x7f;
    head = b1 < 126 ? 2 : b1 == 126 ? 4 : 10;
    if (in.size() < head)
      return false;
    len = b1;
    if (b1 >= 126) {
      len = 0;
      for (std::size_t i = 2; i < head; ++i)
        len = (len << 8) | static_cast<unsigned char>(in[i]);
    }
    return in.size() >= head + len;
  };
  if (!c.read_until(complete))
    return std::nullopt;
  raw_frame f;
  f.opcode = static_cast<unsigned char>(c.in[0]) & 0x0f;
  f.payload = c.in.substr(head, len);
  c.in.erase(0, head + len);
  return f;
}

std::uint16_t close_code_of(const raw_frame& f) {
  if (f.payload.size() < 2)
    return 0;
  return static_cast<std::uint16_t>(
      (static_cast<unsigned char>(f.payload[0]) << 8) |
      static_cast<unsigned char>(f.payload[1]));
}

std::string closed_text(protocol::close_reason r) {
  const auto& e = protocol::describe(r);
  return std::to_string(static_cast<unsigned>(e.code)) + " " +
         std::string(e.reason);
}

} // namespace

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
