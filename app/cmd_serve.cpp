// `tidings serve`: one node. Reads options (flags, TIDINGS_* env, config
// file), starts the actor runtime and the HTTP/WebSocket listener, and
// stops both cleanly on SIGINT/SIGTERM.
#include "actors/examples/checklist.hpp"
#include "actors/runtime.hpp"
#include "app/commands.hpp"
#include "app/options.hpp"
#include "transport/server.hpp"

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <pthread.h>
#include <sstream>
#include <thread>

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
};

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
    n.actor_threads = static_cast<unsigned>(o.integer("actor-threads"));
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
  } catch (const std::invalid_argument& e) {
    return error_info{"CONFIG", e.what()};
  }
  return b;
}

} // namespace

int cmd_serve(int argc, char** argv) {
  options o;
  declare(o);
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
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    srv->stop();
  });
  srv->run();
  // run() also returns if stop() came from elsewhere; wake the watcher.
  pthread_kill(watcher.native_handle(), SIGTERM);
  watcher.join();
  (*rt)->shutdown();
  // The server owns the gateway, which holds actor handles; a detached
  // actor's thread (the history writer) ends only when the last handle is
  // gone, and the actor system waits for it.
  srv.reset();
  std::printf("tidings: node %s stopped\n", cfg->node.node_id.c_str());
  return 0;
}

} // namespace tidings::app
