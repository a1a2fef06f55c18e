// `tidings bench`: a bounded, loopback-only load generator. N WebSocket
// subscribers spread over R rooms, M events published over keep-alive HTTP
// connections at a paced rate; every payload carries its send time on this
// process's steady clock, so publish-to-receive latency needs no clock sync.
//
// Everything runs on one io_context on one thread: the generator shares the
// machine's cores with the server it measures, and one thread keeps its own
// cost small, measurable and free of locks. The wire details (URL, subscribe
// frame, what counts as "subscribed", publish path and body) are templates,
// so the same generator can drive other servers on loopback.
//
// This is the only Beast translation unit in app/; the bookkeeping it needs
// lives in bench_stats, bench_proc and bench_report, which have no sockets.
#include "app/bench_proc.hpp"
#include "app/bench_report.hpp"
#include "app/bench_stats.hpp"
#include "app/commands.hpp"
#include "app/options.hpp"
#include "protocol/jwt.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/resource.h>

namespace tidings::app {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using steady = std::chrono::steady_clock;

const char* usage_line = "tidings bench [options]";

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          steady::now().time_since_epoch())
          .count());
}

enum class output_format { human, json, csv };

struct bench_config {
  std::string host; // as given, for Host headers
  net::ip::address address;
  std::uint16_t port = 0;
  std::size_t subscribers = 0;
  std::size_t rooms = 0;
  std::uint64_t events = 0;
  double rate = 0;
  std::size_t publishers = 0;
  std::vector<std::string> tokens; // subscriber i uses tokens[i % size]
  std::string api_key;
  std::string room_prefix;
  std::string url_template;
  std::string subscribe_template;
  std::vector<std::string> ready_match; // templates, all must appear
  std::string publish_path;
  std::string publish_body;
  std::chrono::milliseconds timeout{0};
  std::chrono::milliseconds drain{0};
  std::vector<int> server_pids;
  std::size_t payload_bytes = 0;
  output_format format = output_format::human;
  bool csv_header = false;
  double connect_rate = 0;
  std::size_t max_handshakes = 0;
};

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
  add("subscribers", "1000", "WebSocket subscribers");
  add("rooms", "1", "rooms; subscriber i joins room i % rooms");
  add("events", "1000",
      "events published in total; event s goes to room s % rooms");
  add("rate", "100", "events per second in total; 0 publishes unpaced");
  add("publishers", "4", "keep-alive HTTP connections used to publish");
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
      "text frame sent after the upgrade ({room}, {token}, {i}); empty sends "
      "none (room chosen by the URL)");
  add("ready-match", R"("subscribed"|"{room}")",
      "'|'-separated substrings ({room} replaced) that must all appear in "
      "one frame for a subscriber to count as subscribed; empty = ready "
      "after the subscribe frame is written");
  add("publish-path", "/api/v1/publish", "HTTP POST target ({room})");
  add("publish-body", R"({"room_id":"{room}","type":"bench","data":{data}})",
      "HTTP body; {room} and {data} (the bench payload object) are replaced");
  add("timeout", "60", "bound on the whole run, seconds");
  add("drain", "5", "seconds to wait for stragglers after the last publish");
  add("server-pid", "",
      "server process id(s), comma-separated: CPU over the publish window, "
      "RSS and PSS");
  add("payload-bytes", "0", "pad each payload object to about this size");
  add("format", "human", "output: human, json or csv (one line)");
  o.add("csv-header", "false",
        "with --format csv, print the column names first", true, false);
  add("connect-rate", "0",
      "new connections per second; 0 = as fast as "
      "--max-handshakes allows");
  add("max-handshakes", "200", "connection handshakes in flight at once");
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
    c->subscribers =
        static_cast<std::size_t>(bounded(o, "subscribers", 1, 1'000'000));
    c->rooms = static_cast<std::size_t>(bounded(o, "rooms", 1, 1'000'000));
    c->events =
        static_cast<std::uint64_t>(bounded(o, "events", 0, 100'000'000));
    c->rate = non_negative(o, "rate");
    c->publishers = static_cast<std::size_t>(bounded(o, "publishers", 1, 1000));
    c->api_key = o.str("api-key");
    c->room_prefix = o.str("room-prefix");
    c->url_template = o.str("url-template");
    c->subscribe_template = o.str("subscribe-frame");
    c->ready_match = split(o.str("ready-match"), '|');
    c->publish_path = o.str("publish-path");
    c->publish_body = o.str("publish-body");
    auto timeout = bounded(o, "timeout", 1, 24 * 3600);
    c->timeout = std::chrono::seconds(timeout);
    c->drain = std::chrono::milliseconds(
        static_cast<std::int64_t>(non_negative(o, "drain") * 1000));
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
// port, a distinct local port: check both before opening any.
std::optional<std::string> check_resources(const bench_config& c) {
  std::uint64_t needed = c.subscribers + c.publishers + 64;
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && needed > rl.rlim_cur)
      return std::to_string(c.subscribers) + " subscribers need about " +
             std::to_string(needed) + " file descriptors; the hard limit " +
             "(ulimit -Hn) is " + std::to_string(rl.rlim_cur);
  }
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  std::uint64_t lo = 0;
  std::uint64_t hi = 0;
  if (range >> lo >> hi && hi >= lo && needed - 64 > hi - lo + 1)
    return "the local port range (" + std::to_string(lo) + "-" +
           std::to_string(hi) + ") is too small for " +
           std::to_string(needed - 64) + " connections to one address";
  return std::nullopt;
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

