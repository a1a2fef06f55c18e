// Helpers shared by the transport tests: a fake application that records
// everything, a server running on background threads, and a raw TCP client
// for bytes the clients in client.hpp cannot send. Waits are on events (a
// condition variable, a future, a socket) with timeouts, never sleeps.
#pragma once

#include "protocol/errors.hpp"
#include "transport/client.hpp"
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
#include <utility>
#include <vector>

namespace tidings::transport::testing {

using namespace std::chrono_literals;

inline constexpr auto event_timeout = 5s;

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

inline void fake_handler::on_message(std::string msg) {
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

inline void fake_handler::on_closed() {
  {
    std::lock_guard<std::mutex> lock{app.mtx};
    ++app.closed[index];
  }
  app.cv.notify_all();
}

// --- a running server ----------------------------------------------------

inline server_options test_options() {
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

inline bool all_closed_once(fake_app& app) {
  return app.locked([&] {
    return std::all_of(app.closed.begin(), app.closed.end(),
                       [](int n) { return n == 1; });
  });
}

inline tidings::result<http_reply>
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
      sent += static_cast<std::size_t>(n);
    }
    return true;
  }

  // Reads until `pred(in)`, the peer closes, or the timeout.
  template <class Predicate>
  bool read_until(Predicate pred,
                  std::chrono::milliseconds timeout = event_timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
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
  std::uint64_t sent = 0; // bytes written so far
  std::string in;
};

struct raw_response {
  unsigned status = 0;
  std::map<std::string, std::string> headers; // names in lower case
  std::string body;
};

inline std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Reads one response head, and a Content-Length body if `with_body`.
inline std::optional<raw_response> read_response(raw_conn& c,
                                                 bool with_body = true) {
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

inline std::string upgrade_request(const std::string& host,
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
inline std::string client_text_frame(std::string_view payload) {
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
inline std::optional<raw_frame> read_frame(raw_conn& c) {
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

inline std::uint16_t close_code_of(const raw_frame& f) {
  if (f.payload.size() < 2)
    return 0;
  return static_cast<std::uint16_t>(
      (static_cast<unsigned char>(f.payload[0]) << 8) |
      static_cast<unsigned char>(f.payload[1]));
}

inline std::string closed_text(protocol::close_reason r) {
  const auto& e = protocol::describe(r);
  return std::to_string(static_cast<unsigned>(e.code)) + " " +
         std::string(e.reason);
}

} // namespace tidings::transport::testing
