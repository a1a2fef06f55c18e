// The connection actor's dialect decisions (native, S0, S3) and the S3 scan
// socket, on CAF's deterministic scheduler with the real gateway, rooms and
// history writer; a recording sink stands in for the socket.
#include "actors/gateway.hpp"
#include "actors/history_writer.hpp"
#include "actors/messages.hpp"
#include "actors/room_directory.hpp"
#include "actors/scan.hpp"
#include "persistence/memory_store.hpp"
#include "protocol/jwt.hpp"

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <unistd.h>

using namespace tidings;
using json = nlohmann::json;

namespace {

const std::string secret = "dialect-test-secret-0123456789abcdef";

class sink_log : public transport::frame_sink {
 public:
  bool deliver(transport::frame f) override {
    std::lock_guard<std::mutex> g{m_};
    if (closed_)
      return false;
    frames_.push_back(json::parse(*f));
    return true;
  }
  void close(std::uint16_t code, std::string_view reason) override {
    std::lock_guard<std::mutex> g{m_};
    if (!closed_) {
      closed_ = true;
      code_ = code;
      reason_ = std::string{reason};
    }
  }
  std::size_t queued_bytes() const override { return 0; }
  std::size_t max_queued_bytes() const override { return 1 << 20; }

  std::vector<json> frames() const {
    std::lock_guard<std::mutex> g{m_};
    return frames_;
  }
  std::vector<json> of_type(const std::string& type) const {
    std::vector<json> out;
    for (auto& j : frames())
      if (j.value("type", "") == type)
        out.push_back(j);
    return out;
  }
  void clear() {
    std::lock_guard<std::mutex> g{m_};
    frames_.clear();
  }
  std::uint16_t code() const {
    std::lock_guard<std::mutex> g{m_};
    return code_;
  }
  std::string reason() const {
    std::lock_guard<std::mutex> g{m_};
    return reason_;
  }

 private:
  mutable std::mutex m_;
  std::vector<json> frames_;
  bool closed_ = false;
  std::uint16_t code_ = 0;
  std::string reason_;
};

struct fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;
  actors::node_state node;
  caf::actor writer;
  caf::actor directory;
  std::shared_ptr<actors::gateway> gw;
  std::string api_key = "dialect-api-key";
  std::vector<std::shared_ptr<transport::connection_handler>> opened;

  explicit fixture(std::string scan_root = {},
                   std::chrono::milliseconds heartbeat = {}) {
    cfg.set("scheduler.policy", caf::atom("testing"));
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
    actors::history_writer_config wc;
    wc.detached = false;
    writer = actors::spawn_history_writer(
        *sys, std::make_shared<persistence::memory_store>(), node, wc);
    auto kinds = std::make_shared<actors::kind_registry>();
    kinds->add_operation_kind("operation");
    actors::scan_config sc;
    sc.root = std::move(scan_root);
    sc.max_files = 50;
    sc.entries_per_step = 4;
    kinds->add_socket_kind(actors::scan_socket_prefix,
                           actors::make_scan_socket(sc));
    actors::room_config rc;
    rc.kinds = kinds;
    directory = actors::spawn_room_directory(*sys, writer, node, rc);
    actors::connection_config cc;
    cc.key = std::make_shared<const protocol::jwt_key>(
        *protocol::jwt_key::hs256(secret));
    cc.heartbeat_interval = heartbeat;
    cc.plans = *protocol::parse_plan_limits("free=2/3,pro=50/100");
    cc.s3.per_user = 2;
    cc.s3.per_operation = 3;
    actors::gateway_config gc;
    gc.conn = std::make_shared<const actors::connection_config>(cc);
    gc.api_key = api_key;
    gc.kinds = kinds;
    gw = std::make_shared<actors::gateway>(*sys, directory, writer, node, gc);
    run();
  }

  ~fixture() {
    for (auto& h : opened)
      h->on_closed();
    run();
    gw.reset();
    caf::anon_send(directory, actors::shutdown_atom::value);
    run();
  }

