// `tidings serve`: one node. Reads options (flags, TIDINGS_* env, config
// file), starts the actor runtime and the HTTP/WebSocket listener, and
// stops both cleanly on SIGINT/SIGTERM.
#include "actors/examples/checklist.hpp"
#include "actors/runtime.hpp"
#include "actors/scan.hpp"
#include "app/commands.hpp"
#include "app/options.hpp"
#include "protocol/dialect_s2.hpp"
#include "transport/server.hpp"

#include <cctype>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <pthread.h>
#include <sstream>
#include <thread>
#include <unistd.h>

namespace tidings::app {

namespace {

void declare(options& o) {
  o.add("host", "127.0.0.1", "Address to listen on (loopback by default).");
  o.add("port", "8000", "HTTP/WebSocket port (0 picks a free one).");
  o.add("node-id", "node-1", "This node's name; also names its SQLite file.");
  o.add("data-dir", "./data", "Directory for the node's SQLite history.");
  o.add("durability", "full",
        "SQLite synchronous mode: full (an acknowledged publish survives "
        "power loss) or normal (faster; epochs change after a crash).");
  o.add("memory-store", "false",
        "Keep history in memory only (tests; nothing survives a restart).",
        true);
  o.add("jwt-secret", "", "HS256 secret for client tokens.");
  o.add("jwt-public-key-file", "",
        "PEM public key for RS256/ES256 client tokens (instead of a secret).");
  o.add("jwt-alg", "",
        "Algorithm pinned to the key: HS256 (with "
        "--jwt-secret), RS256 or ES256 (with a key file). "
        "Empty: HS256 for a secret, RS256 for a key file.");
  o.add("jwt-issuer", "", "When set, tokens must carry this `iss`.");
  o.add("jwt-audience", "", "When set, tokens' `aud` must contain this.");
  o.add("jwt-leeway", "30", "Seconds of clock skew allowed for exp/nbf.");
  o.add("api-key", "",
        "Bearer key for POST /api/v1/publish (empty: the "
        "publish API refuses all requests).");
  o.add("api-key-file", "", "Read the publish API key from this file.");
  o.add("allowed-origins", "",
        "Comma-separated Origins allowed to open WebSockets; '*' for any. "
        "Empty: same host only. Clients sending no Origin are allowed.");
  o.add("io-threads", "2",
        "Transport I/O threads (2 cuts fan-out latency "
        "on 2 cores; see README load figures).");
  o.add("actor-threads", "2", "CAF scheduler threads.");
  o.add("max-connections", "10000",
        "WebSocket sessions per node; beyond: "
        "close 1013.");
  o.add("max-message-size", "64K",
        "Largest client message; beyond: close "
        "1009.");
  o.add("max-queue-bytes", "1M",
        "Per-session send queue bound; beyond: "
        "close 4001 (slow consumer).");
  o.add("max-http-body", "1M", "Largest HTTP request body; beyond: 413.");
  o.add("max-subscriptions", "100", "Rooms per connection.");
  o.add("commands-per-second", "50",
        "Client commands per second per connection (bursts of twice that).");
  o.add("idle-timeout", "60",
        "Seconds without traffic before a WebSocket "
        "is closed (pings are sent at half of it).");
  o.add("auth-timeout", "10",
        "Seconds a connection without ?token= has to "
        "send {\"type\":\"auth\"}; then close 1008.");
  o.add("heartbeat-interval", "0",
        "Seconds between server heartbeat "
        "frames (0: none).");
  o.add("retention", "events=10000,age=7d",
        "History kept per room: 'events=N,age=D' (N=0: no count bound; D in "
        "s/m/h/d, 0: no age bound), then ';kind:events=N,age=D' per kind. "
        "Applied after commits and by a sweep every minute.");
  o.add("replay-limit", "10000",
        "Most events one resume replays; further behind gets "
        "recovered:false.");
  o.add("operation-kinds", "operation,job,index",
        "Room kinds that are operations (created by POST "
        "/api/v1/operations, with a current state sent first to "
        "subscribers). `checklist` is always one (the example kind of "
        "docs/extending.md).");
  o.add("room-idle-timeout", "30",
        "Seconds an empty, quiet room actor lives before it is retired.");
  // Seed dialects S0 and S3 (README "Seed S0" and "Seed S3").
  o.add("plan-limits", "free=5/10,pro=50/100,enterprise=500/1000",
        "Per token `plan` claim on /api/v1/ws: "
        "name=connections/messages_per_second (connections per user on "
        "this node; an unknown plan gets the first entry).");
  o.add("s3-user-connections", "10",
        "S3 /ws/operations/{id} sockets per user on this node; beyond: "
        "close 1008.");
  o.add("s3-operation-connections", "100",
        "S3 /ws/operations/{id} sockets per operation on this node; "
        "beyond: close 1008.");
  o.add("scan-root", "",
        "Directory S3's /ws/scan/{id} may scan below; empty: scans are "
        "disabled (close 1008).");
  o.add("scan-max-files", "10000",
        "Most files one scan may find; beyond: error \"too many files\".");
  // Cluster (README "Cluster").
  o.add("cluster-listen", "",
        "host:port of this node's cluster port (CAF middleman); empty: no "
        "cluster. Port 0 picks a free one (printed at start).");
  o.add("cluster-advertise", "",
        "Host the other members reach this node's cluster port at (empty: "
        "the --cluster-listen host; 127.0.0.1 for 0.0.0.0).");
  o.add("join", "",
        "Comma-separated host:port cluster ports of members to join "
        "through; may list this node itself, so every node can get the "
        "same list.");
  o.add("cluster-heartbeat-ms", "500",
        "Milliseconds between membership heartbeats.");
  o.add("cluster-failure-timeout-ms", "3000",
        "Milliseconds of silence after which a member is declared dead "
        "(suspect after half of it); at least twice the heartbeat.");
  o.add("replication", "sync",
        "sync: a publish is acknowledged after the room's owner and its "
        "replica both stored it (failover loses no acknowledged event); "
        "off: after the owner alone.");
  // SSE and long-polling (README "Server-Sent Events" and "Long-polling").
  o.add("sse-heartbeat", "15",
        "Seconds between `: heartbeat` comments on a quiet SSE stream (0: "
        "none; then a stalled client is noticed only when events flow).");
  o.add("sse-retry-ms", "3000",
        "The `retry:` hint sent first on every SSE stream: milliseconds a "
        "browser waits before it reconnects.");
  o.add("longpoll-max-waiters", "1000",
        "Long-poll requests waiting at once on this node; beyond: 503 with "
        "Retry-After.");
  // Seed S2's own listener (README "Seed S2"); STREAMING_WEBSOCKET__*
  // variables map onto these (protocol::map_s2_env), below TIDINGS_S2_*.
  o.add("s2-host", "127.0.0.1", "Address of the S2 WebSocket listener.");
  o.add("s2-port", "0",
        "Port of the S2 WebSocket listener (clients connect to "
        "ws://host:port); 0: no S2 listener.");
  o.add("s2-max-connections", "1000",
        "S2 connections at once; beyond: close 1013.");
  o.add("s2-ping-interval", "20",
        "Seconds of S2 client silence before a WebSocket ping is sent.");
  o.add("s2-ping-timeout", "10",
        "Seconds after that ping before a silent S2 client is dropped.");
  o.add("s2-close-timeout", "10",
        "Seconds an S2 close handshake (or a handshake) may take.");
  o.add("s2-max-message-size", "64K",
        "Largest S2 client message; beyond: close 1009.");
  o.add("s2-require-auth", "true",
        "S2: the first message must be a successful auth (true/false).");
  o.add("s2-auth-timeout", "30",
        "Seconds an S2 client has to authenticate; then close 1008.");
  o.add("s2-allowed-origins", "",
        "Comma-separated Origins allowed on the S2 port; '*' for any. "
        "Empty: same host only. Clients sending no Origin are allowed.");
  o.add("s2-rate-limit-per-minute", "60",
        "S2 client messages per minute per connection (0: no limit); "
        "beyond: error \"Rate limit exceeded\".");
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return std::nullopt;
  return std::string{std::istreambuf_iterator<char>(in), {}};
}

std::string trimmed(std::string s) {
  while (!s.empty() &&
         (s.back() == '\n' || s.back() == '\r' || s.back() == ' '))
    s.pop_back();
  return s;
}

result<std::shared_ptr<const protocol::jwt_key>> load_key(const options& o) {
  auto alg = o.str("jwt-alg");
  auto secret = o.str("jwt-secret");
  auto key_file = o.str("jwt-public-key-file");
  if (!secret.empty() && !key_file.empty())
    return error_info{"CONFIG", "set --jwt-secret or --jwt-public-key-file, "
                                "not both"};
  if (!secret.empty()) {
    if (!alg.empty() && alg != "HS256")
      return error_info{"CONFIG", "--jwt-secret needs --jwt-alg HS256"};
    auto k = protocol::jwt_key::hs256(secret);
    if (!k)
      return k.error();
    return std::make_shared<const protocol::jwt_key>(std::move(*k));
  }
  if (!key_file.empty()) {
    auto pem = read_file(key_file);
    if (!pem)
      return error_info{"CONFIG", "cannot read " + key_file};
    auto k =
        alg == "ES256" ? protocol::jwt_key::es256_pem(*pem)
        : alg.empty() || alg == "RS256"
            ? protocol::jwt_key::rs256_pem(*pem)
            : result<protocol::jwt_key>{error_info{
                  "CONFIG", "--jwt-alg must be RS256 or ES256 with a key"}};
    if (!k)
      return k.error();
    return std::make_shared<const protocol::jwt_key>(std::move(*k));
  }
  return error_info{"CONFIG", "no token key: set --jwt-secret (HS256) or "
                              "--jwt-public-key-file (RS256/ES256)"};
}

std::string transport_metrics(const transport::transport_counters& c) {
  std::ostringstream out;
  auto m = [&](const char* name, const char* type, const char* help,
               std::uint64_t v) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' '
        << type << '\n'
        << name << ' ' << v << '\n';
  };
  m("tidings_sessions_open", "gauge", "Open WebSocket sessions.",
    c.connections_open);
  m("tidings_sessions_total", "counter", "WebSocket sessions accepted.",
    c.connections_total);
  m("tidings_slow_consumer_closes_total", "counter",
    "Sessions closed with 4001 because their send queue was full.",
    c.slow_consumer_closes);
  m("tidings_oversize_closes_total", "counter",
    "Sessions closed with 1009 for an oversized message.", c.oversize_closes);
  m("tidings_sessions_rejected_total", "counter",
    "Sessions refused by the connection limit or origin policy.",
    c.rejected_connections);
  m("tidings_frames_out_total", "counter", "WebSocket frames written.",
    c.frames_out);
  m("tidings_bytes_out_total", "counter", "WebSocket payload bytes written.",
    c.bytes_out);
  m("tidings_frames_in_total", "counter", "WebSocket messages read.",
    c.frames_in);
  m("tidings_bytes_in_total", "counter", "WebSocket payload bytes read.",
    c.bytes_in);
  m("tidings_http_requests_total", "counter", "HTTP requests served.",
    c.http_requests);
  return out.str();
}

struct built_config {
  actors::node_config node;
  transport::server_options server;
  std::optional<transport::server_options> s2; // the S2 listener, when on
};

std::optional<bool> parse_bool(std::string v) {
  for (auto& c : v)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (auto t : {"true", "1", "yes", "on", "t", "y"})
    if (v == t)
      return true;
  for (auto f : {"false", "0", "no", "off", "f", "n"})
    if (v == f)
      return false;
  return std::nullopt;
}

// S2's listener and connection rules; nullopt-free errors name the option.
std::optional<error_info> build_s2(const options& o, built_config& b) {
  auto port = o.integer("s2-port");
  if (port < 0 || port > 65535)
    return error_info{"CONFIG", "--s2-port must be 0..65535"};
  auto require = parse_bool(o.str("s2-require-auth"));
  if (!require)
    return error_info{"CONFIG", "--s2-require-auth must be true or false"};
  auto ping = o.integer("s2-ping-interval");
  auto pong = o.integer("s2-ping-timeout");
  auto close = o.integer("s2-close-timeout");
  auto auth = o.integer("s2-auth-timeout");
  auto rate = o.integer("s2-rate-limit-per-minute");
  auto conns = o.integer("s2-max-connections");
  auto size = o.integer("s2-max-message-size");
  if (ping < 1 || pong < 1 || close < 1 || auth < 1 || rate < 0 ||
      rate > 1000000 || conns < 1 || size < 128)
    return error_info{"CONFIG", "S2: intervals and timeouts must be at least "
                                "1 s, --s2-max-connections at least 1, "
                                "--s2-max-message-size at least 128, "
                                "--s2-rate-limit-per-minute 0..1000000"};
  auto& r = b.node.s2;
  r.require_auth = *require;
  r.auth_timeout = std::chrono::seconds(auth);
  r.rate_limit_per_minute = static_cast<std::uint32_t>(rate);
  if (port == 0)
    return std::nullopt;
  transport::server_options s = b.server; // threads, queue and body bounds
  s.host = o.str("s2-host");
  s.port = static_cast<std::uint16_t>(port);
  s.max_connections = static_cast<std::size_t>(conns);
  s.max_message_size = static_cast<std::size_t>(size);
  // The transport pings after half the idle time and drops a peer silent
  // for all of it: ping at ~ping_interval, drop ~ping_timeout later.
  s.idle_timeout = std::chrono::seconds(std::max(ping * 2, ping + pong));
  s.handshake_timeout = std::chrono::seconds(close);
  s.allowed_origins = o.list("s2-allowed-origins");
  b.s2 = std::move(s);
  return std::nullopt;
}

result<built_config> build(const options& o) {
  built_config b;
  try {
    auto key = load_key(o);
    if (!key)
      return key.error();
    auto& n = b.node;
    n.node_id = o.str("node-id");
    n.data_dir = o.str("data-dir");
    auto dur = o.str("durability");
    if (dur != "full" && dur != "normal")
      return error_info{"CONFIG", "--durability must be full or normal"};
    n.durability_normal = dur == "normal";
    n.memory_store = o.flag("memory-store");
    n.api_key = o.str("api-key");
    if (auto f = o.str("api-key-file"); !f.empty()) {
      auto k = read_file(f);
      if (!k)
        return error_info{"CONFIG", "cannot read " + f};
      n.api_key = trimmed(*k);
    }
    n.conn.key = *key;
    n.conn.policy.leeway_seconds = o.integer("jwt-leeway");
    if (auto iss = o.str("jwt-issuer"); !iss.empty())
      n.conn.policy.issuer = iss;
    if (auto aud = o.str("jwt-audience"); !aud.empty())
      n.conn.policy.audience = aud;
    n.conn.auth_timeout = std::chrono::seconds(o.integer("auth-timeout"));
    n.conn.heartbeat_interval =
        std::chrono::seconds(o.integer("heartbeat-interval"));
    n.conn.max_subscriptions = o.integer("max-subscriptions");
    n.conn.commands_per_second = o.number("commands-per-second");
    auto plans = protocol::parse_plan_limits(o.str("plan-limits"));
    if (!plans)
      return error_info{"CONFIG", "--plan-limits: " + plans.error().message};
    n.conn.plans = std::move(*plans);
    auto s3_users = o.integer("s3-user-connections");
    auto s3_ops = o.integer("s3-operation-connections");
    if (s3_users < 1 || s3_ops < 1 || s3_users > 1000000 || s3_ops > 1000000)
      return error_info{"CONFIG", "--s3-user-connections and "
                                  "--s3-operation-connections must be "
                                  "1..1000000"};
    n.conn.s3.per_user = static_cast<std::uint32_t>(s3_users);
    n.conn.s3.per_operation = static_cast<std::uint32_t>(s3_ops);
    actors::scan_config scan;
    scan.root = o.str("scan-root");
    auto max_files = o.integer("scan-max-files");
    if (max_files < 1)
      return error_info{"CONFIG", "--scan-max-files must be positive"};
    scan.max_files = static_cast<std::size_t>(max_files);
    if (!scan.root.empty()) {
      std::error_code ec;
      if (!std::filesystem::is_directory(scan.root, ec))
        return error_info{"CONFIG", "--scan-root: not a directory"};
    }
    n.kinds.add_socket_kind(actors::scan_socket_prefix,
                            actors::make_scan_socket(std::move(scan)));
    n.room_idle_timeout = std::chrono::seconds(o.integer("room-idle-timeout"));
    auto retention = persistence::parse_retention(o.str("retention"));
    if (!retention)
      return retention.error();
    n.retention = std::move(*retention);
    n.replay_limit = o.integer("replay-limit");
    for (auto& kind : o.list("operation-kinds")) {
      if (!protocol::valid_room_kind(kind))
        return error_info{"CONFIG", "--operation-kinds: '" + kind +
                                        "' is not a room kind"};
      n.kinds.add_operation_kind(kind);
    }
    // The example kind from docs/extending.md, with its own reducer.
    n.kinds.add_operation_kind(
        "checklist",
        std::make_shared<const actors::examples::checklist_reducer>(),
        std::make_shared<const actors::examples::checklist_commands>());
    auto sse_beat = o.integer("sse-heartbeat");
    auto sse_retry = o.integer("sse-retry-ms");
    auto lp_waiters = o.integer("longpoll-max-waiters");
    if (sse_beat < 0 || sse_retry < 0 || sse_retry > 3600000 || lp_waiters < 1)
      return error_info{"CONFIG", "--sse-heartbeat and --sse-retry-ms must "
                                  "not be negative (retry at most an hour); "
                                  "--longpoll-max-waiters at least 1"};
    n.streams.sse_heartbeat = std::chrono::seconds(sse_beat);
    n.streams.sse_retry_ms = static_cast<std::uint32_t>(sse_retry);
    n.streams.max_longpoll_waiters = static_cast<std::size_t>(lp_waiters);
    n.actor_threads = static_cast<unsigned>(o.integer("actor-threads"));
    n.cluster.listen = o.str("cluster-listen");
    n.cluster.advertise = o.str("cluster-advertise");
    n.cluster.join = o.list("join");
    n.cluster.heartbeat_interval =
        std::chrono::milliseconds(o.integer("cluster-heartbeat-ms"));
    n.cluster.failure_timeout =
        std::chrono::milliseconds(o.integer("cluster-failure-timeout-ms"));
    auto repl = o.str("replication");
    if (repl != "sync" && repl != "off")
      return error_info{"CONFIG", "--replication must be sync or off"};
    n.cluster.replicate = repl == "sync";
    auto& s = b.server;
    s.host = o.str("host");
    auto port = o.integer("port");
    if (port < 0 || port > 65535)
      return error_info{"CONFIG", "--port must be 0..65535"};
    s.port = static_cast<std::uint16_t>(port);
    s.threads = static_cast<unsigned>(o.integer("io-threads"));
    s.max_connections = o.integer("max-connections");
    s.max_message_size = o.integer("max-message-size");
    s.max_queue_bytes = o.integer("max-queue-bytes");
    s.max_http_body = o.integer("max-http-body");
    s.idle_timeout = std::chrono::seconds(o.integer("idle-timeout"));
    s.allowed_origins = o.list("allowed-origins");
    if (s.threads < 1 || n.actor_threads < 1)
      return error_info{"CONFIG", "thread counts must be at least 1"};
    if (n.conn.commands_per_second <= 0)
      return error_info{"CONFIG", "--commands-per-second must be positive"};
    if (auto err = build_s2(o, b))
      return *err;
  } catch (const std::invalid_argument& e) {
    return error_info{"CONFIG", e.what()};
  }
  return b;
}

} // namespace

