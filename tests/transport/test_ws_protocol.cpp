// The WebSocket session (transport/ws_session) on the wire: a raw TCP client
// writes hand-made masked frames and parses every byte the server sends
// (FIN, RSV, mask bit, minimal length), against a running server with the
// fake application. Waits are on events with timeouts, never sleeps.
#include "test_support.hpp"

#include <catch2/catch.hpp>

#include <dirent.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace tidings::transport;
using namespace tidings::transport::testing;
using namespace std::chrono_literals;
namespace protocol = tidings::protocol;

namespace {

using clock_type = std::chrono::steady_clock;

// First byte of a frame: FIN and opcode.
constexpr std::uint8_t fin = 0x80;
constexpr std::uint8_t op_continuation = 0x0;
constexpr std::uint8_t op_text = 0x1;
constexpr std::uint8_t op_binary = 0x2;
constexpr std::uint8_t op_close = 0x8;
constexpr std::uint8_t op_ping = 0x9;
constexpr std::uint8_t op_pong = 0xA;

// A client frame with first byte `b0`, any payload length (minimally
// encoded), masked with `key` unless `masked` is false.
std::string
client_frame(std::uint8_t b0, std::string_view payload, bool masked = true,
             std::array<std::uint8_t, 4> key = {0x5A, 0xC3, 0x0F, 0x96}) {
  std::string f;
  f += static_cast<char>(b0);
  const std::uint8_t m = masked ? 0x80 : 0x00;
  const auto n = payload.size();
  if (n < 126) {
    f += static_cast<char>(m | n);
  } else if (n <= 0xFFFF) {
    f += static_cast<char>(m | 126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xFF);
  } else {
    f += static_cast<char>(m | 127);
    for (int i = 0; i < 8; ++i)
      f += static_cast<char>((std::uint64_t{n} >> (56 - 8 * i)) & 0xFF);
  }
  if (!masked)
    return f.append(payload.data(), payload.size());
  f.append(reinterpret_cast<const char*>(key.data()), 4);
  for (std::size_t i = 0; i < n; ++i)
    f += static_cast<char>(payload[i] ^ static_cast<char>(key[i % 4]));
  return f;
}

std::string close_body(std::uint16_t code, std::string_view reason = {}) {
  std::string s;
  s += static_cast<char>(code >> 8);
  s += static_cast<char>(code & 0xFF);
  return s.append(reason.data(), reason.size());
}

// One frame from the server, with every header bit as received.
struct server_frame {
  bool fin = false;
  unsigned rsv = 0;
  unsigned opcode = 0;
  bool masked = false;
  bool minimal = false; // the length used the shortest encoding
  std::string payload;
};

// What a server may send: final (it never fragments), no RSV bits, no mask,
// the length minimally encoded, a known opcode.
bool well_formed(const server_frame& f) {
  const bool known = f.opcode == op_text || f.opcode == op_binary ||
                     f.opcode == op_close || f.opcode == op_ping ||
                     f.opcode == op_pong;
  return f.fin && f.rsv == 0 && !f.masked && f.minimal && known;
}

std::optional<server_frame>
next_frame(raw_conn& c, std::chrono::milliseconds timeout = event_timeout) {
  std::size_t head = 0;
  std::uint64_t len = 0;
  auto complete = [&](const std::string& in) {
    if (in.size() < 2)
      return false;
    const auto b1 = static_cast<unsigned char>(in[1]);
    const auto l7 = b1 & 0x7Fu;
    head = (l7 < 126 ? 2 : l7 == 126 ? 4 : 10) + ((b1 & 0x80) ? 4 : 0);
    if (in.size() < head)
      return false;
    len = l7;
    if (l7 >= 126) {
      len = 0;
      for (std::size_t i = 2; i < (l7 == 126 ? 4u : 10u); ++i)
        len = (len << 8) | static_cast<unsigned char>(in[i]);
    }
    return in.size() - head >= len;
  };
  if (!c.read_until(complete, timeout))
    return std::nullopt;
  const auto b0 = static_cast<unsigned char>(c.in[0]);
  const auto b1 = static_cast<unsigned char>(c.in[1]);
  server_frame f;
  f.fin = (b0 & 0x80) != 0;
  f.rsv = (b0 >> 4) & 0x7;
  f.opcode = b0 & 0x0F;
  f.masked = (b1 & 0x80) != 0;
  const auto l7 = b1 & 0x7Fu;
  f.minimal = l7 < 126 || (l7 == 126 && len >= 126 && len <= 0xFFFF) ||
              (l7 == 127 && len > 0xFFFF && (len >> 63) == 0);
  f.payload = c.in.substr(head, static_cast<std::size_t>(len));
  if (f.masked)
    for (std::size_t i = 0; i < f.payload.size(); ++i)
      f.payload[i] = static_cast<char>(f.payload[i] ^ c.in[head - 4 + i % 4]);
  c.in.erase(0, head + static_cast<std::size_t>(len));
  return f;
}

std::uint16_t close_code(const server_frame& f) {
  if (f.payload.size() < 2)
    return 0;
  return static_cast<std::uint16_t>(
      (static_cast<unsigned char>(f.payload[0]) << 8) |
      static_cast<unsigned char>(f.payload[1]));
}

std::string close_reason(const server_frame& f) {
  return f.payload.size() < 2 ? std::string() : f.payload.substr(2);
}

// Reads until the server ends the TCP connection; true when it did.
bool await_eof(raw_conn& c, std::chrono::milliseconds timeout = event_timeout) {
  c.read_until([](const std::string&) { return false; }, timeout);
  return c.eof;
}

std::string handshake(const std::string& host, std::string_view key,
                      std::string_view version,
                      std::string_view extra_headers = {}) {
  std::string req = "GET /ws HTTP/1.1\r\nHost: " + host +
                    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
  if (!key.empty())
    req += "Sec-WebSocket-Key: " + std::string(key) + "\r\n";
  if (!version.empty())
    req += "Sec-WebSocket-Version: " + std::string(version) + "\r\n";
  return req.append(extra_headers.data(), extra_headers.size()) + "\r\n";
}

// A raw client with an open WebSocket session whose handler the fake
// application holds at `index`.
struct ws_peer {
  explicit ws_peer(running_server& s) : c(s.port()) {
    REQUIRE(c.connected);
    int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const auto before = s.app->locked([&] { return s.app->sinks.size(); });
    REQUIRE(c.send_all(upgrade_request(s.host(), "")));
    auto res = read_response(c, false);
    REQUIRE(res);
    REQUIRE(res->status == 101);
    REQUIRE(s.app->wait([&] { return s.app->sinks.size() > before; }));
    index = before;
    sink = s.app->locked([&] { return s.app->sinks[before]; });
  }