  void run() { sched->run(); }

  std::string token(const std::string& sub, std::vector<std::string> rooms,
                    const std::string& plan = {}) {
    protocol::token_request req;
    req.sub = sub;
    req.rooms = std::move(rooms);
    req.plan = plan;
    req.iat = actors::unix_now();
    return protocol::sign_hs256(req, secret);
  }

  struct client {
    std::shared_ptr<sink_log> sink;
    std::shared_ptr<transport::connection_handler> handler;
    void send(const std::string& text) { handler->on_message(text); }
  };

  client open(const std::string& target) {
    client c;
    c.sink = std::make_shared<sink_log>();
    transport::http_request req;
    req.target = target;
    REQUIRE_FALSE(gw->check_upgrade(req).has_value());
    c.handler = gw->open(req, c.sink);
    opened.push_back(c.handler);
    run();
    return c;
  }

  int post(const std::string& target, const std::string& body) {
    int status = 0;
    transport::http_request req;
    req.method = "POST";
    req.target = target;
    req.authorization = "Bearer " + api_key;
    req.body = body;
    gw->handle_http(req, [&](transport::http_response r) {
      status = static_cast<int>(r.status);
    });
    run();
    return status;
  }
};

} // namespace

TEST_CASE("S0 on /api/v1/ws: the first channel subscribe decides", "[actors]") {
  fixture f;
  auto c =
      f.open("/api/v1/ws?token=" + f.token("ann", {"pipeline:*", "system:*"}));
  // Undecided: answered the native way.
  c.send(R"({"type":"ping"})");
  f.run();
  REQUIRE(c.sink->of_type("pong").size() == 1);
  c.sink->clear();
  c.send(R"({"type":"subscribe","channel":"pipeline","pipeline_id":"p1"})");
  c.send(R"({"type":"subscribe","channel":"system"})");
  f.run();
  CHECK(c.sink->of_type("subscription").empty()); // S0 has none
  CHECK(
      f.post(
          "/api/v1/publish",
          R"({"room_id":"pipeline:p1","type":"progress","data":{"progress":45}})") ==
      200);
  f.post("/api/v1/publish",
         R"({"room_id":"user:ann","type":"notice","data":{}})");
  auto ev = c.sink->of_type("pipeline.progress");
  REQUIRE(ev.size() == 1);
  CHECK(ev[0]["channel"] == "pipeline");
  CHECK(ev[0]["pipeline_id"] == "p1");
  CHECK(ev[0]["payload"]["progress"] == 45);
  // The auto-joined user room was re-joined with S0 encoding.
  CHECK(c.sink->of_type("user.notice").size() == 1);
  c.send(R"({"type":"list_subscriptions"})");
  f.run();
  auto subs = c.sink->of_type("subscriptions");
  REQUIRE(subs.size() == 1);
  CHECK(subs[0]["payload"]["subscriptions"] ==
        json::parse(R"([{"channel":"pipeline","pipeline_id":"p1"},
                        {"channel":"system"}])"));
  SECTION("errors are S0's, with details") {
    c.send(R"({"type":"subscribe","channel":"connector","connector_id":"c1"})");
    c.send(
        R"({"type":"unsubscribe","channel":"pipeline","pipeline_id":"nope"})");
    c.send(R"({"type":"subscribe","channel":"pipeline"})");
    c.send("not json");
    f.run();
    auto errs = c.sink->of_type("error");
    REQUIRE(errs.size() == 4);
    CHECK(errs[0]["error_code"] == "SUBSCRIPTION_FAILED");
    CHECK(errs[0]["details"]["connector_id"] == "c1");
    CHECK(errs[1]["error_code"] == "SUBSCRIPTION_FAILED");
    CHECK(errs[1]["details"]["pipeline_id"] == "nope");
    CHECK(errs[2]["error_code"] == "SUBSCRIPTION_FAILED");
    CHECK(errs[3]["error_code"] == "INVALID_JSON");
    CHECK(c.sink->code() == 0);
  }
  SECTION("a native frame after the decision is not native any more") {
    c.send(R"({"type":"subscribe","room_id":"pipeline:p2"})");
    f.run();
    auto errs = c.sink->of_type("error");
    REQUIRE(errs.size() == 1);
    CHECK(errs[0]["error_code"] == "MISSING_FIELD"); // no `channel`
    CHECK(c.sink->of_type("subscription").empty());
  }
  SECTION("ping gets S0's pong, unsubscribe is silent") {
    c.sink->clear();
    c.send(R"({"type":"ping"})");
    c.send(R"({"type":"unsubscribe","channel":"pipeline","pipeline_id":"p1"})");
    f.run();
    auto frames = c.sink->frames();
    REQUIRE(frames.size() == 1);
    CHECK(frames[0]["type"] == "pong");
    CHECK_FALSE(frames[0].contains("server_time"));
  }
}