std::string describe(const char* stage, const beast::error_code& ec) {
  return std::string(stage) + ": " + ec.message();
}

class bench_run;

// ------------------------------------------------------------- subscriber

// One WebSocket client: connect, upgrade, subscribe, then read until the
// run closes it. Runs on the bench's io_context thread.
class subscriber {
 public:
  subscriber(bench_run& run, std::size_t index);
  void start();
  /// Graceful close of a subscribed connection; false if it was not open.
  bool close();

 private:
  enum class state { idle, connecting, ready, closing, done };

  void on_connect(const beast::error_code& ec);
  void on_handshake(const beast::error_code& ec);
  void on_subscribe_written(const beast::error_code& ec);
  void read();
  void on_read(const beast::error_code& ec);
  void on_frame(std::string_view frame, std::uint64_t received_ns);
  void become_ready();
  void fail(std::string what);
  std::string close_text(const beast::error_code& ec) const;

  bench_run& run_;
  std::size_t index_;
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buffer_;
  std::string target_;
  std::string frame_;
  steady::time_point started_;
  state state_ = state::idle;
};

// -------------------------------------------------------------- publisher

// One keep-alive HTTP connection sending one publish at a time; it
// reconnects lazily after an error or a `Connection: close`. Runs on the
// bench's io_context thread.
class publisher {
 public:
  explicit publisher(bench_run& run);
  void send(std::uint64_t seq);
  void close();

 private:
  void on_connect(const beast::error_code& ec);
  void write();
  void on_written(const beast::error_code& ec);
  void on_read(const beast::error_code& ec);
  void done(unsigned status, std::string error);

  bench_run& run_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
  std::uint64_t seq_ = 0;
  std::uint64_t written_ns_ = 0;
  bool connected_ = false;
};

// -------------------------------------------------------------- bench_run

// Drives the phases (connect, publish, drain, close) and owns everything.
// Phase changes are checked by one 10 ms tick rather than from every
// completion handler, which keeps the phase logic in one place; timing
// figures come from the handlers themselves, not from the tick.
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
  bool is_ready_frame(std::size_t sub, std::string_view frame) const;
  std::string publish_target(std::uint64_t seq) const;
  std::string publish_body(std::uint64_t seq, std::uint64_t sent_ns) const;

  void subscriber_ready(std::size_t sub, steady::duration handshake);
  void subscriber_failed(std::string what);
  void subscriber_dropped(std::string what);
  void subscriber_closed();
  void frame(std::size_t sub, std::string_view frame,
             std::uint64_t received_ns);
  void publish_done(publisher& p, std::uint64_t seq, std::uint64_t written_ns,
                    unsigned status, std::string error);

 private:
  enum class phase { connecting, publishing, draining, closing };

  void tick();
  void launch_connects();
  void start_publishing();
  void on_publish_timer();
  void feed_publishers();
  void finish(bool graceful);
  std::size_t room_index(std::string_view name) const;
  const std::string& room_name(std::size_t room) const {
    return room_names_[room];
  }

  const bench_config& cfg_;
  net::io_context io_{1}; // one thread: the hint lets Asio skip its locks
  net::steady_timer tick_timer_{io_};
  net::steady_timer connect_timer_{io_};
  net::steady_timer publish_timer_{io_};
  std::string host_header_;
  std::vector<std::string> room_names_;
  std::vector<std::vector<std::string>> ready_match_; // per room
  bench::delivery_ledger ledger_;
  bench::run_results results_;
  std::vector<std::unique_ptr<subscriber>> subscribers_;
  std::vector<std::unique_ptr<publisher>> publishers_;
  std::vector<publisher*> idle_;

  phase phase_ = phase::connecting;
  steady::time_point deadline_;
  steady::time_point drain_deadline_;
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

  // The CPU window ends at the first tick after the last delivery, not at
  // the end of the drain: waiting for stragglers that never come would
  // otherwise dilute the CPU share.
  cpu_sample window_start_;
  std::optional<cpu_sample> window_end_;
  std::uint64_t sampled_delivery_ns_ = 0;

  std::size_t closes_pending_ = 0;
};

