// `tidings bench`: a bounded, loopback-only load generator. N WebSocket
// subscribers spread over R rooms, M events published at a paced rate;
// every payload carries its send time on this process's steady clock, so
// publish-to-receive latency needs no clock sync.
//
// Three scenarios (--mode): fanout (publish, measure delivery), idle (hold
// the connections, measure the server's memory per connection) and storm
// (every subscriber drops its socket mid-stream and resumes: measure how
// long until nobody has a hole). Two wire protocols (--protocol): the
// native one (plain WebSocket, frames from templates) and Socket.IO 4
// (Engine.IO v4 over WebSocket, see bench_sio.hpp). Publishing goes over
// keep-alive HTTP or over WebSocket connections (--publish-method). The
// wire details are templates, so the same generator drives Tidings and its
// peers (nginx+nchan, Socket.IO, plain `ws`) on loopback.
//
// Everything runs on one io_context on one thread: the generator shares the
// machine's cores with the server it measures, and one thread keeps its own
// cost small, measurable and free of locks.
//
// This is the only Beast translation unit in app/; the bookkeeping it needs
// lives in bench_stats, bench_storm, bench_sio, bench_source, bench_proc and
// bench_report, which have no sockets.
#include "app/bench_proc.hpp"
#include "app/bench_report.hpp"
#include "app/bench_sio.hpp"
#include "app/bench_source.hpp"
#include "app/bench_stats.hpp"
#include "app/bench_storm.hpp"
#include "app/commands.hpp"
#include "app/options.hpp"
#include "protocol/jwt.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

namespace tidings::app {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using steady = std::chrono::steady_clock;

const char* usage_line = "tidings bench [options]";

// Printed after the options by --help: the contract scripts rely on.
const char* help_epilogue = R"(
Modes:
  fanout  subscribers connect and subscribe, then --events are published at
          --rate; reports deliveries/s, latency, missed/duplicated/misrouted.
  idle    subscribers connect and subscribe, then the bench holds them for
          --idle-hold seconds and publishes nothing. The server's RSS and PSS
          (summed over every --server-pid) are read before the first
          connection and after the hold: rss_per_conn_bytes and
          pss_per_conn_bytes = (after - before) / connected.
  storm   like fanout, but --storm-after seconds after publishing starts
          every subscriber closes its TCP socket at once (no WebSocket close)
          and reconnects (at most --max-handshakes in flight), resuming from
          its cursor: native = --resume-frame with the epoch and offset of
          the last event it received (or of its subscribe confirmation);
          socketio --sio-recovery = 40{"pid","offset"}; otherwise the
          --subscribe-frame again (missed events are expected then).
          storm_reconnect_ms: from the drop until every dropped subscriber
          is subscribed again (empty if one failed).
          storm_catchup_ms: from the drop until the last subscriber caught
          up. Subscriber c, subscribed again at R_c, has caught up at the
          first instant >= R_c at which it holds every event of its room
          the bench had sent before R_c (all published before the drop and
          while it was away, in any arrival order). It counts only if at
          the end it also holds every later event that was sent and not
          refused (no hole left). Empty unless every one caught up.
          Duplicates across the reconnect count as duplicated.

Socket.IO (--protocol socketio): Engine.IO v4 over WebSocket only; give the
URL, e.g. --url-template '/socket.io/?EIO=4&transport=websocket'. On the
open packet the bench sends 40 (CONNECT, default namespace), on 40{...} the
--subscribe-frame (e.g. 42["join","{room}"]), answers every ping 2 with 3,
and is subscribed when a frame matches --ready-match.

More connections than one source address has local ports (IPv4 loopback):
connection i binds to 127.0.0.(1 + i / --per-source-address).

CSV columns (--format csv --csv-header prints them; scripts should select by
name): host port subscribers rooms events rate publishers payload_bytes
connected connect_failed connect_s handshake_p50_ms handshake_p99_ms
published acked publish_errors ack_p50_ms ack_p99_ms max_behind_schedule_ms
expected received window_s deliveries_per_s latency_p50_ms latency_p90_ms
latency_p99_ms latency_p999_ms latency_max_ms missed duplicated misrouted
out_of_order unacked_deliveries disconnected error_frames cpu_window_s
server_cpu_s server_cpu_pct deliveries_per_server_cpu_s
server_rss_before_connect server_rss_after_connect server_rss_per_connection
server_rss_end server_pss_end bench_cpu_s bench_cpu_pct timed_out ok mode
protocol publish_method sio_recovery source_addresses idle_hold_s
server_pss_before_connect server_rss_after_hold server_pss_after_hold
rss_per_conn_bytes pss_per_conn_bytes bench_rss_bytes storm_after_s
storm_sent_before_drop storm_dropped storm_reconnected
storm_reconnect_failed storm_recovered storm_caught_up storm_reconnect_ms
storm_catchup_ms. Empty cell = not measured. handshake_* is the connect
time: TCP connect to subscribed.
)";

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          steady::now().time_since_epoch())
          .count());
}

enum class output_format { human, json, csv };
enum class run_mode { fanout, idle, storm };
enum class wire_protocol { native, socketio };
enum class publish_via { http, ws };

struct bench_config {
  std::string host; // as given, for Host headers
  net::ip::address address;
  std::uint16_t port = 0;
  run_mode mode = run_mode::fanout;
  wire_protocol protocol = wire_protocol::native;
  publish_via publish_method = publish_via::http;
  bool sio_recovery = false;
  std::size_t subscribers = 0;
  std::size_t rooms = 0;
  std::uint64_t events = 0;
  double rate = 0;
  std::size_t publishers = 0;      // 0 in idle mode
  std::vector<std::string> tokens; // subscriber i uses tokens[i % size]
  std::string api_key;
  std::string room_prefix;
  std::string url_template;
  std::string subscribe_template;
  std::string resume_template;
  std::vector<std::string> ready_match; // templates, all must appear
  std::string publish_path;
  std::string publish_body;
  std::string publish_url;           // --publish-method ws
  std::string publish_frame;         // --publish-method ws
  bool publish_url_per_room = false; // publish_url names a {room}
  std::chrono::milliseconds timeout{0};
  std::chrono::milliseconds drain{0};
  std::chrono::milliseconds idle_hold{0};
  std::chrono::milliseconds storm_after{0};
  std::vector<int> server_pids;
  std::size_t payload_bytes = 0;
  output_format format = output_format::human;
  bool csv_header = false;
  double connect_rate = 0;
  std::size_t max_handshakes = 0;
  std::uint64_t per_source_address = 0;
  bench::source_plan sources; // set by check_resources
};

const char* mode_name(run_mode m) {
  switch (m) {
  case run_mode::fanout:
    return "fanout";
  case run_mode::idle:
    return "idle";
  case run_mode::storm:
    return "storm";
  }
  return "?";
}

// ---------------------------------------------------------------- options