  bool send(std::uint8_t b0, std::string_view payload) {
    return c.send_all(client_frame(b0, payload));
  }

  raw_conn c;
  std::size_t index = 0;
  std::shared_ptr<frame_sink> sink;
};

// Expects a well-formed close frame with `code` (and `reason` unless null),
// answers it as a client must, and expects the server to end TCP.
void expect_close(ws_peer& p, std::uint16_t code, const char* reason) {
  auto f = next_frame(p.c);
  REQUIRE(f);
  CHECK(well_formed(*f));
  REQUIRE(f->opcode == op_close);
  CHECK(close_code(*f) == code);
  if (reason)
    CHECK(close_reason(*f) == reason);
  // A server failing the connection may end TCP without waiting for this.
  p.c.send_all(client_frame(fin | op_close, close_body(code)));
  CHECK(await_eof(p.c));
}

std::string reason_of(protocol::close_reason r) {
  return std::string(protocol::describe(r).reason);
}

std::size_t message_count(fake_app& app) {
  return app.locked([&] { return app.messages.size(); });
}

// --- a view of the server's end of a loopback connection -----------------

bool same_address(const sockaddr_in& a, const sockaddr_in& b) {
  return a.sin_family == b.sin_family && a.sin_port == b.sin_port &&
         a.sin_addr.s_addr == b.sin_addr.s_addr;
}

// The server's socket for client socket `fd`: the server runs in this
// process, so it is one of our descriptors.
int server_side_fd(int fd) {
  sockaddr_in mine{}, peer{};
  socklen_t len = sizeof(mine);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&mine), &len) != 0)
    return -1;
  len = sizeof(peer);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0)
    return -1;
  int found = -1;
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir)
    return -1;
  while (dirent* e = ::readdir(dir)) {
    const int other = std::atoi(e->d_name);
    if (other <= 2 || other == fd)
      continue;
    sockaddr_in a{}, b{};
    socklen_t la = sizeof(a), lb = sizeof(b);
    if (::getsockname(other, reinterpret_cast<sockaddr*>(&a), &la) == 0 &&
        ::getpeername(other, reinterpret_cast<sockaddr*>(&b), &lb) == 0 &&
        same_address(a, peer) && same_address(b, mine)) {
      found = other;
      break;
    }
  }
  ::closedir(dir);
  return found;
}

// Waits until everything the client wrote has left its socket and the
// server has read it from its own: the next write then arrives in a read of
// its own. (Only sharpens the split tests; their assertions do not depend
// on it.)
bool server_read_all(raw_conn& c, int server_fd) {
  const auto deadline = clock_type::now() + event_timeout;
  while (clock_type::now() < deadline) {
    int unsent = -1, unread = -1;
    if (::ioctl(c.fd, SIOCOUTQNSD, &unsent) == 0 && unsent == 0 &&
        ::ioctl(server_fd, FIONREAD, &unread) == 0 && unread == 0)
      return true;
    std::this_thread::yield();
  }
  return false;
}

// Payload of frame `i` in the batching tests: its number, then filler, with
// lengths across the 7/16/64-bit header boundaries and past one batch.
std::string batch_payload(int producer, int i) {
  std::string p = std::to_string(producer) + ":" + std::to_string(i) + ":";
  std::size_t size = static_cast<std::size_t>(i % 300);
  if (i % 2500 == 1234)
    size = 70000;
  p.resize(std::max(size, p.size()), static_cast<char>('a' + i % 26));
  return p;
}