// ------------------------------------------------- subscriber, defined

subscriber::subscriber(bench_run& run, std::size_t index)
    : run_(run), index_(index), ws_(run.io()) {}

void subscriber::start() {
  state_ = state::connecting;
  started_ = steady::now();
  auto& stream = beast::get_lowest_layer(ws_);
  stream.expires_at(run_.deadline());
  stream.async_connect(run_.endpoint(),
                       [this](const beast::error_code& ec) { on_connect(ec); });
}

void subscriber::on_connect(const beast::error_code& ec) {
  if (ec)
    return fail(describe("connect", ec));
  auto& stream = beast::get_lowest_layer(ws_);
  stream.socket().set_option(tcp::no_delay(true));
  // From here the websocket stream's own timers apply (Beast's rule for
  // websocket over tcp_stream); the run's deadline still bounds them.
  stream.expires_never();
  websocket::stream_base::timeout t{};
  t.handshake_timeout = std::max<steady::duration>(
      run_.deadline() - steady::now(), std::chrono::milliseconds(1));
  t.idle_timeout = websocket::stream_base::none();
  t.keep_alive_pings = false;
  ws_.set_option(t);
  ws_.set_option(
      websocket::stream_base::decorator([](websocket::request_type& req) {
        req.set(http::field::user_agent, "tidings-bench");
      }));
  ws_.read_message_max(1 << 20);
  target_ = run_.target_for(index_);
  ws_.async_handshake(
      run_.host_header(), target_,
      [this](const beast::error_code& ec) { on_handshake(ec); });
}

void subscriber::on_handshake(const beast::error_code& ec) {
  if (ec)
    return fail(describe("upgrade", ec));
  frame_ = run_.subscribe_frame_for(index_);
  if (frame_.empty())
    return on_subscribe_written({});
  ws_.text(true);
  ws_.async_write(net::buffer(frame_),
                  [this](const beast::error_code& ec, std::size_t) {
                    on_subscribe_written(ec);
                  });
}

void subscriber::on_subscribe_written(const beast::error_code& ec) {
  if (ec)
    return fail(describe("subscribe", ec));
  if (run_.config().ready_match.empty())
    become_ready();
  read();
}

void subscriber::read() {
  ws_.async_read(buffer_, [this](const beast::error_code& ec, std::size_t) {
    on_read(ec);
  });
}

void subscriber::on_read(const beast::error_code& ec) {
  if (ec) {
    if (state_ == state::closing || state_ == state::done)
      return;
    if (state_ == state::ready) {
      state_ = state::done;
      run_.subscriber_dropped(close_text(ec));
      return;
    }
    return fail(close_text(ec));
  }
  auto received = now_ns();
  auto data = buffer_.cdata();
  on_frame({static_cast<const char*>(data.data()), data.size()}, received);
  buffer_.consume(buffer_.size());
  if (state_ == state::connecting || state_ == state::ready)
    read();
}

void subscriber::on_frame(std::string_view frame, std::uint64_t received_ns) {
  if (state_ == state::connecting) {
    if (is_error_frame(frame))
      return fail("error frame before subscribed");
    if (run_.is_ready_frame(index_, frame))
      become_ready();
    return;
  }
  run_.frame(index_, frame, received_ns);
}

void subscriber::become_ready() {
  state_ = state::ready;
  run_.subscriber_ready(index_, steady::now() - started_);
}

void subscriber::fail(std::string what) {
  state_ = state::done;
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).socket().close(ignored);
  run_.subscriber_failed(std::move(what));
}

std::string subscriber::close_text(const beast::error_code& ec) const {
  if (ec == websocket::error::closed)
    return "closed by server with code " + std::to_string(ws_.reason().code);
  return describe("read", ec);
}