TEST_CASE("native subscribe decides native for good", "[actors]") {
  fixture f;
  auto c = f.open("/api/v1/ws?token=" + f.token("bo", {"pipeline:*"}));
  c.send(R"({"type":"subscribe","room_id":"pipeline:p1"})");
  c.send(R"({"type":"subscribe","channel":"pipeline","pipeline_id":"p2"})");
  f.run();
  auto subs = c.sink->of_type("subscription");
  REQUIRE(subs.size() == 2); // user:bo and pipeline:p1
  f.post("/api/v1/publish",
         R"({"room_id":"pipeline:p1","type":"progress","data":{}})");
  auto ev = c.sink->of_type("progress");
  REQUIRE(ev.size() == 1);
  CHECK(ev[0]["room_id"] == "pipeline:p1");
  // The S0 frame is read as native: no room_id.
  REQUIRE(c.sink->of_type("error").size() == 1);
}

TEST_CASE("S0 plan limits: connections per user and messages per second",
          "[actors]") {
  fixture f;
  auto tok = f.token("cy", {"pipeline:*"}, "free");
  auto a = f.open("/api/v1/ws?token=" + tok);
  auto b = f.open("/api/v1/ws?token=" + tok);
  auto over = f.open("/api/v1/ws?token=" + tok);
  CHECK(a.sink->code() == 0);
  CHECK(b.sink->code() == 0);
  CHECK(over.sink->code() == 1013);
  auto errs = over.sink->of_type("error");
  REQUIRE(errs.size() == 1);
  CHECK(errs[0]["error_code"] == "CONNECTION_FAILED");
  CHECK(over.sink->of_type("connection").empty());
  // Another plan-less token of the same user is not plan-limited.
  auto plain = f.open("/api/v1/ws?token=" + f.token("cy", {}));
  CHECK(plain.sink->code() == 0);
  // A closed one frees its slot.
  a.handler->on_closed();
  f.run();
  auto again = f.open("/api/v1/ws?token=" + tok);
  CHECK(again.sink->code() == 0);
  // 3 messages per second: the fourth in a burst is refused.
  for (int i = 0; i < 4; ++i)
    b.send(R"({"type":"ping"})");
  f.run();
  CHECK(b.sink->of_type("pong").size() == 3);
  REQUIRE(b.sink->of_type("error").size() == 1);
  CHECK(b.sink->of_type("error")[0]["error_code"] == "RATE_LIMITED");
}

TEST_CASE("S0 heartbeat carries active_connections", "[actors]") {
  fixture f{{}, std::chrono::seconds(1)};
  auto c = f.open("/api/v1/ws?token=" + f.token("di", {"pipeline:*"}));
  c.send(R"({"type":"subscribe","channel":"pipeline","pipeline_id":"p1"})");
  f.run();
  f.sched->trigger_timeouts();
  f.run();
  auto hb = c.sink->of_type("heartbeat");
  REQUIRE(hb.size() >= 1);
  CHECK(hb.back()["active_connections"] == 1);
  CHECK(hb.back()["server_time"].is_string());
}

