// Streamed HTTP answers (seam.hpp stream_handler: SSE) over real loopback
// sockets, with the fake application answering a stream. Waits are on
// events with timeouts; one test lets time pass on purpose (a stream must
// outlive http_timeout).
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

using namespace tidings::transport;
using namespace tidings::transport::testing;
using namespace std::chrono_literals;

namespace {

// Records the stream's life. Thread-safe.
struct rec_stream : stream_handler {
  std::mutex mtx;
  std::condition_variable cv;
  std::shared_ptr<frame_sink> sink;
  int opened = 0;
  int closed = 0;

  void on_open(std::shared_ptr<frame_sink> s) override {
    {
      std::lock_guard<std::mutex> lock{mtx};
      sink = std::move(s);
      ++opened;
    }
    cv.notify_all();
  }
  void on_closed() override {
    {
      std::lock_guard<std::mutex> lock{mtx};
      ++closed;
    }
    cv.notify_all();
  }
  template <class Predicate>
  bool wait(Predicate pred, std::chrono::milliseconds t = event_timeout) {
    std::unique_lock<std::mutex> lock{mtx};
    return cv.wait_for(lock, t, pred);
  }
  std::shared_ptr<frame_sink> the_sink() {
    std::lock_guard<std::mutex> lock{mtx};
    return sink;
  }
};

http_response stream_answer(std::shared_ptr<rec_stream> h,
                            std::string first = "retry: 1000\n\n") {
  http_response r{200, "text/event-stream", std::move(first), {}};
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.stream = std::move(h);
  return r;
}

// Decodes the complete chunks at the front of `in` into `body`; true once
// the last chunk (size 0) was read.
bool take_chunks(std::string& in, std::string& body) {
  while (true) {
    auto eol = in.find("\r\n");
    if (eol == std::string::npos)
      return false;
    auto size = std::stoul(in.substr(0, eol), nullptr, 16);
    if (size == 0) {
      if (in.size() < eol + 4)
        return false;
      in.erase(0, eol + 4);
      return true;
    }
    if (in.size() < eol + 2 + size + 2)
      return false;
    body += in.substr(eol + 2, size);
    in.erase(0, eol + 2 + size + 2);
  }
}

const std::string sse_get =
    "GET /api/v1/sse/pipeline/1 HTTP/1.1\r\nHost: x\r\n\r\n";

} // namespace

TEST_CASE("a streamed answer writes its head, then chunks as delivered",
          "[transport][stream]") {
  auto app = std::make_shared<fake_app>();
  auto h = std::make_shared<rec_stream>();
  app->answer = stream_answer(h);
  running_server s{test_options(), app};

  raw_conn c{s.port()};
  REQUIRE(c.connected);
  REQUIRE(c.send_all(sse_get));
  auto head = read_response(c, false);
  REQUIRE(head);
  CHECK(head->status == 200);
  CHECK(head->headers["content-type"] == "text/event-stream");
  CHECK(head->headers["transfer-encoding"] == "chunked");
  CHECK(head->headers["cache-control"] == "no-cache");
  CHECK(head->headers.count("content-length") == 0);
  REQUIRE(h->wait([&] { return h->opened == 1; }));

  std::string body;
  REQUIRE(c.read_until([&](std::string& in) {
    take_chunks(in, body);
    return body == "retry: 1000\n\n";
  }));

  auto sink = h->the_sink();
  REQUIRE(sink);
  CHECK(sink->max_queued_bytes() == test_options().max_queue_bytes);
  std::string want = body;
  for (int i = 0; i < 200; ++i) {
    auto ev = "id: " + std::to_string(i) + "\ndata: x\n\n";
    want += ev;
    REQUIRE(sink->deliver(make_frame(ev)));
  }
  REQUIRE(c.read_until([&](std::string& in) {
    take_chunks(in, body);
    return body.size() >= want.size();
  }));
  CHECK(body == want);

  SECTION("close() writes the last chunk and ends the connection once") {
    sink->close(1000, "done");
    bool ended = false;
    REQUIRE(c.read_until([&](std::string& in) {
      ended = ended || take_chunks(in, body);
      return ended && c.eof;
    }));
    REQUIRE(h->wait([&] { return h->closed == 1; }));
    CHECK_FALSE(sink->deliver(make_frame("late")));
  }
  SECTION("the client going away ends the stream once") {
    ::shutdown(c.fd, SHUT_RDWR);
    REQUIRE(h->wait([&] { return h->closed == 1; }));
    CHECK_FALSE(sink->deliver(make_frame("late")));
    CHECK(sink->queued_bytes() == 0);
  }
  CHECK(h->opened == 1);
  CHECK(h->closed == 1);
}