// Bench options do not read TIDINGS_* variables: a shell set up for
// `tidings serve` (TIDINGS_PORT and friends) must not silently retarget the
// load generator. A --config file still works.
void declare_options(options& o) {
  auto add = [&](const char* name, const char* def, const char* help) {
    o.add(name, def, help, false, false);
  };
  add("host", "127.0.0.1",
      "server address; loopback only (127.0.0.0/8, ::1, localhost)");
  add("port", "8000", "server port");
  add("mode", "fanout", "fanout, idle or storm (see below)");
  add("protocol", "native",
      "native (plain WebSocket, frames from the templates) or socketio "
      "(Engine.IO v4 over WebSocket)");
  add("subscribers", "1000", "WebSocket subscribers");
  add("rooms", "1", "rooms; subscriber i joins room i % rooms");
  add("events", "1000",
      "events published in total; event s goes to room s % rooms (ignored "
      "in idle mode)");
  add("rate", "100", "events per second in total; 0 publishes unpaced");
  add("publishers", "4",
      "connections used to publish, one event in flight on each");
  add("secret", "dev-secret-change-me",
      "HS256 secret used to mint subscriber tokens (rooms claim "
      "<room-prefix>*)");
  add("token", "", "use this token for every subscriber instead of minting");
  add("users", "0",
      "distinct token subjects (bench-0, bench-1, ...); 0 = one per "
      "subscriber");
  add("api-key", "dev-api-key", "publish API key (Authorization: Bearer)");
  add("room-prefix", "bench:", "room names are <room-prefix><index>");
  add("url-template", "/api/v1/ws?token={token}",
      "WebSocket target; {token}, {room} and {i} are replaced");
  add("subscribe-frame", R"({"type":"subscribe","room_id":"{room}"})",
      "text frame sent once connected ({room}, {token}, {i}); empty sends "
      "none (room chosen by the URL). socketio: sent after the CONNECT "
      "ack, e.g. 42[\"join\",\"{room}\"]");
  add("resume-frame",
      R"({"type":"subscribe","room_id":"{room}","since":{"epoch":"{epoch}","offset":{offset}}})",
      "native storm: frame sent on reconnect when the subscriber has a "
      "cursor (the epoch and offset of the last event, or of the subscribe "
      "confirmation); {room}, {token}, {i}, {epoch}, {offset}");
  add("ready-match", R"("subscribed"|"{room}")",
      "'|'-separated substrings ({room} replaced) that must all appear in "
      "one frame for a subscriber to count as subscribed; empty = ready "
      "after the subscribe frame is written");
  o.add("sio-recovery", "false",
        "socketio storm: resume with Socket.IO connection state recovery "
        "(40{\"pid\",\"offset\"}) instead of joining again",
        true, false);
  add("publish-method", "http",
      "http (POST --publish-path, counted when answered 200) or ws (frames "
      "on WebSocket connections to --publish-url, counted when written: no "
      "ack)");
  add("publish-path", "/api/v1/publish", "HTTP POST target ({room})");
  add("publish-body", R"({"room_id":"{room}","type":"bench","data":{data}})",
      "HTTP body; {room} and {data} (the bench payload object) are replaced");
  add("publish-url", "/api/v1/ws?token={token}",
      "publish-method ws: WebSocket target ({token}, {api_key}; with "
      "{room}, publisher p serves room p % rooms only and --publishers must "
      "be at least --rooms)");
  add("publish-frame", R"({"type":"publish","room_id":"{room}","data":{data}})",
      "publish-method ws: text frame per event ({room}, {data}); with "
      "--protocol socketio e.g. 42[\"publish\",\"{room}\",{data}]");
  add("idle-hold", "5", "idle mode: seconds to hold every connection");
  add("storm-after", "2",
      "storm mode: seconds after publishing starts when every subscriber "
      "drops and reconnects");
  add("timeout", "60", "bound on the whole run, seconds");
  add("drain", "5", "seconds to wait for stragglers after the last publish");
  add("server-pid", "",
      "server process id(s), comma-separated (e.g. nginx master and "
      "workers): CPU, RSS and PSS are summed over all of them");
  add("payload-bytes", "0", "pad each payload object to about this size");
  add("format", "human", "output: human, json or csv (one line)");
  o.add("csv-header", "false",
        "with --format csv, print the column names first", true, false);
  add("connect-rate", "0",
      "new connections per second; 0 = as fast as "
      "--max-handshakes allows");
  add("max-handshakes", "200",
      "connection handshakes in flight at once (also bounds a storm's "
      "reconnects)");
  add("per-source-address", "20000",
      "IPv4: above this many connections, bind them to 127.0.0.1, "
      "127.0.0.2, ... this many each (capped at the local port range)");
}

std::optional<net::ip::address> loopback_address(std::string host) {
  if (host == "localhost")
    return net::ip::make_address("127.0.0.1");
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  beast::error_code ec;
  auto a = net::ip::make_address(host, ec);
  if (ec || !a.is_loopback())
    return std::nullopt;
  return a;
}