TEST_CASE("a bad query token on /api/v1/ws gets UNAUTHORIZED, then 1008",
          "[actors]") {
  fixture f;
  auto c = f.open("/api/v1/ws?token=" + f.token("eve", {}) + "x");
  CHECK(c.sink->code() == 1008);
  auto errs = c.sink->of_type("error");
  REQUIRE(errs.size() == 1);
  CHECK(errs[0]["error_code"] == "UNAUTHORIZED");
}

TEST_CASE("S3 operation sockets: refusals, current_state, status_update",
          "[actors]") {
  fixture f;
  REQUIRE(f.post("/api/v1/operations",
                 R"({"id":"op1","kind":"operation","owner":"ed"})") == 201);
  auto path = [&](const std::string& op, const std::string& tok) {
    return "/ws/operations/" + op + "?token=" + tok;
  };
  SECTION("refusals close 1008 with their fixed reasons") {
    auto none = f.open("/ws/operations/op1");
    CHECK(none.sink->code() == 1008);
    CHECK(none.sink->reason() == "Authentication required");
    auto bad = f.open(path("op1", f.token("ed", {}) + "x"));
    CHECK(bad.sink->reason() == "Invalid token");
    auto unknown = f.open(path("nope", f.token("ed", {})));
    CHECK(unknown.sink->code() == 1008);
    CHECK(unknown.sink->reason() == "Operation not found");
    auto other = f.open(path("op1", f.token("flo", {})));
    CHECK(other.sink->code() == 1008);
    CHECK(other.sink->reason() == "You don't have access to this operation");
    auto granted = f.open(path("op1", f.token("flo", {"operation:*"})));
    CHECK(granted.sink->code() == 0);
  }
  SECTION("limits per user and per operation") {
    auto a = f.open(path("op1", f.token("ed", {})));
    auto b = f.open(path("op1", f.token("ed", {})));
    auto c = f.open(path("op1", f.token("ed", {})));
    CHECK(a.sink->code() == 0);
    CHECK(b.sink->code() == 0);
    CHECK(c.sink->reason() == "User connection limit exceeded");
    auto d = f.open(path("op1", f.token("gus", {"operation:*"})));
    CHECK(d.sink->code() == 0);
    auto e = f.open(path("op1", f.token("hal", {"operation:*"})));
    CHECK(e.sink->reason() == "Operation connection limit exceeded");
    a.handler->on_closed();
    f.run();
    auto g = f.open(path("op1", f.token("hal", {"operation:*"})));
    CHECK(g.sink->code() == 0);
  }
  SECTION("current_state first, events, then status_update") {
    auto c = f.open(path("op1", f.token("ed", {})));
    auto first = c.sink->frames();
    REQUIRE(first.size() == 1);
    CHECK(first[0]["type"] == "current_state");
    CHECK(first[0]["data"]["status"] == "pending");
    f.post(
        "/api/v1/operations/op1/events",
        R"({"type":"file_completed","data":{"processed_files":1,"total_files":2}})");
    f.post("/api/v1/operations/op1/events",
           R"({"type":"operation_completed","data":{"status":"completed"}})");
    c.send(R"({"type":"ping"})");
    c.send("{not json");
    f.run();
    auto frames = c.sink->frames();
    REQUIRE(frames.size() == 5);
    CHECK(frames[1]["type"] == "file_completed");
    CHECK(frames[1]["data"]["processed_files"] == 1);
    CHECK(frames[1]["processed_files"] == 1); // flat copy for S3's readers
    CHECK(frames[2]["type"] == "operation_completed");
    CHECK(frames[3]["type"] == "status_update");
    CHECK(frames[3]["data"]["status"] == "completed");
    CHECK(frames[4]["type"] == "pong");
    // A reconnect gets current_state again, terminal, and status_update.
    auto again = f.open(path("op1", f.token("ed", {})));
    auto re = again.sink->frames();
    REQUIRE(re.size() == 2);
    CHECK(re[0]["type"] == "current_state");
    CHECK(re[0]["data"]["status"] == "completed");
    CHECK(re[1]["type"] == "status_update");
  }
}