TEST_CASE("a stream whose reader stalls ends at the queue bound",
          "[transport][stream]") {
  auto opts = test_options();
  opts.max_queue_bytes = 64 * 1024;
  auto app = std::make_shared<fake_app>();
  auto h = std::make_shared<rec_stream>();
  app->answer = stream_answer(h);
  running_server s{opts, app};

  raw_conn c{s.port()};
  REQUIRE(c.connected);
  int small = 4096; // a small receive window, and we never read
  ::setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  REQUIRE(c.send_all(sse_get));
  REQUIRE(h->wait([&] { return h->opened == 1; }));
  auto sink = h->the_sink();
  const std::string block(16 * 1024, 'x');
  bool refused = false;
  for (int i = 0; i < 10000 && !refused; ++i)
    refused = !sink->deliver(make_frame(block));
  CHECK(refused);
  REQUIRE(h->wait([&] { return h->closed == 1; }));
  CHECK(s.srv.counters().slow_consumer_closes == 1);
  CHECK_FALSE(sink->deliver(make_frame("x")));
}

TEST_CASE("streams count against max_connections and end with stop()",
          "[transport][stream]") {
  auto opts = test_options();
  opts.max_connections = 1;
  auto app = std::make_shared<fake_app>();
  auto first = std::make_shared<rec_stream>();
  auto second = std::make_shared<rec_stream>();
  app->answer = stream_answer(first);
  auto s = std::make_unique<running_server>(opts, app);

  raw_conn a{s->port()};
  REQUIRE(a.send_all(sse_get));
  REQUIRE(first->wait([&] { return first->opened == 1; }));

  app->locked([&] { app->answer = stream_answer(second); });
  raw_conn b{s->port()};
  REQUIRE(b.send_all(sse_get));
  auto refused = read_response(b);
  REQUIRE(refused);
  CHECK(refused->status == 503);
  REQUIRE(second->wait([&] { return second->closed == 1; }));
  CHECK(second->opened == 0);

  first->the_sink()->deliver(make_frame("data: last\n\n"));
  s.reset(); // stop(): the stream gets its last chunk and ends
  CHECK(first->closed == 1);
  std::string body;
  bool ended = false;
  CHECK(a.read_until([&](std::string& in) {
    if (!ended) {
      auto head_end = in.find("\r\n\r\n");
      if (body.empty() && head_end != std::string::npos &&
          in.rfind("HTTP/1.1", 0) == 0)
        in.erase(0, head_end + 4);
      ended = take_chunks(in, body);
    }
    return ended;
  }));
  CHECK(body == "retry: 1000\n\ndata: last\n\n");
}

TEST_CASE("a stream outlives http_timeout", "[transport][stream]") {
  auto opts = test_options();
  opts.http_timeout = 1s;
  auto app = std::make_shared<fake_app>();
  auto h = std::make_shared<rec_stream>();
  app->answer = stream_answer(h, "");
  running_server s{opts, app};

  raw_conn c{s.port()};
  REQUIRE(c.send_all(sse_get));
  REQUIRE(read_response(c, false));
  REQUIRE(h->wait([&] { return h->opened == 1; }));
  // Twice the HTTP timeout with nothing written.
  CHECK_FALSE(h->wait([&] { return h->closed > 0; }, 2500ms));
  REQUIRE(h->the_sink()->deliver(make_frame("data: still here\n\n")));
  std::string body;
  REQUIRE(c.read_until([&](std::string& in) {
    take_chunks(in, body);
    return body == "data: still here\n\n";
  }));
  CHECK(h->closed == 0);
}

TEST_CASE("a long answer may take longer than http_timeout",
          "[transport][stream]") {
  auto opts = test_options();
  opts.http_timeout = 1s;
  opts.answer_timeout = 5s;
  auto app = std::make_shared<fake_app>();
  app->hold_http = true;
  running_server s{opts, app};
  auto reply = std::async(std::launch::async, [&] {
    return get(s.port(), "/api/v1/runs/1/events");
  });
  REQUIRE(app->wait([&] { return app->held.size() == 1; }));
  std::this_thread::sleep_for(1500ms); // a long-poll waiting
  app->locked([&] { return app->held[0]; })(
      http_response{200, "application/json", "[]", {}});
  auto r = reply.get();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "[]");
}