// Replaces each {name} of `vars` in one pass; other braces (JSON) stay.
std::string expand(
    std::string_view tpl,
    std::initializer_list<std::pair<std::string_view, std::string_view>> vars) {
  std::string out;
  out.reserve(tpl.size() + 64);
  for (std::size_t i = 0; i < tpl.size();) {
    bool replaced = false;
    if (tpl[i] == '{') {
      for (const auto& [key, value] : vars) {
        if (tpl.compare(i, key.size(), key) == 0) {
          out += value;
          i += key.size();
          replaced = true;
          break;
        }
      }
    }
    if (!replaced)
      out += tpl[i++];
  }
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    auto end = s.find(sep, start);
    if (end == std::string::npos)
      end = s.size();
    if (end > start)
      out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::vector<std::string> mint_tokens(const options& o, std::size_t subscribers,
                                     std::int64_t ttl_seconds) {
  if (!o.str("token").empty())
    return {o.str("token")};
  auto users = static_cast<std::size_t>(o.integer("users"));
  if (users == 0 || users > subscribers)
    users = subscribers;
  protocol::token_request req;
  req.rooms = {o.str("room-prefix") + "*"};
  req.iat = std::chrono::duration_cast<std::chrono::seconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count();
  req.ttl_seconds = ttl_seconds;
  std::vector<std::string> tokens;
  tokens.reserve(users);
  for (std::size_t i = 0; i < users; ++i) {
    req.sub = "bench-" + std::to_string(i);
    tokens.push_back(protocol::sign_hs256(req, o.str("secret")));
  }
  return tokens;
}

// Integer option in [lo, hi]; throws std::invalid_argument otherwise.
std::int64_t bounded(const options& o, const char* name, std::int64_t lo,
                     std::int64_t hi) {
  auto v = o.integer(name);
  if (v < lo || v > hi)
    throw std::invalid_argument("--" + std::string(name) + ": must be in [" +
                                std::to_string(lo) + ", " + std::to_string(hi) +
                                "]");
  return v;
}

double non_negative(const options& o, const char* name) {
  auto v = o.number(name);
  if (!(v >= 0))
    throw std::invalid_argument("--" + std::string(name) +
                                ": must not be negative");
  return v;
}

std::chrono::milliseconds seconds_option(const options& o, const char* name) {
  return std::chrono::milliseconds(
      static_cast<std::int64_t>(non_negative(o, name) * 1000));
}

// Reads and checks every option; an error text means a usage error.
std::optional<std::string> read_config(const options& o, bench_config* c) {
  try {
    c->host = o.str("host");
    auto addr = loopback_address(c->host);
    if (!addr)
      return "--host: '" + c->host +
             "' is not a loopback address; the bench only runs on "
             "loopback";
    c->address = *addr;
    c->port = static_cast<std::uint16_t>(bounded(o, "port", 1, 65535));
    auto mode = o.str("mode");
    if (mode == "fanout")
      c->mode = run_mode::fanout;
    else if (mode == "idle")
      c->mode = run_mode::idle;
    else if (mode == "storm")
      c->mode = run_mode::storm;
    else
      return "--mode: expected fanout, idle or storm";
    auto proto = o.str("protocol");
    if (proto == "native")
      c->protocol = wire_protocol::native;
    else if (proto == "socketio")
      c->protocol = wire_protocol::socketio;
    else
      return "--protocol: expected native or socketio";
    c->sio_recovery = o.flag("sio-recovery");
    if (c->sio_recovery && c->protocol != wire_protocol::socketio)
      return "--sio-recovery needs --protocol socketio";
    auto method = o.str("publish-method");
    if (method == "http")
      c->publish_method = publish_via::http;
    else if (method == "ws")
      c->publish_method = publish_via::ws;
    else
      return "--publish-method: expected http or ws";
    c->subscribers =
        static_cast<std::size_t>(bounded(o, "subscribers", 1, 1'000'000));
    c->rooms = static_cast<std::size_t>(bounded(o, "rooms", 1, 1'000'000));
    c->events =
        static_cast<std::uint64_t>(bounded(o, "events", 0, 100'000'000));
    c->rate = non_negative(o, "rate");
    c->publishers = static_cast<std::size_t>(bounded(o, "publishers", 1, 1000));
    if (c->mode == run_mode::idle) {
      c->events = 0;
      c->publishers = 0;
    }
    c->api_key = o.str("api-key");
    c->room_prefix = o.str("room-prefix");
    c->url_template = o.str("url-template");
    c->subscribe_template = o.str("subscribe-frame");
    c->resume_template = o.str("resume-frame");
    c->ready_match = split(o.str("ready-match"), '|');
    c->publish_path = o.str("publish-path");
    c->publish_body = o.str("publish-body");
    c->publish_url = o.str("publish-url");
    c->publish_frame = o.str("publish-frame");
    c->publish_url_per_room =
        c->publish_method == publish_via::ws &&
        c->publish_url.find("{room}") != std::string::npos;
    if (c->publish_url_per_room && c->publishers < c->rooms)
      return "--publish-url names {room}: --publishers must be at least "
             "--rooms";
    auto timeout = bounded(o, "timeout", 1, 24 * 3600);
    c->timeout = std::chrono::seconds(timeout);
    c->drain = seconds_option(o, "drain");
    c->idle_hold = seconds_option(o, "idle-hold");
    c->storm_after = seconds_option(o, "storm-after");
    if (auto err = bench::parse_pids(o.list("server-pid"), &c->server_pids))
      return err;
    c->payload_bytes =
        static_cast<std::size_t>(bounded(o, "payload-bytes", 0, 1 << 20));
    auto fmt = o.str("format");
    if (fmt == "human")
      c->format = output_format::human;
    else if (fmt == "json")
      c->format = output_format::json;
    else if (fmt == "csv")
      c->format = output_format::csv;
    else
      return "--format: expected human, json or csv";
    c->csv_header = o.flag("csv-header");
    c->connect_rate = non_negative(o, "connect-rate");
    c->max_handshakes =
        static_cast<std::size_t>(bounded(o, "max-handshakes", 1, 100'000));
    c->per_source_address = static_cast<std::uint64_t>(
        bounded(o, "per-source-address", 1, 1'000'000));
    if (o.str("token").empty() && o.str("secret").empty())
      return "--secret or --token is required";
    bounded(o, "users", 0, 1'000'000);
    // Long enough to outlive the run, short enough not to be a useful leak.
    c->tokens = mint_tokens(o, c->subscribers, timeout + 600);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return std::nullopt;
}

// Each connection holds a descriptor and, towards one server address and
// port, a distinct local port per source address: check the descriptors,
// and spread IPv4 connections over 127.0.0.x when one address is not
// enough.
std::optional<std::string> check_resources(bench_config& c) {
  std::uint64_t connections = c.subscribers + c.publishers;
  std::uint64_t needed = connections + 64;
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && needed > rl.rlim_cur)
      return std::to_string(connections) + " connections need about " +
             std::to_string(needed) +
             " file descriptors, but the hard limit (ulimit -Hn) is " +
             std::to_string(rl.rlim_cur) +
             "; raise it first (as root: " + "ulimit -n " +
             std::to_string(needed) + ")";
  }
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  std::uint64_t lo = 0;
  std::uint64_t hi = 0;
  if (!(range >> lo >> hi) || hi < lo)
    return std::nullopt; // unknown: let connect() tell
  auto ports = hi - lo + 1;
  if (c.address.is_v4())
    return bench::plan_sources(connections, ports, c.per_source_address,
                               &c.sources);
  if (connections > ports)
    return "the local port range (" + std::to_string(lo) + "-" +
           std::to_string(hi) + ") is too small for " +
           std::to_string(connections) +
           " connections to one IPv6 address; use an IPv4 loopback host, "
           "which spreads them over 127.0.0.x";
  return std::nullopt;
}

// Binds a client socket to its planned source address, if any. The port is
// left to connect() (IP_BIND_ADDRESS_NO_PORT), so the kernel picks one free
// for the whole 4-tuple instead of reserving it for every destination.
beast::error_code bind_source(tcp::socket& socket,
                              const bench::source_plan& plan,
                              std::uint64_t index) {
  beast::error_code ec;
  auto addr = plan.address_for(index);
  if (!addr)
    return ec;
  socket.open(tcp::v4(), ec);
  if (ec)
    return ec;
  int one = 1;
  ::setsockopt(socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT,
               &one, sizeof one);
  socket.bind({net::ip::address_v4(*addr), 0}, ec);
  return ec;
}

// Due times k / rate after a start, computed from k rather than accumulated
// so rounding cannot drift over a long run. A rate of 0 makes all due now.
struct pacer {
  steady::time_point start;
  double rate = 0;

  steady::time_point due(std::uint64_t k) const {
    if (rate <= 0)
      return start;
    return start +
           std::chrono::duration_cast<steady::duration>(
               std::chrono::duration<double>(static_cast<double>(k) / rate));
  }
};

// CPU counters at one instant; two of them bound the publish window.
struct cpu_sample {
  steady::time_point at;
  std::optional<double> server; // seconds, summed over --server-pid
  double self = 0;              // seconds, this process
};

cpu_sample take_cpu_sample(const std::vector<int>& pids) {
  return {steady::now(), bench::process_cpu_seconds(pids),
          bench::self_cpu_seconds()};
}

bool is_error_frame(std::string_view frame) {
  return frame.find(R"("type":"error")") != std::string_view::npos;
}

// ": CODE" from an error frame's "error_code" (or "code") string, so the report
// groups failures by cause; empty when there is none. The text is the
// server's, but it is only counted and printed, never interpreted.
std::string error_code_of(std::string_view frame) {
  for (std::string_view key : {R"("error_code":")", R"("code":")"}) {
    auto k = frame.find(key);
    if (k == std::string_view::npos)
      continue;
    auto start = k + key.size();
    auto end = frame.find('"', start);
    if (end == std::string_view::npos || end - start > 64)
      continue;
    return ": " + std::string(frame.substr(start, end - start));
  }
  return {};
}

std::string describe(const char* stage, const beast::error_code& ec) {
  return std::string(stage) + ": " + ec.message();
}

class bench_run;

// ------------------------------------------------------------- ws_client

// One WebSocket connection that speaks --protocol: it connects (from its
// planned source address), upgrades, and for Socket.IO runs the Engine.IO
// handshake and heartbeat; the subclass gets "session open" and the
// application frames. Writes are queued, one in flight. abort_link() closes
// the TCP socket at once; a generation number makes the aborted
// connection's late completions no-ops. Runs on the bench's io_context
// thread.
class ws_client {
 public:
  ws_client(bench_run& run, std::uint64_t conn_index)
      : run_(run), conn_index_(conn_index) {}
  virtual ~ws_client() = default;
  ws_client(const ws_client&) = delete;
  ws_client& operator=(const ws_client&) = delete;

 protected:
  enum class write_kind { control, subscribe, publish };

  void open(std::string target);
  void send_text(std::string text, write_kind kind);
  /// Closes the socket now (no WebSocket close): what a crash or a lost
  /// network looks like to the server.
  void abort_link();
  void close_gracefully(std::function<void()> done);

  /// Native: after the upgrade. Socket.IO: on the CONNECT ack, `recovered`
  /// when the server restored the earlier session (same pid).
  virtual void on_session_open(bool recovered) = 0;
  virtual void on_app_frame(std::string_view frame,
                            std::uint64_t received_ns) = 0;
  virtual void on_written(write_kind) {}
  /// Any failure of the link; the subclass decides what it means.
  virtual void on_link_error(std::string what) = 0;
  /// Socket.IO CONNECT packet; subscribers resume with it.
  virtual std::string sio_connect_packet() const { return "40"; }

  bench_run& run_;
  std::uint64_t conn_index_; // source-address slot
  std::string sio_pid_;      // the session's pid (recovery only)
  std::string sio_offset_;   // the last offset seen while it had a pid

 private:
  struct link {
    explicit link(net::io_context& io) : ws(io) {}
    websocket::stream<beast::tcp_stream> ws;
    beast::flat_buffer buffer;
  };

  void on_connect(std::uint64_t gen, const beast::error_code& ec);
  void on_handshake(std::uint64_t gen, const beast::error_code& ec);
  void read(std::uint64_t gen);
  void on_read(std::uint64_t gen, const beast::error_code& ec);
  void on_sio_frame(std::string_view frame, std::uint64_t received_ns);
  void write_next();
  std::string close_text(const beast::error_code& ec) const;

  std::unique_ptr<link> link_;
  std::unique_ptr<link> retired_; // an aborted link, until its ops finish
  std::deque<std::pair<std::string, write_kind>> out_;
  bool writing_ = false;
  std::uint64_t gen_ = 0;
  std::string target_;
};

// ------------------------------------------------------------- subscriber

// One subscriber: connect, subscribe, read until the run closes it; in a
// storm, drop and resume from its cursor. Runs on the bench's io_context
// thread.
class subscriber final : public ws_client {
 public:
  subscriber(bench_run& run, std::size_t index)
      : ws_client(run, index), index_(index) {}
  void start();
  /// Storm: close the socket abruptly; false if it was not subscribed.
  bool drop();
  void reconnect();
  /// Graceful close of a subscribed connection; false if it was not open.
  bool close();

 private:
  enum class state {
    idle,
    connecting,
    ready,
    away, // dropped by the storm, waiting for a handshake slot
    reconnecting,
    closing,
    done
  };

  void on_session_open(bool recovered) override;
  void on_app_frame(std::string_view frame, std::uint64_t received_ns) override;
  void on_written(write_kind kind) override;
  void on_link_error(std::string what) override;
  std::string sio_connect_packet() const override;
  bool deliver(std::string_view frame, std::uint64_t received_ns);
  void take_cursor(std::string_view frame);
  void become_ready(bool recovered);

  std::size_t index_;
  steady::time_point started_;
  state state_ = state::idle;
  // Native resume cursor: the last event's (or the confirmation's).
  std::string epoch_;
  std::uint64_t offset_ = 0;
  bool has_cursor_ = false;
};

// -------------------------------------------------------------- publishers

// What the run hands events to: one event in flight per publisher; it
// answers through bench_run::publish_done.
class publisher {
 public:
  explicit publisher(std::size_t pool) : pool_(pool) {}
  virtual ~publisher() = default;
  virtual void send(std::uint64_t seq) = 0;
  virtual void close() = 0;
  /// Which idle pool it returns to: its room when --publish-url names one.
  std::size_t pool() const { return pool_; }

 private:
  std::size_t pool_;
};

// One keep-alive HTTP connection sending one publish at a time; it
// reconnects lazily after an error or a `Connection: close`. Runs on the
// bench's io_context thread.
class http_publisher final : public publisher {
 public:
  http_publisher(bench_run& run, std::uint64_t conn_index);
  void send(std::uint64_t seq) override;
  void close() override;

 private:
  void on_connect(const beast::error_code& ec);
  void write();
  void on_written(const beast::error_code& ec);
  void on_read(const beast::error_code& ec);
  void done(unsigned status, std::string error);

  bench_run& run_;
  std::uint64_t conn_index_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
  std::uint64_t seq_ = 0;
  std::uint64_t written_ns_ = 0;
  bool connected_ = false;
};

// One WebSocket connection publishing a frame per event. There is no ack:
// an event counts as published once its frame is written. It connects on
// the first send and again after an error. Runs on the bench's io_context
// thread.
class ws_publisher final : public publisher, public ws_client {
 public:
  ws_publisher(bench_run& run, std::size_t index, std::size_t pool);
  void send(std::uint64_t seq) override;
  void close() override;

 private:
  void on_session_open(bool recovered) override;
  void on_app_frame(std::string_view frame, std::uint64_t received_ns) override;
  void on_written(write_kind kind) override;
  void on_link_error(std::string what) override;
  void write();

  std::size_t index_;
  bool open_ = false;
  bool opening_ = false;
  bool in_flight_ = false;
  std::uint64_t seq_ = 0;
  std::uint64_t written_ns_ = 0;
};

// -------------------------------------------------------------- bench_run

// Drives the phases (connect, then publish and drain, or hold; then close)
// and owns everything. Phase changes are checked by one 10 ms tick rather
// than from every completion handler, which keeps the phase logic in one
// place; timing figures come from the handlers themselves, not from the
// tick.
class bench_run {
 public:
  explicit bench_run(const bench_config& cfg);
  bench::run_results run();

  // For subscribers and publishers.
  net::io_context& io() { return io_; }
  const bench_config& config() const { return cfg_; }
  tcp::endpoint endpoint() const { return {cfg_.address, cfg_.port}; }
  steady::time_point deadline() const { return deadline_; }
  const std::string& host_header() const { return host_header_; }
  std::string target_for(std::size_t sub) const;
  std::string subscribe_frame_for(std::size_t sub) const;
  std::string resume_frame_for(std::size_t sub, std::string_view epoch,
                               std::uint64_t offset) const;
  bool is_ready_frame(std::size_t sub, std::string_view frame) const;
  std::string publish_target(std::uint64_t seq) const;
  std::string publish_body(std::uint64_t seq, std::uint64_t sent_ns) const;
  std::string publish_url_for(std::size_t publisher, std::size_t pool) const;
  std::string publish_frame(std::uint64_t seq, std::uint64_t sent_ns) const;
  bool storm_mode() const { return cfg_.mode == run_mode::storm; }

  void subscriber_ready(std::size_t sub, steady::duration handshake);
  void subscriber_failed(std::string what);
  void subscriber_resubscribed(std::size_t sub, bool recovered);
  void subscriber_reconnect_failed(std::string what);
  void subscriber_dropped(std::string what);
  void subscriber_closed();
  /// A frame that may be a delivery; true when it held a bench payload.
  bool frame(std::size_t sub, std::string_view frame,
             std::uint64_t received_ns);
  void publisher_error_frame() { ++results_.error_frames; }
  void publish_done(publisher& p, std::uint64_t seq, std::uint64_t written_ns,
                    unsigned status, std::string error);

 private:
  enum class phase { connecting, publishing, draining, holding, closing };

  void tick();
  void launch_connects();
  void start_publishing();
  void start_hold();
  void on_publish_timer();
  void feed_publishers();
  void storm_drop();
  void launch_reconnects();
  bool storm_settled() const;
  void finish(bool graceful);
  std::size_t room_index(std::string_view name) const;
  std::size_t pool_of_event(std::uint64_t seq) const {
    return cfg_.publish_url_per_room ? ledger_.room_of_event(seq) : 0;
  }
  const std::string& room_name(std::size_t room) const {
    return room_names_[room];
  }

  const bench_config& cfg_;
  net::io_context io_{1}; // one thread: the hint lets Asio skip its locks
  net::steady_timer tick_timer_{io_};
  net::steady_timer connect_timer_{io_};
  net::steady_timer publish_timer_{io_};
  net::steady_timer storm_timer_{io_};
  std::string host_header_;
  std::vector<std::string> room_names_;
  std::vector<std::vector<std::string>> ready_match_; // per room
  bench::delivery_ledger ledger_;
  std::optional<bench::catchup_tracker> catchup_; // storm mode
  bench::run_results results_;
  std::vector<std::unique_ptr<subscriber>> subscribers_;
  std::vector<std::unique_ptr<publisher>> publishers_;
  std::vector<std::vector<publisher*>> idle_; // by pool

  phase phase_ = phase::connecting;
  steady::time_point deadline_;
  steady::time_point drain_deadline_;
  steady::time_point hold_end_;
  steady::time_point close_deadline_;

  pacer connect_pacer_;
  bool connect_timer_armed_ = false;
  std::size_t next_connect_ = 0;
  std::size_t connects_in_flight_ = 0;
  std::size_t connects_done_ = 0;
  steady::time_point last_connect_done_;

  pacer publish_pacer_;
  std::uint64_t next_due_ = 0; // events [next_send_, next_due_) are due
  std::uint64_t next_send_ = 0;
  std::size_t publishes_in_flight_ = 0;
  std::uint64_t first_publish_ns_ = 0;
  std::uint64_t last_delivery_ns_ = 0;

  // Storm: who still waits for a handshake slot, and when things happened.
  std::deque<std::size_t> reconnect_queue_;
  std::uint64_t storm_drop_ns_ = 0;
  std::uint64_t last_resubscribed_ns_ = 0;

  // The CPU window ends at the first tick after the last delivery, not at
  // the end of the drain: waiting for stragglers that never come would
  // otherwise dilute the CPU share.
  cpu_sample window_start_;
  std::optional<cpu_sample> window_end_;
  std::uint64_t sampled_delivery_ns_ = 0;

  std::size_t closes_pending_ = 0;
};

// -------------------------------------------------- ws_client, defined

void ws_client::open(std::string target) {
  if (link_)
    abort_link();
  target_ = std::move(target);
  link_ = std::make_unique<link>(run_.io());
  auto gen = ++gen_;
  auto& stream = beast::get_lowest_layer(link_->ws);
  stream.expires_at(run_.deadline());
  // A bind failure is reported from the loop, like a connect failure, so
  // no caller sees its own callback run inside it.
  if (auto ec =
          bind_source(stream.socket(), run_.config().sources, conn_index_))
    return net::post(run_.io(), [this, gen, ec] {
      if (gen == gen_)
        on_link_error(describe("bind", ec));
    });
  stream.async_connect(
      run_.endpoint(),
      [this, gen](const beast::error_code& ec) { on_connect(gen, ec); });
}

void ws_client::on_connect(std::uint64_t gen, const beast::error_code& ec) {
  if (gen != gen_)
    return;
  if (ec)
    return on_link_error(describe("connect", ec));
  auto& ws = link_->ws;
  auto& stream = beast::get_lowest_layer(ws);
  stream.socket().set_option(tcp::no_delay(true));
  // From here the websocket stream's own timers apply (Beast's rule for
  // websocket over tcp_stream); the run's deadline still bounds them.
  stream.expires_never();
  websocket::stream_base::timeout t{};
  t.handshake_timeout = std::max<steady::duration>(
      run_.deadline() - steady::now(), std::chrono::milliseconds(1));
  t.idle_timeout = websocket::stream_base::none();
  t.keep_alive_pings = false;
  ws.set_option(t);
  ws.set_option(
      websocket::stream_base::decorator([](websocket::request_type& req) {
        req.set(http::field::user_agent, "tidings-bench");
      }));
  ws.read_message_max(1 << 20);
  ws.async_handshake(
      run_.host_header(), target_,
      [this, gen](const beast::error_code& ec) { on_handshake(gen, ec); });
}

void ws_client::on_handshake(std::uint64_t gen, const beast::error_code& ec) {
  if (gen != gen_)
    return;
  if (ec)
    return on_link_error(describe("upgrade", ec));
  link_->ws.text(true);
  read(gen);
  // Socket.IO opens its session when the Engine.IO open packet arrives.
  if (run_.config().protocol == wire_protocol::native)
    on_session_open(false);
}

void ws_client::read(std::uint64_t gen) {
  link_->ws.async_read(link_->buffer,
                       [this, gen](const beast::error_code& ec, std::size_t) {
                         on_read(gen, ec);
                       });
}

void ws_client::on_read(std::uint64_t gen, const beast::error_code& ec) {
  if (gen != gen_)
    return;
  if (ec)
    return on_link_error(close_text(ec));
  auto received = now_ns();
  auto* l = link_.get();
  auto data = l->buffer.cdata();
  std::string_view frame{static_cast<const char*>(data.data()), data.size()};
  if (run_.config().protocol == wire_protocol::socketio)
    on_sio_frame(frame, received);
  else
    on_app_frame(frame, received);
  // The handlers above may have aborted or replaced the link.
  if (gen != gen_)
    return;
  l->buffer.consume(l->buffer.size());
  read(gen);
}

void ws_client::on_sio_frame(std::string_view frame,
                             std::uint64_t received_ns) {
  auto p = bench::sio::parse(frame);
  switch (p.kind) {
  case bench::sio::packet_kind::eio_open:
    return send_text(sio_connect_packet(), write_kind::control);
  case bench::sio::packet_kind::eio_ping:
    return send_text(std::string(bench::sio::pong), write_kind::control);
  case bench::sio::packet_kind::connect: {
    bool recovered = !p.pid.empty() && p.pid == sio_pid_;
    sio_pid_ = std::string(p.pid);
    if (!recovered)
      sio_offset_.clear();
    return on_session_open(recovered);
  }
  case bench::sio::packet_kind::connect_err:
    return on_link_error("socket.io CONNECT refused");
  case bench::sio::packet_kind::disconnect:
    return on_link_error("socket.io DISCONNECT from the server");
  case bench::sio::packet_kind::event:
    // As socket.io-client does: with a pid, a trailing string argument is
    // the broadcast's offset.
    if (!sio_pid_.empty()) {
      auto offset = bench::sio::trailing_offset(frame);
      if (!offset.empty())
        sio_offset_.assign(offset);
    }
    return on_app_frame(frame, received_ns);
  default:
    return;
  }
}

void ws_client::send_text(std::string text, write_kind kind) {
  if (!link_)
    return;
  out_.emplace_back(std::move(text), kind);
  if (!writing_)
    write_next();
}

void ws_client::write_next() {
  writing_ = true;
  auto gen = gen_;
  link_->ws.async_write(net::buffer(out_.front().first),
                        [this, gen](const beast::error_code& ec, std::size_t) {
                          if (gen != gen_)
                            return;
                          writing_ = false;
                          if (ec)
                            return on_link_error(describe("write", ec));
                          auto kind = out_.front().second;
                          out_.pop_front();
                          on_written(kind);
                          if (gen == gen_ && !writing_ && !out_.empty())
                            write_next();
                        });
}

void ws_client::abort_link() {
  if (!link_)
    return;
  beast::error_code ignored;
  beast::get_lowest_layer(link_->ws).socket().close(ignored);
  retired_ = std::move(link_);
  ++gen_;
  out_.clear();
  writing_ = false;
}

void ws_client::close_gracefully(std::function<void()> done) {
  if (!link_)
    return done();
  auto gen = gen_;
  link_->ws.async_close(websocket::close_code::normal,
                        [this, gen, done](const beast::error_code&) {
                          if (gen == gen_)
                            done();
                        });
}

std::string ws_client::close_text(const beast::error_code& ec) const {
  if (ec == websocket::error::closed)
    return "closed by server with code " +
           std::to_string(link_->ws.reason().code);
  return describe("read", ec);
}

// ------------------------------------------------- subscriber, defined

void subscriber::start() {
  state_ = state::connecting;
  started_ = steady::now();
  open(run_.target_for(index_));
}

void subscriber::on_session_open(bool recovered) {
  if (state_ == state::reconnecting && recovered)
    return become_ready(true); // the server restored the session's rooms
  std::string frame;
  if (state_ == state::reconnecting && has_cursor_ &&
      run_.config().protocol == wire_protocol::native)
    frame = run_.resume_frame_for(index_, epoch_, offset_);
  else
    frame = run_.subscribe_frame_for(index_);
  if (frame.empty())
    return on_written(write_kind::subscribe);
  send_text(std::move(frame), write_kind::subscribe);
}

void subscriber::on_written(write_kind kind) {
  if (kind == write_kind::subscribe && run_.config().ready_match.empty())
    become_ready(false);
}

void subscriber::on_app_frame(std::string_view frame,
                              std::uint64_t received_ns) {
  switch (state_) {
  case state::ready:
    deliver(frame, received_ns);
    return;
  case state::connecting:
  case state::reconnecting:
    // A resumed Socket.IO session replays before its CONNECT ack.
    if (state_ == state::reconnecting && deliver(frame, received_ns))
      return;
    if (is_error_frame(frame))
      return on_link_error("error frame before subscribed" +
                           error_code_of(frame));
    if (!run_.is_ready_frame(index_, frame))
      return;
    if (run_.storm_mode())
      take_cursor(frame);
    become_ready(state_ == state::reconnecting &&
                 frame.find(R"("recovered":true)") != std::string_view::npos);
    return;
  default:
    return;
  }
}

bool subscriber::deliver(std::string_view frame, std::uint64_t received_ns) {
  if (!run_.frame(index_, frame, received_ns))
    return false;
  if (run_.storm_mode() && run_.config().protocol == wire_protocol::native)
    take_cursor(frame);
  return true;
}

// Keeps the furthest position seen in the current epoch; a new epoch
// replaces the cursor.
void subscriber::take_cursor(std::string_view frame) {
  auto c = bench::scan_cursor(frame);
  if (!c)
    return;
  if (has_cursor_ && c->epoch == epoch_ && c->offset <= offset_)
    return;
  epoch_.assign(c->epoch);
  offset_ = c->offset;
  has_cursor_ = true;
}

void subscriber::become_ready(bool recovered) {
  if (state_ == state::connecting) {
    state_ = state::ready;
    run_.subscriber_ready(index_, steady::now() - started_);
  } else if (state_ == state::reconnecting) {
    state_ = state::ready;
    run_.subscriber_resubscribed(index_, recovered);
  }
}

void subscriber::on_link_error(std::string what) {
  auto was = state_;
  switch (was) {
  case state::connecting:
  case state::reconnecting:
  case state::ready:
    state_ = state::done;
    abort_link();
    if (was == state::connecting)
      run_.subscriber_failed(std::move(what));
    else if (was == state::reconnecting)
      run_.subscriber_reconnect_failed(std::move(what));
    else
      run_.subscriber_dropped(std::move(what));
    return;
  default:
    return; // closing, or already gone
  }
}

std::string subscriber::sio_connect_packet() const {
  if (state_ == state::reconnecting && run_.config().sio_recovery)
    return bench::sio::connect_packet(sio_pid_, sio_offset_);
  return "40";
}

bool subscriber::drop() {
  if (state_ != state::ready)
    return false;
  abort_link();
  state_ = state::away;
  return true;
}

void subscriber::reconnect() {
  state_ = state::reconnecting;
  started_ = steady::now();
  open(run_.target_for(index_));
}

bool subscriber::close() {
  if (state_ != state::ready)
    return false;
  state_ = state::closing;
  close_gracefully([this] {
    state_ = state::done;
    run_.subscriber_closed();
  });
  return true;
}

// ---------------------------------------------- http_publisher, defined

http_publisher::http_publisher(bench_run& run, std::uint64_t conn_index)
    : publisher(0), run_(run), conn_index_(conn_index), stream_(run.io()) {}

void http_publisher::send(std::uint64_t seq) {
  seq_ = seq;
  written_ns_ = 0;
  stream_.expires_at(run_.deadline());
  if (connected_)
    return write();
  if (auto ec =
          bind_source(stream_.socket(), run_.config().sources, conn_index_))
    return net::post(run_.io(), [this, ec] { done(0, describe("bind", ec)); });
  stream_.async_connect(
      run_.endpoint(), [this](const beast::error_code& ec) { on_connect(ec); });
}

void http_publisher::on_connect(const beast::error_code& ec) {
  if (ec)
    return done(0, describe("connect", ec));
  connected_ = true;
  stream_.socket().set_option(tcp::no_delay(true));
  write();
}

void http_publisher::write() {
  const auto& cfg = run_.config();
  req_ = {};
  req_.method(http::verb::post);
  req_.target(run_.publish_target(seq_));
  req_.version(11);
  req_.set(http::field::host, run_.host_header());
  req_.set(http::field::content_type, "application/json");
  if (!cfg.api_key.empty())
    req_.set(http::field::authorization, "Bearer " + cfg.api_key);
  req_.keep_alive(true);
  // Stamped last, so the latency starts when the bytes leave.
  written_ns_ = now_ns();
  req_.body() = run_.publish_body(seq_, written_ns_);
  req_.prepare_payload();
  http::async_write(
      stream_, req_,
      [this](const beast::error_code& ec, std::size_t) { on_written(ec); });
}

void http_publisher::on_written(const beast::error_code& ec) {
  if (ec)
    return done(0, describe("write", ec));
  res_ = {};
  http::async_read(
      stream_, buffer_, res_,
      [this](const beast::error_code& ec, std::size_t) { on_read(ec); });
}

void http_publisher::on_read(const beast::error_code& ec) {
  if (ec)
    return done(0, describe("read", ec));
  if (!res_.keep_alive())
    close();
  auto status = res_.result_int();
  // Any 2xx acknowledges: nchan answers 201/202.
  const bool ok = status >= 200 && status < 300;
  done(status, ok ? "" : "HTTP " + std::to_string(status));
}

void http_publisher::done(unsigned status, std::string error) {
  if (!error.empty() && status == 0)
    close();
  run_.publish_done(*this, seq_, written_ns_, status, std::move(error));
}

void http_publisher::close() {
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.socket().close(ignored);
  buffer_.clear();
  connected_ = false;
}

// ------------------------------------------------ ws_publisher, defined

ws_publisher::ws_publisher(bench_run& run, std::size_t index, std::size_t pool)
    : publisher(pool), ws_client(run, run.config().subscribers + index),
      index_(index) {}

void ws_publisher::send(std::uint64_t seq) {
  seq_ = seq;
  written_ns_ = 0;
  in_flight_ = true;
  if (open_)
    return write();
  if (opening_)
    return;
  opening_ = true;
  open(run_.publish_url_for(index_, pool()));
}

void ws_publisher::on_session_open(bool) {
  opening_ = false;
  open_ = true;
  if (in_flight_)
    write();
}

void ws_publisher::write() {
  written_ns_ = now_ns();
  send_text(run_.publish_frame(seq_, written_ns_), write_kind::publish);
}

void ws_publisher::on_written(write_kind kind) {
  if (kind != write_kind::publish || !in_flight_)
    return;
  in_flight_ = false;
  run_.publish_done(*this, seq_, written_ns_, 200, "");
}

void ws_publisher::on_app_frame(std::string_view frame, std::uint64_t) {
  if (is_error_frame(frame))
    run_.publisher_error_frame();
}

void ws_publisher::on_link_error(std::string what) {
  open_ = false;
  opening_ = false;
  abort_link();
  if (!in_flight_)
    return; // an idle connection went away: reconnect on the next send
  in_flight_ = false;
  run_.publish_done(*this, seq_, written_ns_, 0, std::move(what));
}

void ws_publisher::close() {
  open_ = false;
  opening_ = false;
  in_flight_ = false;
  abort_link();
}

// -------------------------------------------------- bench_run, defined

bench_run::bench_run(const bench_config& cfg)
    : cfg_(cfg), ledger_(cfg.subscribers, cfg.rooms, cfg.events) {
  host_header_ =
      cfg.address.is_v6() ? "[" + cfg.address.to_string() + "]" : cfg.host;
  host_header_ += ":" + std::to_string(cfg.port);
  for (std::size_t r = 0; r < cfg.rooms; ++r) {
    room_names_.push_back(cfg.room_prefix + std::to_string(r));
    std::vector<std::string> match;
    for (const auto& m : cfg.ready_match)
      match.push_back(expand(m, {{"{room}", room_names_.back()}}));
    ready_match_.push_back(std::move(match));
  }
  if (cfg.mode == run_mode::storm)
    catchup_.emplace(cfg.subscribers, cfg.rooms, cfg.events);
  auto& s = results_.setup;
  s.mode = mode_name(cfg.mode);
  s.protocol = cfg.protocol == wire_protocol::native ? "native" : "socketio";
  s.publish_method = cfg.publish_method == publish_via::http ? "http" : "ws";
  s.sio_recovery = cfg.sio_recovery;
  if (cfg.mode == run_mode::idle)
    s.idle_hold_seconds = std::chrono::duration<double>(cfg.idle_hold).count();
  if (cfg.mode == run_mode::storm)
    s.storm_after_seconds =
        std::chrono::duration<double>(cfg.storm_after).count();
  s.host = cfg.host;
  s.port = cfg.port;
  s.subscribers = cfg.subscribers;
  s.rooms = cfg.rooms;
  s.events = cfg.events;
  s.rate = cfg.rate;
  s.publishers = cfg.publishers;
  s.payload_bytes = cfg.payload_bytes;
  results_.server_pids = cfg.server_pids;
  results_.source_addresses = cfg.sources.addresses;
  for (std::size_t i = 0; i < cfg.subscribers; ++i)
    subscribers_.push_back(std::make_unique<subscriber>(*this, i));
  idle_.resize(cfg.publish_url_per_room ? cfg.rooms : 1);
  for (std::size_t i = 0; i < cfg.publishers; ++i) {
    if (cfg.publish_method == publish_via::http)
      publishers_.push_back(
          std::make_unique<http_publisher>(*this, cfg.subscribers + i));
    else
      publishers_.push_back(std::make_unique<ws_publisher>(
          *this, i, cfg.publish_url_per_room ? i % cfg.rooms : 0));
    idle_[publishers_.back()->pool()].push_back(publishers_.back().get());
  }
}

bench::run_results bench_run::run() {
  auto start = steady::now();
  deadline_ = start + cfg_.timeout;
  results_.server_before_connect = bench::process_memory(cfg_.server_pids);
  std::fprintf(stderr, "bench: %s: connecting %zu subscribers to %s",
               mode_name(cfg_.mode), cfg_.subscribers, host_header_.c_str());
  if (cfg_.sources.addresses > 1)
    std::fprintf(stderr, " from %llu source addresses",
                 static_cast<unsigned long long>(cfg_.sources.addresses));
  std::fprintf(stderr, "\n");
  connect_pacer_ = {start, cfg_.connect_rate};
  launch_connects();
  tick();
  io_.run();
  results_.deliveries = ledger_.summarize();
  results_.connect_seconds =
      std::chrono::duration<double>(last_connect_done_ - start).count();
  if (results_.connected + results_.connect_failed == 0)
    results_.connect_seconds = 0;
  if (first_publish_ns_ && last_delivery_ns_ > first_publish_ns_)
    results_.window_seconds =
        static_cast<double>(last_delivery_ns_ - first_publish_ns_) / 1e9;
  auto& st = results_.storm;
  if (catchup_ && st.happened) {
    auto c = catchup_->summarize(next_send_);
    st.caught_up = c.caught_up;
    if (c.last_caught_up_ns)
      st.catchup_ns = *c.last_caught_up_ns > storm_drop_ns_
                          ? *c.last_caught_up_ns - storm_drop_ns_
                          : 0;
    if (st.reconnected == st.dropped && st.dropped > 0)
      st.reconnect_ns = last_resubscribed_ns_ - storm_drop_ns_;
  }
  return std::move(results_);
}

void bench_run::tick() {
  auto now = steady::now();
  if (phase_ != phase::closing && now >= deadline_) {
    results_.timed_out = true;
    std::fprintf(stderr, "bench: timed out after %lld s\n",
                 static_cast<long long>(cfg_.timeout.count() / 1000));
    finish(false);
    return;
  }
  if ((phase_ == phase::publishing || phase_ == phase::draining) &&
      last_delivery_ns_ != sampled_delivery_ns_) {
    sampled_delivery_ns_ = last_delivery_ns_;
    window_end_ = take_cpu_sample(cfg_.server_pids);
  }
  switch (phase_) {
  case phase::connecting:
    if (connects_done_ == cfg_.subscribers) {
      if (cfg_.mode == run_mode::idle)
        start_hold();
      else
        start_publishing();
    }
    break;
  case phase::publishing:
    if (next_send_ == cfg_.events && publishes_in_flight_ == 0) {
      phase_ = phase::draining;
      drain_deadline_ = now + cfg_.drain;
    }
    break;
  case phase::draining:
    // A storm still to come, or reconnects still under way, keep the run
    // going (the timeout still bounds it).
    if (storm_settled() && (ledger_.complete() || now >= drain_deadline_))
      finish(true);
    break;
  case phase::holding:
    if (now >= hold_end_) {
      results_.server_after_hold = bench::process_memory(cfg_.server_pids);
      finish(true);
    }
    break;
  case phase::closing:
    if (closes_pending_ == 0 || now >= close_deadline_) {
      io_.stop();
      return;
    }
    break;
  }
  tick_timer_.expires_after(std::chrono::milliseconds(10));
  tick_timer_.async_wait([this](const beast::error_code& ec) {
    if (!ec)
      tick();
  });
}

void bench_run::launch_connects() {
  auto now = steady::now();
  while (next_connect_ < cfg_.subscribers &&
         connects_in_flight_ < cfg_.max_handshakes) {
    auto due = connect_pacer_.due(next_connect_);
    if (due > now) {
      if (!connect_timer_armed_) {
        connect_timer_armed_ = true;
        connect_timer_.expires_at(due);
        connect_timer_.async_wait([this](const beast::error_code& ec) {
          connect_timer_armed_ = false;
          if (!ec && phase_ == phase::connecting)
            launch_connects();
        });
      }
      return;
    }
    ++connects_in_flight_;
    subscribers_[next_connect_++]->start();
  }
}

void bench_run::subscriber_ready(std::size_t sub, steady::duration handshake) {
  --connects_in_flight_;
  ++connects_done_;
  ++results_.connected;
  last_connect_done_ = steady::now();
  ledger_.mark_ready(sub);
  results_.handshake_ns.record(static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(handshake).count()));
  launch_connects();
}

void bench_run::subscriber_failed(std::string what) {
  --connects_in_flight_;
  ++connects_done_;
  ++results_.connect_failed;
  last_connect_done_ = steady::now();
  ++results_.connect_errors[std::move(what)];
  launch_connects();
}

void bench_run::subscriber_dropped(std::string what) {
  ++results_.disconnected;
  ++results_.disconnect_reasons[std::move(what)];
}

void bench_run::subscriber_closed() {
  --closes_pending_;
}

void bench_run::start_hold() {
  results_.server_after_connect = bench::process_memory(cfg_.server_pids);
  std::fprintf(stderr, "bench: %llu subscribed; holding for %.1f s\n",
               static_cast<unsigned long long>(results_.connected),
               std::chrono::duration<double>(cfg_.idle_hold).count());
  phase_ = phase::holding;
  window_start_ = take_cpu_sample(cfg_.server_pids);
  hold_end_ = window_start_.at + cfg_.idle_hold;
}

void bench_run::start_publishing() {
  results_.server_after_connect = bench::process_memory(cfg_.server_pids);
  if (results_.connected == 0) {
    std::fprintf(stderr, "bench: no subscriber connected\n");
    return finish(true);
  }
  std::fprintf(stderr, "bench: %llu subscribed; publishing %llu events\n",
               static_cast<unsigned long long>(results_.connected),
               static_cast<unsigned long long>(cfg_.events));
  phase_ = phase::publishing;
  window_start_ = take_cpu_sample(cfg_.server_pids);
  publish_pacer_ = {window_start_.at, cfg_.rate};
  if (cfg_.mode == run_mode::storm) {
    storm_timer_.expires_at(window_start_.at + cfg_.storm_after);
    storm_timer_.async_wait([this](const beast::error_code& ec) {
      if (!ec && (phase_ == phase::publishing || phase_ == phase::draining))
        storm_drop();
    });
  }
  on_publish_timer();
}

void bench_run::on_publish_timer() {
  auto now = steady::now();
  while (next_due_ < cfg_.events && publish_pacer_.due(next_due_) <= now)
    ++next_due_;
  feed_publishers();
  if (next_due_ == cfg_.events)
    return;
  // A timer on the absolute schedule: a late wake-up catches up on the
  // next round instead of shifting every later event.
  publish_timer_.expires_at(publish_pacer_.due(next_due_));
  publish_timer_.async_wait([this](const beast::error_code& ec) {
    if (!ec && phase_ == phase::publishing)
      on_publish_timer();
  });
}

// Events leave in order: when the next event's pool has no idle publisher,
// later events wait too.
void bench_run::feed_publishers() {
  while (next_send_ < next_due_) {
    auto& pool = idle_[pool_of_event(next_send_)];
    if (pool.empty())
      return;
    auto* p = pool.back();
    pool.pop_back();
    auto late = steady::now() - publish_pacer_.due(next_send_);
    auto late_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(late);
    if (late_ns.count() > 0)
      results_.max_behind_ns = std::max(
          results_.max_behind_ns, static_cast<std::uint64_t>(late_ns.count()));
    ++publishes_in_flight_;
    p->send(next_send_++);
  }
}

void bench_run::publish_done(publisher& p, std::uint64_t seq,
                             std::uint64_t written_ns, unsigned status,
                             std::string error) {
  --publishes_in_flight_;
  idle_[p.pool()].push_back(&p);
  if (written_ns && (!first_publish_ns_ || written_ns < first_publish_ns_))
    first_publish_ns_ = written_ns;
  if (status != 0)
    ++results_.published;
  if (status >= 200 && status < 300) {
    ++results_.acked;
    ledger_.mark_acked(seq);
    results_.ack_ns.record(now_ns() - written_ns);
  } else {
    ++results_.publish_errors;
    ++results_.publish_error_kinds[std::move(error)];
    if (catchup_)
      catchup_->forget(seq, now_ns());
  }
  if (phase_ == phase::publishing)
    feed_publishers();
}

bool bench_run::frame(std::size_t sub, std::string_view frame,
                      std::uint64_t received_ns) {
  auto p = bench::scan_payload(frame);
  if (!p) {
    if (is_error_frame(frame))
      ++results_.error_frames;
    return false;
  }
  if (!ledger_.record(sub, p->seq, room_index(p->room), p->offset))
    return true;
  if (catchup_)
    catchup_->record(sub, p->seq, received_ns);
  results_.latency_ns.record(received_ns > p->sent_ns ? received_ns - p->sent_ns
                                                      : 0);
  last_delivery_ns_ = std::max(last_delivery_ns_, received_ns);
  return true;
}

// Every subscribed subscriber loses its socket in the same instant, then
// they all reconnect, at most --max-handshakes at a time.
void bench_run::storm_drop() {
  auto& st = results_.storm;
  st.happened = true;
  storm_drop_ns_ = now_ns();
  st.sent_before_drop = next_send_;
  for (std::size_t i = 0; i < subscribers_.size(); ++i) {
    if (subscribers_[i]->drop()) {
      ++st.dropped;
      reconnect_queue_.push_back(i);
    }
  }
  std::fprintf(stderr,
               "bench: storm: dropped %llu subscribers after %llu events\n",
               static_cast<unsigned long long>(st.dropped),
               static_cast<unsigned long long>(st.sent_before_drop));
  launch_reconnects();
}

void bench_run::launch_reconnects() {
  while (!reconnect_queue_.empty() &&
         connects_in_flight_ < cfg_.max_handshakes) {
    ++connects_in_flight_;
    auto i = reconnect_queue_.front();
    reconnect_queue_.pop_front();
    subscribers_[i]->reconnect();
  }
}

bool bench_run::storm_settled() const {
  if (cfg_.mode != run_mode::storm)
    return true;
  const auto& st = results_.storm;
  return st.happened && st.reconnected + st.reconnect_failed == st.dropped;
}

void bench_run::subscriber_resubscribed(std::size_t sub, bool recovered) {
  --connects_in_flight_;
  auto& st = results_.storm;
  ++st.reconnected;
  if (recovered)
    ++st.recovered;
  last_resubscribed_ns_ = now_ns();
  if (catchup_)
    catchup_->resubscribed(sub, last_resubscribed_ns_, next_send_);
  launch_reconnects();
  // Stragglers get a full drain after the storm settles.
  if (phase_ == phase::draining && storm_settled())
    drain_deadline_ = std::max(drain_deadline_, steady::now() + cfg_.drain);
}

void bench_run::subscriber_reconnect_failed(std::string what) {
  --connects_in_flight_;
  ++results_.storm.reconnect_failed;
  ++results_.connect_errors["storm reconnect: " + what];
  launch_reconnects();
  if (phase_ == phase::draining && storm_settled())
    drain_deadline_ = std::max(drain_deadline_, steady::now() + cfg_.drain);
}

// Called from tick() only (directly or through start_publishing), which
// keeps ticking through the closing phase.
void bench_run::finish(bool graceful) {
  // CPU and memory are read before any connection closes, so they describe
  // the server while it still holds every subscriber.
  if (phase_ != phase::connecting) {
    auto end = window_end_ ? *window_end_ : take_cpu_sample(cfg_.server_pids);
    results_.cpu_window_seconds =
        std::chrono::duration<double>(end.at - window_start_.at).count();
    if (window_start_.server && end.server)
      results_.server_cpu_seconds = *end.server - *window_start_.server;
    results_.self_cpu_seconds = end.self - window_start_.self;
  }
  results_.server_end = bench::process_memory(cfg_.server_pids);
  results_.bench_rss = bench::self_rss();
  for (auto& p : publishers_)
    p->close();
  connect_timer_.cancel();
  publish_timer_.cancel();
  storm_timer_.cancel();
  if (!graceful) {
    io_.stop();
    return;
  }
  phase_ = phase::closing;
  close_deadline_ =
      std::min(steady::now() + std::chrono::seconds(2), deadline_);
  for (auto& s : subscribers_)
    if (s->close())
      ++closes_pending_;
}

std::string bench_run::target_for(std::size_t sub) const {
  auto i = std::to_string(sub);
  return expand(cfg_.url_template,
                {{"{token}", cfg_.tokens[sub % cfg_.tokens.size()]},
                 {"{room}", room_name(ledger_.room_of_subscriber(sub))},
                 {"{i}", i}});
}

std::string bench_run::subscribe_frame_for(std::size_t sub) const {
  auto i = std::to_string(sub);
  return expand(cfg_.subscribe_template,
                {{"{token}", cfg_.tokens[sub % cfg_.tokens.size()]},
                 {"{room}", room_name(ledger_.room_of_subscriber(sub))},
                 {"{i}", i}});
}

std::string bench_run::resume_frame_for(std::size_t sub, std::string_view epoch,
                                        std::uint64_t offset) const {
  auto i = std::to_string(sub);
  auto off = std::to_string(offset);
  return expand(cfg_.resume_template,
                {{"{token}", cfg_.tokens[sub % cfg_.tokens.size()]},
                 {"{room}", room_name(ledger_.room_of_subscriber(sub))},
                 {"{i}", i},
                 {"{epoch}", epoch},
                 {"{offset}", off}});
}

bool bench_run::is_ready_frame(std::size_t sub, std::string_view frame) const {
  for (const auto& m : ready_match_[ledger_.room_of_subscriber(sub)])
    if (frame.find(m) == std::string_view::npos)
      return false;
  return true;
}

std::string bench_run::publish_target(std::uint64_t seq) const {
  return expand(cfg_.publish_path,
                {{"{room}", room_name(ledger_.room_of_event(seq))}});
}

std::string bench_run::publish_body(std::uint64_t seq,
                                    std::uint64_t sent_ns) const {
  const auto& room = room_name(ledger_.room_of_event(seq));
  auto data = bench::make_payload(seq, room, sent_ns, cfg_.payload_bytes);
  return expand(cfg_.publish_body, {{"{room}", room}, {"{data}", data}});
}

std::string bench_run::publish_url_for(std::size_t publisher,
                                       std::size_t pool) const {
  return expand(cfg_.publish_url,
                {{"{token}", cfg_.tokens[publisher % cfg_.tokens.size()]},
                 {"{api_key}", cfg_.api_key},
                 {"{room}", room_name(pool)},
                 {"{i}", std::to_string(publisher)}});
}

std::string bench_run::publish_frame(std::uint64_t seq,
                                     std::uint64_t sent_ns) const {
  const auto& room = room_name(ledger_.room_of_event(seq));
  auto data = bench::make_payload(seq, room, sent_ns, cfg_.payload_bytes);
  return expand(cfg_.publish_frame, {{"{room}", room}, {"{data}", data}});
}

// Our room names are <prefix><index>; anything else is not one of ours.
std::size_t bench_run::room_index(std::string_view name) const {
  const auto& prefix = cfg_.room_prefix;
  if (name.compare(0, prefix.size(), prefix) != 0)
    return SIZE_MAX;
  std::size_t idx = 0;
  auto rest = name.substr(prefix.size());
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), idx);
  if (ec != std::errc{} || end != rest.data() + rest.size() ||
      idx >= cfg_.rooms)
    return SIZE_MAX;
  return idx;
}

void print(const bench_config& cfg, const bench::run_results& r) {
  switch (cfg.format) {
  case output_format::human:
    bench::print_human(std::cout, r);
    break;
  case output_format::json:
    bench::print_json(std::cout, r);
    break;
  case output_format::csv:
    bench::print_csv(std::cout, r, cfg.csv_header);
    break;
  }
  std::cout.flush();
}

} // namespace

int cmd_bench(int argc, char** argv) {
  options opts;
  declare_options(opts);
  if (auto err = opts.parse(argc, argv, nullptr)) {
    std::fprintf(stderr, "tidings bench: %s\n", err->c_str());
    return 2;
  }
  if (opts.help_requested()) {
    std::cout << opts.help(usage_line) << help_epilogue;
    return 0;
  }
  bench_config cfg;
  if (auto err = read_config(opts, &cfg)) {
    std::fprintf(stderr, "tidings bench: %s\n", err->c_str());
    return 2;
  }
  if (auto err = check_resources(cfg)) {
    std::fprintf(stderr, "tidings bench: %s\n", err->c_str());
    return 2;
  }
  auto results = bench_run(cfg).run();
  print(cfg, results);
  return results.failures().empty() ? 0 : 1;
}

} // namespace tidings::app