// S2's own environment variables, at the environment's precedence but
// below TIDINGS_S2_* (which are not overwritten). Before any thread starts.
std::optional<std::string> apply_s2_env() {
  std::vector<std::pair<std::string, std::string>> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv{*e};
    auto eq = kv.find('=');
    if (eq != std::string_view::npos)
      env.emplace_back(std::string(kv.substr(0, eq)),
                       std::string(kv.substr(eq + 1)));
  }
  auto mapped = protocol::map_s2_env(env);
  if (!mapped)
    return mapped.error().message;
  for (auto& [option, value] : mapped->options)
    ::setenv(env_name(option).c_str(), value.c_str(), 0);
  return std::nullopt;
}

int cmd_serve(int argc, char** argv) {
  options o;
  declare(o);
  if (auto err = apply_s2_env()) {
    std::fprintf(stderr, "tidings serve: %s\n", err->c_str());
    return 2;
  }
  if (auto err = o.parse(argc, argv, nullptr)) {
    std::fprintf(stderr, "tidings serve: %s\n", err->c_str());
    return 2;
  }
  if (o.help_requested()) {
    std::fputs(o.help("tidings serve [options]").c_str(), stdout);
    return 0;
  }
  auto cfg = build(o);
  if (!cfg) {
    std::fprintf(stderr, "tidings serve: %s\n", cfg.error().message.c_str());
    return 2;
  }
  // Signals go to one waiting thread, not to whichever thread runs.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  std::shared_ptr<transport::server> srv;
  cfg->node.extra_metrics = [&srv] {
    return srv ? transport_metrics(srv->counters()) : std::string{};
  };
  auto rt = actors::runtime::start(cfg->node);
  if (!rt) {
    std::fprintf(stderr, "tidings serve: cannot start: %s: %s\n",
                 rt.error().code.c_str(), rt.error().message.c_str());
    return 1;
  }
  srv = std::make_shared<transport::server>(cfg->server, (*rt)->application());
  if (auto err = srv->listen()) {
    std::fprintf(stderr, "tidings serve: cannot listen on %s:%u: %s\n",
                 cfg->server.host.c_str(), cfg->server.port, err->c_str());
    (*rt)->shutdown();
    srv.reset(); // before the runtime: see below
    return 1;
  }
  if (auto cport = (*rt)->cluster_port(); cport != 0) {
    auto& c = cfg->node.cluster;
    std::string seeds;
    for (auto& j : c.join)
      seeds += (seeds.empty() ? "" : ",") + j;
    std::printf("tidings: node %s cluster port %s:%u (heartbeat %lld ms, "
                "failure timeout %lld ms, joining %s)\n",
                cfg->node.node_id.c_str(),
                c.listen.substr(0, c.listen.rfind(':')).c_str(), cport,
                static_cast<long long>(c.heartbeat_interval.count()),
                static_cast<long long>(c.failure_timeout.count()),
                seeds.empty() ? "nobody" : seeds.c_str());
  }
  // Seed S2's own listener, announced before the ready line.
  std::shared_ptr<transport::server> s2;
  if (cfg->s2) {
    s2 = std::make_shared<transport::server>(*cfg->s2, (*rt)->s2_application());
    if (auto err = s2->listen()) {
      std::fprintf(stderr, "tidings serve: cannot listen on %s:%u (S2): %s\n",
                   cfg->s2->host.c_str(), cfg->s2->port, err->c_str());
      (*rt)->shutdown();
      srv.reset();
      s2.reset();
      return 1;
    }
    std::printf("tidings: node %s S2 listening on ws://%s:%u\n",
                cfg->node.node_id.c_str(), cfg->s2->host.c_str(), s2->port());
  }
  if (cfg->node.api_key.empty())
    std::fprintf(stderr, "tidings serve: warning: no --api-key; "
                         "POST /api/v1/publish will answer 401\n");
  std::printf(
      "tidings: node %s listening on http://%s:%u (ws://%s:%u"
      "/api/v1/ws), history %s\n",
      cfg->node.node_id.c_str(), cfg->server.host.c_str(), srv->port(),
      cfg->server.host.c_str(), srv->port(),
      cfg->node.memory_store
          ? "in memory"
          : (cfg->node.data_dir + "/" + cfg->node.node_id + ".sqlite").c_str());
  std::fflush(stdout);
  std::thread s2_thread;
  if (s2)
    s2_thread = std::thread([&] { s2->run(); });
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    srv->stop();
    if (s2)
      s2->stop();
  });
  srv->run();
  // run() also returns if stop() came from elsewhere; wake the watcher.
  pthread_kill(watcher.native_handle(), SIGTERM);
  watcher.join();
  if (s2) {
    s2->stop();
    s2_thread.join();
  }
  (*rt)->shutdown();
  // The server owns the gateway, which holds actor handles; a detached
  // actor's thread (the history writer) ends only when the last handle is
  // gone, and the actor system waits for it.
  srv.reset();
  s2.reset();
  std::printf("tidings: node %s stopped\n", cfg->node.node_id.c_str());
  return 0;
}

} // namespace tidings::app