// Pings and waits for the pong: every write queued before it has completed
// (control frames go between batches), so the counters include them.
void ping_barrier(ws_peer& p) {
  REQUIRE(p.send(fin | op_ping, "barrier"));
  auto f = next_frame(p.c);
  REQUIRE(f);
  REQUIRE(f->opcode == op_pong);
  REQUIRE(f->payload == "barrier");
}

} // namespace

TEST_CASE("a malformed WebSocket handshake is refused over HTTP",
          "[transport][ws]") {
  auto app = std::make_shared<fake_app>();
  running_server s{test_options(), app};
  raw_conn c{s.port()};
  REQUIRE(c.connected);
  const std::string key = "dGhlIHNhbXBsZSBub25jZQ==";

  SECTION("no Sec-WebSocket-Key: 400") {
    REQUIRE(c.send_all(handshake(s.host(), "", "13")));
    auto res = read_response(c);
    REQUIRE(res);
    CHECK(res->status == 400);
    CHECK(res->headers.count("sec-websocket-accept") == 0);
  }
  SECTION("a key that is not 16 bytes of base64: 400") {
    REQUIRE(c.send_all(handshake(s.host(), "dGhlIHNhbXBsZSBub25jZR==", "13")));
    auto res = read_response(c);
    REQUIRE(res);
    CHECK(res->status == 400);
  }
  SECTION("version 8: 426 naming version 13") {
    REQUIRE(c.send_all(handshake(s.host(), key, "8")));
    auto res = read_response(c);
    REQUIRE(res);
    CHECK(res->status == 426);
    CHECK(res->headers["sec-websocket-version"] == "13");
    CHECK(res->headers.count("sec-websocket-accept") == 0);
  }
  SECTION("no version: 426") {
    REQUIRE(c.send_all(handshake(s.host(), key, "")));
    auto res = read_response(c);
    REQUIRE(res);
    CHECK(res->status == 426);
    CHECK(res->headers["sec-websocket-version"] == "13");
  }
  // The connection ends and the application never hears of it.
  CHECK(await_eof(c));
  CHECK(app->locked([&] { return app->opened.empty(); }));
}