bool subscriber::close() {
  if (state_ != state::ready)
    return false;
  state_ = state::closing;
  ws_.async_close(websocket::close_code::normal,
                  [this](const beast::error_code&) {
                    state_ = state::done;
                    run_.subscriber_closed();
                  });
  return true;
}

// -------------------------------------------------- publisher, defined

publisher::publisher(bench_run& run) : run_(run), stream_(run.io()) {}

void publisher::send(std::uint64_t seq) {
  seq_ = seq;
  written_ns_ = 0;
  stream_.expires_at(run_.deadline());
  if (connected_)
    return write();
  stream_.async_connect(
      run_.endpoint(), [this](const beast::error_code& ec) { on_connect(ec); });
}

void publisher::on_connect(const beast::error_code& ec) {
  if (ec)
    return done(0, describe("connect", ec));
  connected_ = true;
  stream_.socket().set_option(tcp::no_delay(true));
  write();
}

void publisher::write() {
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

void publisher::on_written(const beast::error_code& ec) {
  if (ec)
    return done(0, describe("write", ec));
  res_ = {};
  http::async_read(
      stream_, buffer_, res_,
      [this](const beast::error_code& ec, std::size_t) { on_read(ec); });
}

void publisher::on_read(const beast::error_code& ec) {
  if (ec)
    return done(0, describe("read", ec));
  if (!res_.keep_alive())
    close();
  auto status = res_.result_int();
  done(status, status == 200 ? "" : "HTTP " + std::to_string(status));
}

void publisher::done(unsigned status, std::string error) {
  if (!error.empty() && status == 0)
    close();
  run_.publish_done(*this, seq_, written_ns_, status, std::move(error));
}

void publisher::close() {
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.socket().close(ignored);
  buffer_.clear();
  connected_ = false;
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
  results_.setup = {cfg.host,   cfg.port, cfg.subscribers, cfg.rooms,
                    cfg.events, cfg.rate, cfg.publishers,  cfg.payload_bytes};
  results_.server_pids = cfg.server_pids;
  for (std::size_t i = 0; i < cfg.subscribers; ++i)
    subscribers_.push_back(std::make_unique<subscriber>(*this, i));
  for (std::size_t i = 0; i < cfg.publishers; ++i) {
    publishers_.push_back(std::make_unique<publisher>(*this));
    idle_.push_back(publishers_.back().get());
  }
}

bench::run_results bench_run::run() {
  auto start = steady::now();
  deadline_ = start + cfg_.timeout;
  results_.server_before_connect = bench::process_memory(cfg_.server_pids);
  std::fprintf(stderr, "bench: connecting %zu subscribers to %s\n",
               cfg_.subscribers, host_header_.c_str());
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
    if (connects_done_ == cfg_.subscribers)
      start_publishing();
    break;
  case phase::publishing:
    if (next_send_ == cfg_.events && publishes_in_flight_ == 0) {
      phase_ = phase::draining;
      drain_deadline_ = now + cfg_.drain;
    }
    break;
  case phase::draining:
    if (ledger_.complete() || now >= drain_deadline_)
      finish(true);
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

void bench_run::feed_publishers() {
  while (next_send_ < next_due_ && !idle_.empty()) {
    auto* p = idle_.back();
    idle_.pop_back();
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
  idle_.push_back(&p);
  if (written_ns && (!first_publish_ns_ || written_ns < first_publish_ns_))
    first_publish_ns_ = written_ns;
  if (status != 0)
    ++results_.published;
  if (status == 200) {
    ++results_.acked;
    ledger_.mark_acked(seq);
    results_.ack_ns.record(now_ns() - written_ns);
  } else {
    ++results_.publish_errors;
    ++results_.publish_error_kinds[std::move(error)];
  }
  if (phase_ == phase::publishing)
    feed_publishers();
}

void bench_run::frame(std::size_t sub, std::string_view frame,
                      std::uint64_t received_ns) {
  auto p = bench::scan_payload(frame);
  if (!p) {
    if (is_error_frame(frame))
      ++results_.error_frames;
    return;
  }
  if (!ledger_.record(sub, p->seq, room_index(p->room), p->offset))
    return;
  results_.latency_ns.record(received_ns > p->sent_ns ? received_ns - p->sent_ns
                                                      : 0);
  last_delivery_ns_ = std::max(last_delivery_ns_, received_ns);
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
  for (auto& p : publishers_)
    p->close();
  connect_timer_.cancel();
  publish_timer_.cancel();
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
    std::cout << opts.help(usage_line);
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