namespace {

struct temp_tree {
  std::filesystem::path root;
  temp_tree() {
    root = std::filesystem::temp_directory_path() /
           ("tidings-scan-" + std::to_string(::getpid()) + "-" +
            std::to_string(reinterpret_cast<std::uintptr_t>(this)));
    std::filesystem::create_directories(root / "docs" / "sub");
    std::filesystem::create_directories(root / "big");
    std::ofstream(root / "docs" / "a.pdf") << "12345";
    std::ofstream(root / "docs" / "sub" / "b.txt") << "xy";
    for (int i = 0; i < 60; ++i)
      std::ofstream(root / "big" / ("f" + std::to_string(i))) << "z";
    std::filesystem::create_directory_symlink("/etc", root / "docs" / "out");
    std::filesystem::create_directory_symlink("/etc", root / "escape");
  }
  ~temp_tree() {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }
};

} // namespace

TEST_CASE("S3 scan socket: disabled, escapes, results, bounds, cancel",
          "[actors]") {
  SECTION("no root: closed 1008") {
    fixture f;
    auto c = f.open("/ws/scan/s1");
    CHECK(c.sink->code() == 1008);
    CHECK(c.sink->reason() == "Directory scans are disabled");
  }
  temp_tree tree;
  fixture f{tree.root.string()};
  auto c = f.open("/ws/scan/s1");
  REQUIRE(c.sink->code() == 0);
  auto last_error = [&] {
    auto errs = c.sink->of_type("error");
    REQUIRE_FALSE(errs.empty());
    return errs.back()["message"].get<std::string>();
  };
  SECTION("escapes are refused") {
    c.send(R"({"action":"scan","path":"../","recursive":true})");
    f.run();
    CHECK(c.sink->of_type("error").size() == 1);
    c.send(R"({"action":"scan","path":"/etc","recursive":true})");
    c.send(R"({"action":"scan","path":"escape","recursive":true})");
    f.run();
    CHECK(c.sink->of_type("error").size() == 3);
    CHECK(c.sink->of_type("completed").empty());
  }
  SECTION("a recursive scan lists files and skips links") {
    c.send(R"({"action":"scan","path":"docs","recursive":true})");
    f.run();
    auto done = c.sink->of_type("completed");
    REQUIRE(done.size() == 1);
    CHECK(done[0]["count"] == 2);
    CHECK(done[0]["total_size"] == 7);
    std::set<std::string> exts;
    for (auto& file : done[0]["files"])
      exts.insert(file["extension"].get<std::string>());
    CHECK(exts == std::set<std::string>{".pdf", ".txt"});
    c.send(R"({"action":"scan","path":"docs","recursive":false})");
    f.run();
    CHECK(c.sink->of_type("completed").back()["count"] == 1);
  }
  SECTION("too many files is an error, not a truncated result") {
    c.send(R"({"action":"scan","path":"big"})");
    f.run();
    CHECK(c.sink->of_type("completed").empty());
    CHECK(last_error().find("files") != std::string::npos);
  }
  SECTION("cancel between steps") {
    c.send(R"({"action":"scan","path":"big"})");
    c.send(R"({"action":"cancel"})");
    f.run();
    CHECK(c.sink->of_type("completed").empty());
    CHECK(c.sink->of_type("error").size() == 1);
    c.send(R"({"action":"cancel"})");
    f.run();
    CHECK(c.sink->of_type("error").size() == 2); // nothing running
  }
  SECTION("the session's end stops the scan") {
    c.send(R"({"action":"scan","path":"big"})");
    c.handler->on_closed();
    f.run();
    CHECK(c.sink->of_type("completed").empty());
  }
}