TEST_CASE("a good handshake is answered with 101 and no extension",
          "[transport][ws]") {
  auto app = std::make_shared<fake_app>();
  running_server s{test_options(), app};
  raw_conn c{s.port()};
  REQUIRE(c.connected);
  // permessage-deflate is offered; the server negotiates no extension.
  REQUIRE(c.send_all(handshake(s.host(), "x3JJHMbDL1EzLkh9GBhXDw==", "13",
                               "Sec-WebSocket-Extensions: permessage-deflate; "
                               "client_max_window_bits\r\n")));
  auto res = read_response(c, false);
  REQUIRE(res);
  CHECK(res->status == 101);
  CHECK(res->headers["sec-websocket-accept"] == "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
  CHECK(lower(res->headers["upgrade"]) == "websocket");
  CHECK(lower(res->headers["connection"]) == "upgrade");
  CHECK(res->headers.count("sec-websocket-extensions") == 0);
  CHECK(res->headers.count("content-length") == 0);
  CHECK(c.in.empty()); // nothing after the head

  // No compression: a frame with RSV1 (a compressed message) is refused.
  REQUIRE(app->wait([&] { return app->sinks.size() == 1; }));
  REQUIRE(c.send_all(client_frame(fin | 0x40 | op_text, "x")));
  auto f = next_frame(c);
  REQUIRE(f);
  CHECK(f->opcode == op_close);
  CHECK(close_code(*f) == 1002);
}

TEST_CASE("a fragmented message arrives whole", "[transport][ws]") {
  auto app = std::make_shared<fake_app>();
  running_server s{test_options(), app};
  ws_peer p{s};

  SECTION("text, continuations and pings between them") {
    REQUIRE(p.send(op_text, "Hel"));
    REQUIRE(p.send(fin | op_ping, "p1"));
    REQUIRE(p.send(op_continuation, "lo "));
    REQUIRE(p.send(fin | op_ping, "p2"));
    REQUIRE(p.send(fin | op_continuation, "world"));
    // The pongs answer at once; the message is whole only after the last
    // fragment, and the echo follows.
    for (std::string expected : {"p1", "p2"}) {
      auto f = next_frame(p.c);
      REQUIRE(f);
      CHECK(well_formed(*f));
      CHECK(f->opcode == op_pong);
      CHECK(f->payload == expected);
    }
    auto echo = next_frame(p.c);
    REQUIRE(echo);
    CHECK(echo->opcode == op_text);
    CHECK(echo->payload == "Hello world");
    CHECK(app->locked([&] { return app->messages; }) ==
          std::vector<std::string>{"Hello world"});
    CHECK(s.srv.counters().frames_in == 1);
    CHECK(s.srv.counters().bytes_in == 11);
  }
  SECTION("a UTF-8 character split across fragments") {
    REQUIRE(p.send(op_text, "\xE2"));
    REQUIRE(p.send(op_continuation, "\x82"));
    REQUIRE(p.send(fin | op_continuation, "\xAC"));
    auto echo = next_frame(p.c);
    REQUIRE(echo);
    CHECK(echo->payload == "\xE2\x82\xAC");
  }
  SECTION("empty fragments") {
    REQUIRE(p.send(op_text, ""));
    REQUIRE(p.send(op_continuation, ""));
    REQUIRE(p.send(fin | op_continuation, ""));
    REQUIRE(p.send(op_text, "a"));
    REQUIRE(p.send(fin | op_continuation, ""));
    for (std::string expected : {"", "a"}) {
      auto echo = next_frame(p.c);
      REQUIRE(echo);
      CHECK(echo->opcode == op_text);
      CHECK(echo->payload == expected);
    }
  }
  SECTION("fragments that add up to max_message_size exactly") {
    const std::string a(40000, 'a'), b(25536, 'b');
    REQUIRE(p.send(op_text, a));
    REQUIRE(p.send(fin | op_continuation, b));
    auto echo = next_frame(p.c);
    REQUIRE(echo);
    CHECK(well_formed(*echo)); // 64-bit length
    CHECK(echo->payload == a + b);
  }
}

TEST_CASE("a message split at every byte boundary across TCP writes",
          "[transport][ws]") {
  auto app = std::make_shared<fake_app>();
  app->echo = false;
  running_server s{test_options(), app};
  ws_peer p{s};
  const int server_fd = server_side_fd(p.c.fd);
  REQUIRE(server_fd >= 0);

  // Sends `wire` in two writes cut at each point from `cuts` and checks
  // that one message, `expected`, arrives each time (and the pong for
  // `ping`, if `wire` holds one).
  auto split_each = [&](const std::string& wire, const std::string& expected,
                        const std::vector<std::size_t>& cuts,
                        std::optional<std::string> ping = std::nullopt) {
    for (auto cut : cuts) {
      INFO("cut after " << cut << " of " << wire.size() << " bytes");
      const auto before = message_count(*app);
      REQUIRE(p.c.send_all(wire.substr(0, cut)));
      REQUIRE(server_read_all(p.c, server_fd));
      CHECK(message_count(*app) == before); // not yet
      REQUIRE(p.c.send_all(wire.substr(cut)));
      REQUIRE(app->wait([&] { return app->messages.size() == before + 1; }));
      REQUIRE(app->locked([&] { return app->messages.back(); }) == expected);
      if (ping) {
        auto pong = next_frame(p.c);
        REQUIRE(pong);
        CHECK(pong->opcode == op_pong);
        CHECK(pong->payload == *ping);
      }
    }
  };
  auto every_cut = [](std::size_t n) {
    std::vector<std::size_t> cuts;
    for (std::size_t k = 1; k < n; ++k)
      cuts.push_back(k);
    return cuts;
  };

  SECTION("7-bit length") {
    const std::string msg = "split me anywhere";
    const auto wire = client_frame(fin | op_text, msg);
    split_each(wire, msg, every_cut(wire.size()));
  }
  SECTION("16-bit length") {
    std::string msg;
    for (int i = 0; msg.size() < 300; ++i)
      msg += std::to_string(i) + ",";
    const auto wire = client_frame(fin | op_text, msg);
    split_each(wire, msg, every_cut(wire.size()));
  }
  SECTION("64-bit length: every cut in the header, some in the payload") {
    std::string msg(65536, 'x');
    for (std::size_t i = 0; i < msg.size(); i += 7)
      msg[i] = static_cast<char>('a' + i % 26);
    const auto wire = client_frame(fin | op_text, msg);
    std::vector<std::size_t> cuts = every_cut(15);
    for (std::size_t k : {100, 4096, 32768, 65535, 65549})
      cuts.push_back(k);
    split_each(wire, msg, cuts);
  }
  SECTION("a fragmented message with a ping inside, cut anywhere") {
    const auto wire = client_frame(op_text, "frag") +
                      client_frame(fin | op_ping, "in between") +
                      client_frame(fin | op_continuation, "mented");
    split_each(wire, "fragmented", every_cut(wire.size()), "in between");
  }
  SECTION("one byte per write") {
    std::string msg(200, 'q');
    const auto wire = client_frame(fin | op_text, msg) +
                      client_frame(fin | op_text, "second");
    for (char ch : wire) {
      REQUIRE(p.c.send_all(std::string(1, ch)));
      REQUIRE(server_read_all(p.c, server_fd));
    }
    REQUIRE(app->wait([&] { return app->messages.size() == 2; }));
    CHECK(app->messages[0] == msg);
    CHECK(app->messages[1] == "second");
  }
  // The session is still open and in step.
  ping_barrier(p);
}

TEST_CASE("pings are answered and unsolicited pongs ignored",
          "[transport][ws]") {
  auto app = std::make_shared<fake_app>();
  running_server s{test_options(), app};
  ws_peer p{s};

  SECTION("a pong carries the ping's payload") {
    std::string all_bytes;
    for (int i = 0; i < 125; ++i)
      all_bytes += static_cast<char>(i * 2 + 1);
    for (const std::string& payload :
         {std::string("hello"), std::string(), all_bytes}) {
      REQUIRE(p.send(fin | op_ping, payload));
      auto f = next_frame(p.c);
      REQUIRE(f);
      CHECK(well_formed(*f));
      CHECK(f->opcode == op_pong);
      CHECK(f->payload == payload);
    }
  }
  SECTION("an unsolicited pong gets no answer and reaches nobody") {
    REQUIRE(p.send(fin | op_pong, "unsolicited"));
    REQUIRE(p.send(fin | op_text, "after"));
    auto f = next_frame(p.c);
    REQUIRE(f);
    CHECK(f->opcode == op_text); // nothing came before the echo
    CHECK(f->payload == "after");
    CHECK(app->locked([&] { return app->messages; }) ==
          std::vector<std::string>{"after"});
  }
  SECTION("ten pipelined pings in one write get ten pongs in order") {
    std::string wire;
    for (int i = 0; i < 10; ++i)
      wire += client_frame(fin | op_ping, "ping " + std::to_string(i));
    REQUIRE(p.c.send_all(wire));
    for (int i = 0; i < 10; ++i) {
      auto f = next_frame(p.c);
      REQUIRE(f);
      CHECK(well_formed(*f));
      CHECK(f->opcode == op_pong);
      CHECK(f->payload == "ping " + std::to_string(i));
    }
  }
  CHECK(s.srv.counters().connections_open == 1);
}

TEST_CASE("protocol violations close the session with 1002",
          "[transport][ws]") {
  auto app = std::make_shared<fake_app>();
  running_server s{test_options(), app};
  const auto reason = reason_of(protocol::close_reason::protocol_error);
  REQUIRE(reason == "Protocol error");

  struct violation {
    const char* what;
    std::string wire;
  };
  const violation cases[] = {
      {"an unmasked frame", client_frame(fin | op_text, "hello", false)},
      {"an unmasked ping", client_frame(fin | op_ping, "", false)},
      {"a continuation without a start",
       client_frame(fin | op_continuation, "orphan")},
      {"a new text frame while a message is open",
       client_frame(op_text, "one") + client_frame(fin | op_text, "two")},
      {"a binary frame while a text message is open",
       client_frame(op_text, "one") + client_frame(fin | op_binary, "two")},
      {"RSV1", client_frame(fin | 0x40 | op_text, "x")},
      {"RSV2", client_frame(fin | 0x20 | op_text, "x")},
      {"RSV3", client_frame(fin | 0x10 | op_text, "x")},
      {"reserved opcode 3", client_frame(fin | 0x3, "x")},
      {"reserved opcode 11", client_frame(fin | 0xB, "x")},
      {"a ping of 126 bytes",
       client_frame(fin | op_ping, std::string(126, 'p'))},
      {"a fragmented ping", client_frame(op_ping, "p")},
      {"a close with code 1005",
       client_frame(fin | op_close, close_body(1005))},
      {"a close with code 999", client_frame(fin | op_close, close_body(999))},
      {"a close with code 5000",
       client_frame(fin | op_close, close_body(5000))},
      {"a close with a 1-byte payload",
       client_frame(fin | op_close, std::string(1, '\x03'))},
  };
  for (const auto& v : cases) {
    INFO(v.what);
    ws_peer p{s};
    REQUIRE(p.c.send_all(v.wire));
    expect_close(p, 1002, reason.c_str());
    REQUIRE(app->wait([&] { return app->closed[p.index] == 1; }));
    CHECK_FALSE(p.sink->deliver(make_frame("too late")));
  }
  CHECK(app->locked([&] { return app->messages.empty(); }));
  CHECK(s.srv.counters().connections_open == 0);
}

TEST_CASE("text that is not UTF-8 closes the session with 1007",
          "[transport][ws]") {
  auto app = std::make_shared<fake_app>();
  running_server s{test_options(), app};
  const auto reason = reason_of(protocol::close_reason::invalid_payload);

  struct example {
    const char* what;
    std::string wire;
  };
  const example cases[] = {
      {"an overlong NUL", client_frame(fin | op_text, "a\xC0\x80")},
      {"a surrogate", client_frame(fin | op_text, "\xED\xA0\x80")},
      {"0xFF", client_frame(fin | op_text, "ok so far \xFF")},
      {"a message that ends inside a character",
       client_frame(op_text, "abc") +
           client_frame(fin | op_continuation, "\xE2\x82")},
      {"fragments that are each fine but not together",
       client_frame(op_text, "\xE2\x82") +
           client_frame(fin | op_continuation, "(")},
  };
  for (const auto& e : cases) {
    INFO(e.what);
    ws_peer p{s};
    REQUIRE(p.c.send_all(e.wire));
    expect_close(p, 1007, reason.c_str());
    REQUIRE(app->wait([&] { return app->closed[p.index] == 1; }));
  }
  SECTION("a close reason that is not UTF-8 is refused") {
    // ws_frame.hpp answers it with 1002; errors.hpp lists 1007 for it.
    // RFC 6455 allows either.
    ws_peer p{s};
    REQUIRE(p.send(fin | op_close, close_body(1000, "\xFF")));
    auto f = next_frame(p.c);
    REQUIRE(f);
    CHECK(f->opcode == op_close);
    const auto code = close_code(*f);
    CHECK((code == 1002 || code == 1007));
  }
  CHECK(app->locked([&] { return app->messages.empty(); }));
}

TEST_CASE("a message over max_message_size closes the session with 1009",
          "[transport][ws]") {
  auto app = std::make_shared<fake_app>();
  auto opts = test_options();
  opts.max_message_size = 1024;
  running_server s{opts, app};
  const auto reason = reason_of(protocol::close_reason::message_too_big);
  ws_peer p{s};

  SECTION("one frame: the header is enough") {
    // Only the header and a little payload: the length alone decides.
    const auto wire = client_frame(fin | op_text, std::string(1025, 'a'));
    REQUIRE(p.c.send_all(wire.substr(0, 20)));
    expect_close(p, 1009, reason.c_str());
    CHECK(s.srv.counters().oversize_closes == 1);
    REQUIRE(app->wait([&] { return app->closed[0] == 1; }));
    CHECK(app->locked([&] { return app->messages.empty(); }));
  }
  SECTION("fragments that add up to more") {
    REQUIRE(p.send(op_text, std::string(600, 'a')));
    REQUIRE(p.send(fin | op_ping, "not counted"));
    auto pong = next_frame(p.c);
    REQUIRE(pong);
    CHECK(pong->opcode == op_pong);
    REQUIRE(p.send(op_continuation, std::string(424, 'b'))); // 1024 so far
    REQUIRE(p.send(fin | op_continuation, "c"));
    expect_close(p, 1009, reason.c_str());
    CHECK(s.srv.counters().oversize_closes == 1);
  }
  SECTION("fragments that add up to exactly the limit are fine") {
    REQUIRE(p.send(op_binary, std::string(512, 'a')));
    REQUIRE(p.send(fin | op_continuation, std::string(512, 'b')));
    REQUIRE(app->wait([&] { return app->messages.size() == 1; }));
    CHECK(app->messages[0].size() == 1024);
    auto echo = next_frame(p.c);
    REQUIRE(echo);
    CHECK(echo->payload == std::string(512, 'a') + std::string(512, 'b'));
    ping_barrier(p);
    CHECK(s.srv.counters().oversize_closes == 0);
  }
}

// After failing the connection for a frame it will not read, the session
// must not parse the client's later bytes: they start inside the refused
// frame's payload (RFC 6455 7.1.7). Parsing them once swallowed the client's
// close reply, so TCP lasted until handshake_timeout, and counted a second
// 1009 when the payload looked like a header.
TEST_CASE("after a 1009 the connection ends promptly", "[transport][ws]") {
  // A client cannot stop inside a frame: it finishes writing the message
  // the server refused, then reads the close and answers it.
  auto app = std::make_shared<fake_app>();
  auto opts = test_options();
  opts.max_message_size = 1024;
  opts.handshake_timeout = 10s; // also bounds the wait for the close reply
  running_server s{opts, app};
  ws_peer p{s};
  const auto wire = client_frame(fin | op_binary, std::string(4000, 'a'));
  REQUIRE(p.c.send_all(wire.substr(0, 100)));
  auto f = next_frame(p.c);
  REQUIRE(f);
  REQUIRE(f->opcode == op_close);
  CHECK(close_code(*f) == 1009);
  const auto t0 = clock_type::now();

  SECTION("the rest of the payload, then the close reply") {
    // The server may have ended TCP already: a failed write is fine.
    p.c.send_all(wire.substr(100) +
                 client_frame(fin | op_close, close_body(1009)));
    const bool ended = await_eof(p.c, 3000ms);
    INFO("waited " << std::chrono::duration_cast<std::chrono::milliseconds>(
                          clock_type::now() - t0)
                          .count()
                   << " ms");
    CHECK(ended);
    if (ended)
      CHECK(app->wait([&] { return app->closed[0] == 1; }));
  }
  SECTION("payload bytes that look like a header are not a second 1009") {
    // The rest of the refused payload happens to read like a frame header
    // announcing 1 MiB.
    std::string tail = "\x82\xFF";
    tail += std::string("\x00\x00\x00\x00\x00\x10\x00\x00", 8);
    tail += "MASK";
    tail.resize(wire.size() - 100, 'z');
    p.c.send_all(tail + client_frame(fin | op_close, close_body(1009)));
    await_eof(p.c, 3000ms);
    CHECK(s.srv.counters().oversize_closes == 1);
  }
}

TEST_CASE("a client close is echoed and ends the connection",
          "[transport][ws]") {
  auto app = std::make_shared<fake_app>();
  {
    running_server s{test_options(), app};
    ws_peer p{s};
    REQUIRE(p.send(fin | op_text, "first"));
    auto echo = next_frame(p.c);
    REQUIRE(echo);
    CHECK(echo->payload == "first");

    SECTION("1000 with a reason: 1000 comes back, then TCP ends") {
      REQUIRE(p.send(fin | op_close, close_body(1000, "bye")));
      auto f = next_frame(p.c);
      REQUIRE(f);
      CHECK(well_formed(*f));
      CHECK(f->opcode == op_close);
      CHECK(close_code(*f) == 1000);
    }
    SECTION("an application code comes back as it was") {
      REQUIRE(p.send(fin | op_close, close_body(4000, "custom")));
      auto f = next_frame(p.c);
      REQUIRE(f);
      CHECK(f->opcode == op_close);
      CHECK(close_code(*f) == 4000);
    }
    SECTION("no code: an empty close comes back") {
      REQUIRE(p.send(fin | op_close, ""));
      auto f = next_frame(p.c);
      REQUIRE(f);
      CHECK(f->opcode == op_close);
      CHECK(f->payload.empty());
    }
    // The server ends TCP without waiting for anything else from us.
    CHECK(await_eof(p.c));
    CHECK(p.c.in.empty());
    REQUIRE(app->wait([&] { return app->closed[0] == 1; }));
    CHECK(s.srv.counters().connections_open == 0);
    CHECK_FALSE(p.sink->deliver(make_frame("after")));
    CHECK(app->locked([&] { return app->messages.size(); }) == 1);
  }
  CHECK(all_closed_once(*app));
}

TEST_CASE("binary messages are passed through", "[transport][ws]") {
  auto app = std::make_shared<fake_app>();
  app->echo = false; // the sink sends text frames only
  running_server s{test_options(), app};
  ws_peer p{s};
  std::string all;
  for (int i = 0; i < 256; ++i)
    all += static_cast<char>(i);
  REQUIRE(p.send(fin | op_binary, all));
  REQUIRE(p.send(op_binary, all.substr(0, 100)));
  REQUIRE(p.send(fin | op_continuation, all.substr(100)));
  REQUIRE(app->wait([&] { return app->messages.size() == 2; }));
  CHECK(app->messages[0] == all);
  CHECK(app->messages[1] == all);
  ping_barrier(p); // not closed: binary is not checked as UTF-8
  CHECK(s.srv.counters().bytes_in == 512);
}

TEST_CASE("frames delivered as fast as possible arrive intact and in order",
          "[transport][ws]") {
  auto app = std::make_shared<fake_app>();
  app->echo = false;
  auto opts = test_options();
  opts.max_queue_bytes = 64u << 20; // about the speed, not the bound
  running_server s{opts, app};
  ws_peer p{s};
  constexpr int total = 10000;

  // Reads `total` frames; `check(frame)` returns false for a bad one.
  auto read_all = [&](auto check) {
    int bad = 0, first_bad = -1;
    for (int n = 0; n < total; ++n) {
      auto f = next_frame(p.c);
      if (!f) {
        INFO("frame " << n << " did not arrive");
        FAIL();
      }
      if (!well_formed(*f) || f->opcode != op_text || !check(*f)) {
        if (bad++ == 0)
          first_bad = n;
      }
    }
    INFO("first bad frame: " << first_bad);
    CHECK(bad == 0);
  };

  SECTION("one producer thread") {
    std::atomic<int> refused{0};
    std::uint64_t bytes = 0;
    for (int i = 0; i < total; ++i)
      bytes += batch_payload(0, i).size();
    std::thread producer([&] {
      for (int i = 0; i < total; ++i)
        if (!p.sink->deliver(make_frame(batch_payload(0, i))))
          ++refused;
    });
    int next = 0;
    read_all([&](const server_frame& f) {
      return f.payload == batch_payload(0, next++);
    });
    producer.join();
    CHECK(refused == 0);
    ping_barrier(p);
    const auto k = s.srv.counters();
    CHECK(k.frames_out == total);
    CHECK(k.bytes_out == bytes);
    CHECK(p.sink->queued_bytes() == 0);
  }
  SECTION("two producer threads keep each one's order") {
    std::atomic<int> refused{0};
    std::vector<std::thread> producers;
    for (int t = 0; t < 2; ++t)
      producers.emplace_back([&, t] {
        for (int i = 0; i < total / 2; ++i)
          if (!p.sink->deliver(make_frame(batch_payload(t, i))))
            ++refused;
      });
    int next[2] = {0, 0};
    read_all([&](const server_frame& f) {
      const int t = f.payload[0] - '0';
      if (t != 0 && t != 1)
        return false;
      return f.payload == batch_payload(t, next[t]++);
    });
    for (auto& t : producers)
      t.join();
    CHECK(refused == 0);
    CHECK(next[0] == total / 2);
    CHECK(next[1] == total / 2);
    ping_barrier(p);
    CHECK(s.srv.counters().frames_out == total);
  }
}

TEST_CASE("a server close follows every frame queued before it",
          "[transport][ws]") {
  auto app = std::make_shared<fake_app>();
  {
    running_server s{test_options(), app};
    ws_peer p{s};
    constexpr int frames = 300;
    for (int i = 0; i < frames; ++i)
      REQUIRE(p.sink->deliver(make_frame(batch_payload(0, i))));
    p.sink->close(4001, "Slow consumer");
    CHECK_FALSE(p.sink->deliver(make_frame("after the close")));
    for (int i = 0; i < frames; ++i) {
      auto f = next_frame(p.c);
      REQUIRE(f);
      REQUIRE(f->opcode == op_text);
      REQUIRE(f->payload == batch_payload(0, i));
    }
    auto f = next_frame(p.c);
    REQUIRE(f);
    CHECK(well_formed(*f));
    REQUIRE(f->opcode == op_close);
    CHECK(close_code(*f) == 4001);
    CHECK(close_reason(*f) == "Slow consumer");
    // Data after the server's close is read and dropped, pings unanswered.
    REQUIRE(p.send(fin | op_text, "ignored"));
    REQUIRE(p.send(fin | op_ping, "ignored"));
    REQUIRE(p.send(fin | op_close, close_body(4001)));
    CHECK(await_eof(p.c));
    CHECK(p.c.in.empty());
    REQUIRE(app->wait([&] { return app->closed[0] == 1; }));
    CHECK(app->locked([&] { return app->messages.empty(); }));
    CHECK(s.srv.counters().frames_out == frames);
  }
  CHECK(all_closed_once(*app));
}

TEST_CASE("keepalive pings a silent client and drops an unresponsive one",
          "[transport][ws]") {
  auto app = std::make_shared<fake_app>();
  auto opts = test_options();
  opts.idle_timeout = 2s; // ping after 1 s of silence, give up after 2 s
  running_server s{opts, app};
  ws_peer p{s};
  const auto t0 = clock_type::now();
  auto since = [&] { return clock_type::now() - t0; };

  auto ping = next_frame(p.c, 5000ms);
  REQUIRE(ping);
  CHECK(well_formed(*ping));
  REQUIRE(ping->opcode == op_ping);
  INFO("first ping after "
       << std::chrono::duration_cast<std::chrono::milliseconds>(since()).count()
       << " ms");
  CHECK(since() > 700ms);
  CHECK(since() < 1800ms);

  SECTION("a client that answers stays open") {
    REQUIRE(p.send(fin | op_pong, ping->payload));
    // The next ping comes a whole period later: the session lived past the
    // 2 s idle time.
    auto again = next_frame(p.c, 5000ms);
    REQUIRE(again);
    REQUIRE(again->opcode == op_ping);
    CHECK(since() > 2500ms);
    REQUIRE(p.send(fin | op_pong, again->payload));
    REQUIRE(p.send(fin | op_text, "still here"));
    auto echo = next_frame(p.c);
    REQUIRE(echo);
    CHECK(echo->payload == "still here");
    CHECK(app->locked([&] { return app->closed[0]; }) == 0);
  }
  SECTION("a client that never answers is disconnected") {
    CHECK(await_eof(p.c, 5000ms));
    INFO("disconnected after "
         << std::chrono::duration_cast<std::chrono::milliseconds>(since())
                .count()
         << " ms");
    CHECK(since() > 1700ms);
    CHECK(since() < 3500ms);
    CHECK(p.c.in.empty()); // no close frame: it would wait behind the peer
    REQUIRE(app->wait([&] { return app->closed[0] == 1; }));
  }
}

TEST_CASE("an independent client round-trips messages of boundary sizes",
          "[transport][ws]") {
  auto app = std::make_shared<fake_app>();
  running_server s{test_options(), app}; // max_message_size 65536
  ws_client c;                           // Beast's websocket::stream
  REQUIRE(c.connect("127.0.0.1", s.port(), "/ws"));
  for (std::size_t size : {0, 1, 125, 126, 127, 65535, 65536}) {
    INFO("size " << size);
    std::string msg(size, ' ');
    for (std::size_t i = 0; i < size; ++i)
      msg[i] = static_cast<char>('!' + (i * 7 + size) % 90);
    REQUIRE(c.send(msg));
    auto m = c.read(5000ms);
    REQUIRE(m);
    CHECK(m->size() == size);
    CHECK(*m == msg);
  }
  c.close();
  REQUIRE(app->wait([&] { return app->closed[0] == 1; }));
  CHECK(s.srv.counters().frames_in == 7);
  CHECK(s.srv.counters().frames_out == 7);
}

// http_session reads the upgrade request into its own buffer; bytes that
// came in the same read as the request head must reach the session. RFC
// 6455 4.1 has clients wait for the 101, but an eager one loses nothing.
TEST_CASE("a frame sent right behind the upgrade request is not lost",
          "[transport][ws]") {
  auto app = std::make_shared<fake_app>();
  running_server s{test_options(), app};
  raw_conn c{s.port()};
  REQUIRE(c.connected);
  REQUIRE(c.send_all(upgrade_request(s.host(), "") +
                     client_frame(fin | op_text, "early")));
  auto res = read_response(c, false);
  REQUIRE(res);
  REQUIRE(res->status == 101);
  REQUIRE(c.send_all(client_frame(fin | op_text, "late")));
  auto first = next_frame(c);
  REQUIRE(first);
  CHECK(first->payload == "early");
}
