// Actor behaviour on CAF's deterministic scheduler: the real gateway,
// connection, directory, room and history writer, with a recording sink in
// place of a socket and the in-memory store in place of SQLite.
#include "actors/cluster_node.hpp"
#include "actors/examples/checklist.hpp"
#include "actors/gateway.hpp"
#include "actors/history_writer.hpp"
#include "actors/messages.hpp"
#include "actors/room_directory.hpp"
#include "persistence/memory_store.hpp"
#include "persistence/retention.hpp"
#include "protocol/jwt.hpp"

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <mutex>

using namespace tidings;
using json = nlohmann::json;

namespace {

const std::string secret = "actor-test-secret-0123456789abcdef";
using kind_registry_t = actors::kind_registry;

class recording_sink : public transport::frame_sink {
 public:
  bool deliver(transport::frame f) override {
    std::lock_guard<std::mutex> g{m_};
    if (closed_ || refuse_)
      return false;
    if (bound_ && held_ + f->size() > bound_) {
      closed_ = true; // what a real session does: close 4001
      code_ = 4001;
      return false;
    }
    if (bound_)
      held_ += f->size();
    frames_.push_back(std::move(f));
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
  std::size_t queued_bytes() const override {
    std::lock_guard<std::mutex> g{m_};
    return held_;
  }
  std::size_t max_queued_bytes() const override {
    std::lock_guard<std::mutex> g{m_};
    return bound_ ? bound_ : 1 << 20;
  }

  /// Make the sink behave like a session whose client reads nothing until
  /// `drain()`: queued bytes grow with each delivery.
  void fill_up(std::size_t bound) {
    std::lock_guard<std::mutex> g{m_};
    bound_ = bound;
  }
  void drain() {
    std::lock_guard<std::mutex> g{m_};
    held_ = 0;
  }
  std::size_t held() const {
    std::lock_guard<std::mutex> g{m_};
    return held_;
  }

  void refuse(bool on) {
    std::lock_guard<std::mutex> g{m_};
    refuse_ = on;
  }
  std::vector<transport::frame> frames() const {
    std::lock_guard<std::mutex> g{m_};
    return frames_;
  }
  std::vector<json> parsed() const {
    std::vector<json> out;
    for (auto& f : frames())
      out.push_back(json::parse(*f));
    return out;
  }
  /// Frames of one `type`.
  std::vector<json> of_type(const std::string& type) const {
    std::vector<json> out;
    for (auto& j : parsed())
      if (j["type"] == type)
        out.push_back(j);
    return out;
  }
  std::uint16_t close_code() const {
    std::lock_guard<std::mutex> g{m_};
    return code_;
  }
  std::string close_reason() const {
    std::lock_guard<std::mutex> g{m_};
    return reason_;
  }

 private:
  mutable std::mutex m_;
  std::vector<transport::frame> frames_;
  bool closed_ = false;
  bool refuse_ = false;
  std::size_t bound_ = 0; // 0: unbounded, never fills
  std::size_t held_ = 0;
  std::uint16_t code_ = 0;
  std::string reason_;
};

struct fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;
  actors::node_state node;
  std::shared_ptr<persistence::memory_store> store =
      std::make_shared<persistence::memory_store>();
  caf::actor writer;
  caf::actor directory;
  std::shared_ptr<actors::gateway> gw;
  std::string api_key = "test-api-key";
  std::vector<std::shared_ptr<transport::connection_handler>> opened;

  explicit fixture(
      std::chrono::milliseconds room_idle = std::chrono::seconds(30),
      std::chrono::milliseconds heartbeat = {},
      std::shared_ptr<actors::placement_table> placement = {}) {
    cfg.set("scheduler.policy", caf::atom("testing"));
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
    actors::history_writer_config wc;
    wc.detached = false;
    wc.retention = *persistence::parse_retention("kept:events=3;aged:age=60");
    wc.trim_interval = std::chrono::milliseconds(0); // after every commit
    writer = actors::spawn_history_writer(*sys, store, node, wc);
    actors::room_config rc;
    rc.idle_timeout = room_idle;
    rc.replay_limit = 50;
    rc.retention = std::make_shared<const persistence::retention_rules>(
        wc.retention);
    auto room_kinds = std::make_shared<kind_registry_t>();
    room_kinds->add_operation_kind("index");
    room_kinds->add_operation_kind(
        "checklist",
        std::make_shared<const actors::examples::checklist_reducer>(),
        std::make_shared<const actors::examples::checklist_commands>());
    rc.kinds = room_kinds;
    rc.placement = std::move(placement);
    directory = actors::spawn_room_directory(*sys, writer, node, rc);
    actors::connection_config cc;
    cc.key = std::make_shared<const protocol::jwt_key>(
        *protocol::jwt_key::hs256(secret));
    cc.auth_timeout = std::chrono::seconds(5);
    cc.heartbeat_interval = heartbeat;
    cc.max_subscriptions = 4;
    actors::gateway_config gc;
    gc.conn = std::make_shared<const actors::connection_config>(cc);
    gc.api_key = api_key;
    auto kinds = std::make_shared<kind_registry_t>();
    kinds->add_operation_kind("index");
    kinds->add_operation_kind("checklist");
    gc.kinds = kinds;
    gw = std::make_shared<actors::gateway>(*sys, directory, writer, node, gc);
    run();
  }

  ~fixture() {
    for (auto& h : opened)
      h->on_closed(); // what the transport does when it stops
    run();
    gw.reset();
    // The production shutdown path: rooms retire, then the writer stops.
    caf::anon_send(directory, actors::shutdown_atom::value);
    run();
  }

  void run() { sched->run(); }

  std::string token(const std::string& sub, std::vector<std::string> rooms,
                    bool admin = false) {
    protocol::token_request req;
    req.sub = sub;
    req.rooms = std::move(rooms);
    req.admin = admin;
    req.iat = actors::unix_now();
    return protocol::sign_hs256(req, secret);
  }

  struct client {
    std::shared_ptr<recording_sink> sink;
    std::shared_ptr<transport::connection_handler> handler;
    void send(const std::string& text) { handler->on_message(text); }
  };

  client connect(const std::string& query_token = {}) {
    client c;
    c.sink = std::make_shared<recording_sink>();
    transport::http_request req;
    req.target =
        query_token.empty() ? "/api/v1/ws" : "/api/v1/ws?token=" + query_token;
    c.handler = gw->open(req, c.sink);
    opened.push_back(c.handler);
    run();
    return c;
  }

  transport::http_response http(const std::string& method,
                                const std::string& target,
                                const std::string& auth = {},
                                const std::string& body = {}) {
    auto out = std::make_shared<std::optional<transport::http_response>>();
    transport::http_request req;
    req.method = method;
    req.target = target;
    req.authorization = auth;
    req.body = body;
    gw->handle_http(req, [out](transport::http_response r) { *out = r; });
    run();
    REQUIRE(out->has_value());
    return **out;
  }

  /// Starts a publish without running the scheduler (for interleavings).
  void publish_async(const std::string& room, const std::string& data) {
    transport::http_request req;
    req.method = "POST";
    req.target = "/api/v1/publish";
    req.authorization = "Bearer " + api_key;
    req.body =
        R"({"room_id":")" + room + R"(","type":"t","data":)" + data + "}";
    gw->handle_http(req,
                    [](transport::http_response r) { CHECK(r.status == 200); });
  }

  std::string epoch_of(const std::string& room) {
    return store->position(room)->epoch;
  }

  std::uint64_t publish(const std::string& room, const std::string& data,
                        const std::string& type = "execution_update") {
    auto r = http("POST", "/api/v1/publish", "Bearer " + api_key,
                  R"({"room_id":")" + room + R"(","type":")" + type +
                      R"(","event":"status_changed","data":)" + data + "}");
    INFO(r.body);
    REQUIRE(r.status == 200);
    return json::parse(r.body)["offset"].get<std::uint64_t>();
  }
};

} // namespace

TEST_CASE("a query token connects and joins the user's room", "[actors]") {
  fixture f;
  auto c = f.connect(f.token("alice", {"execution:*"}));
  auto frames = c.sink->parsed();
  REQUIRE(frames.size() == 2);
  CHECK(frames[0]["type"] == "connection");
  CHECK(frames[0]["event"] == "connected");
  CHECK(frames[0]["connection_id"].is_string());
  CHECK(frames[1]["type"] == "subscription");
  CHECK(frames[1]["room_id"] == "user:alice");
  CHECK(f.node.total_connections() == 1);
  c.handler->on_closed();
  f.run();
  CHECK(f.node.total_connections() == 0);
}

TEST_CASE("one publication, the same bytes to every subscriber, in order",
          "[actors]") {
  fixture f;
  std::vector<fixture::client> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(
        f.connect(f.token("u" + std::to_string(i), {"execution:*"})));
    clients.back().send(R"({"type":"subscribe","room_id":"execution:e1"})");
    f.run();
  }
  CHECK(f.publish("execution:e1", R"({"n":1})") == 1);
  CHECK(f.publish("execution:e1", R"({"n":2})") == 2);
  CHECK(f.publish("execution:other", R"({"n":9})") == 1);
  std::vector<const std::string*> first_frames;
  for (auto& c : clients) {
    auto events = c.sink->of_type("execution_update");
    REQUIRE(events.size() == 2);
    CHECK(events[0]["offset"] == 1);
    CHECK(events[1]["offset"] == 2);
    CHECK(events[0]["data"]["n"] == 1);
    CHECK(events[0]["room_id"] == "execution:e1");
    CHECK(events[0]["event"] == "status_changed");
    CHECK(events[0]["epoch"] == events[1]["epoch"]);
    // The confirmation precedes every event of the room.
    auto all = c.sink->parsed();
    auto sub = std::find_if(all.begin(), all.end(), [](auto& j) {
      return j["type"] == "subscription" && j["room_id"] == "execution:e1";
    });
    auto ev = std::find_if(all.begin(), all.end(), [](auto& j) {
      return j["type"] == "execution_update";
    });
    CHECK(sub < ev);
    for (auto& fr : c.sink->frames())
      if (fr->find("\"offset\":1,") != std::string::npos &&
          fr->find("execution_update") != std::string::npos)
        first_frames.push_back(fr.get());
  }
  REQUIRE(first_frames.size() == 3);
  CHECK(first_frames[0] == first_frames[1]); // encoded once, shared
  CHECK(first_frames[1] == first_frames[2]);
  CHECK(f.node.counters.deliveries.load() == 6);
  // History holds what was acknowledged.
  auto stored = f.store->read_since("execution:e1", 0, 10);
  REQUIRE(stored);
  CHECK(stored->size() == 2);
}

TEST_CASE("first-message auth, its failures and its timeout", "[actors]") {
  fixture f;
  SECTION("auth message") {
    auto c = f.connect();
    CHECK(c.sink->parsed().empty());
    c.send(R"({"type":"subscribe","room_id":"execution:e1"})");
    f.run();
    REQUIRE(c.sink->of_type("error").size() == 1);
    CHECK(c.sink->of_type("error")[0]["error_code"] == "NOT_AUTHENTICATED");
    c.send(R"({"type":"auth","token":")" + f.token("bob", {}) + "\"}");
    f.run();
    CHECK(c.sink->of_type("connection").size() == 1);
    c.send(R"({"type":"auth","token":")" + f.token("bob", {}) + "\"}");
    f.run();
    CHECK(c.sink->of_type("error").back()["error_code"] ==
          "ALREADY_AUTHENTICATED");
    f.sched->trigger_timeouts(); // the auth timer fires after auth: no effect
    f.run();
    CHECK(c.sink->close_code() == 0);
  }
  SECTION("bad token in the message closes 1008") {
    auto c = f.connect();
    c.send(R"({"type":"auth","token":"x.y.z"})");
    f.run();
    CHECK(c.sink->close_code() == 1008);
    CHECK(c.sink->close_reason() == "Invalid token");
  }
  SECTION("bad token in the query closes 1008") {
    auto forged = f.token("eve", {}) + "x";
    auto c = f.connect(forged);
    CHECK(c.sink->close_code() == 1008);
    CHECK(f.node.counters.auth_failures.load() == 1);
  }
  SECTION("no auth in time closes 1008") {
    auto c = f.connect();
    f.sched->trigger_timeouts();
    f.run();
    CHECK(c.sink->close_code() == 1008);
    CHECK(c.sink->close_reason() == "Authentication timeout");
  }
}

TEST_CASE("commands: ACL, errors, list, unsubscribe, limits", "[actors]") {
  fixture f;
  auto c = f.connect(f.token("alice", {"execution:e1", "workflow:*"}));
  c.send(R"({"type":"subscribe","room_id":"execution:e2"})");
  c.send(R"({"type":"subscribe","room_id":"user:bob"})");
  c.send("not json");
  c.send(R"({"type":"fly"})");
  c.send(R"({"type":"subscribe"})");
  c.send(R"({"type":"unsubscribe","room_id":"workflow:w9"})");
  f.run();
  auto errors = c.sink->of_type("error");
  REQUIRE(errors.size() == 6);
  CHECK(errors[0]["error_code"] == "ACCESS_DENIED");
  CHECK(errors[0]["message"] == "Access denied to room");
  CHECK(errors[0]["room_id"] == "execution:e2");
  CHECK(errors[1]["error_code"] == "ACCESS_DENIED");
  CHECK(errors[2]["error_code"] == "INVALID_JSON");
  CHECK(errors[3]["error_code"] == "UNKNOWN_TYPE");
  CHECK(errors[4]["error_code"] == "MISSING_FIELD");
  CHECK(errors[5]["error_code"] == "NOT_SUBSCRIBED");

  c.send(R"({"type":"subscribe","room_id":"execution:e1"})");
  c.send(R"({"type":"list_subscriptions"})");
  c.send(R"({"type":"ping"})");
  f.run();
  auto lists = c.sink->of_type("subscriptions");
  REQUIRE(lists.size() == 1);
  CHECK(lists[0]["rooms"] == json::array({"execution:e1", "user:alice"}));
  CHECK(c.sink->of_type("pong").size() == 1);

  c.send(R"({"type":"unsubscribe","room_id":"execution:e1"})");
  f.run();
  CHECK(c.sink->of_type("subscription").back()["event"] == "unsubscribed");
  f.publish("execution:e1", "{}");
  CHECK(c.sink->of_type("execution_update").empty());

  // max_subscriptions is 4 in the fixture; user:alice is one of them.
  for (int i = 0; i < 4; ++i)
    c.send(R"({"type":"subscribe","room_id":"workflow:w)" + std::to_string(i) +
           "\"}");
  f.run();
  CHECK(c.sink->of_type("error").back()["error_code"] ==
        "TOO_MANY_SUBSCRIPTIONS");
}

TEST_CASE("a refusing sink does not stall the room", "[actors]") {
  fixture f;
  auto slow = f.connect(f.token("slow", {"execution:*"}));
  auto fast = f.connect(f.token("fast", {"execution:*"}));
  slow.send(R"({"type":"subscribe","room_id":"execution:e1"})");
  fast.send(R"({"type":"subscribe","room_id":"execution:e1"})");
  f.run();
  slow.sink->refuse(true); // what a closing, over-full session does
  for (int i = 0; i < 50; ++i)
    f.publish("execution:e1", std::to_string(i));
  CHECK(fast.sink->of_type("execution_update").size() == 50);
  CHECK(f.node.counters.dropped_deliveries.load() == 50);
}

TEST_CASE("idle rooms retire and offsets continue after", "[actors]") {
  fixture f{std::chrono::seconds(1)};
  CHECK(f.publish("execution:r", "1") == 1);
  CHECK(f.node.counters.rooms_alive.load() == 1);
  f.sched->trigger_timeouts();
  f.run();
  f.sched->trigger_timeouts();
  f.run();
  CHECK(f.node.counters.rooms_alive.load() == 0);
  CHECK(f.publish("execution:r", "2") == 2); // a new room, same history
  CHECK(f.node.counters.rooms_alive.load() == 1);
}

TEST_CASE("HTTP API: publish auth, bad bodies, stats and rooms", "[actors]") {
  fixture f;
  CHECK(f.http("POST", "/api/v1/publish", "Bearer wrong",
               R"({"room_id":"a:b","type":"t","data":1})")
            .status == 401);
  CHECK(f.http("POST", "/api/v1/publish", "",
               R"({"room_id":"a:b","type":"t","data":1})")
            .status == 401);
  auto bad = f.http("POST", "/api/v1/publish", "Bearer " + f.api_key, "{");
  CHECK(bad.status == 400);
  CHECK(json::parse(bad.body)["error_code"] == "INVALID_JSON");
  CHECK(f.http("GET", "/api/v1/publish").status == 405);
  CHECK(f.http("GET", "/nope").status == 404);
  CHECK(f.http("GET", "/healthz").status == 200);

  auto alice = f.connect(f.token("alice", {"execution:*"}));
  auto bob = f.connect(f.token("bob", {"execution:*"}));
  alice.send(R"({"type":"subscribe","room_id":"execution:e1"})");
  f.run();
  auto stats =
      f.http("GET", "/api/v1/ws/stats", "Bearer " + f.token("alice", {}));
  REQUIRE(stats.status == 200);
  auto s = json::parse(stats.body);
  CHECK(s["total_connections"] == 2);
  CHECK(s["user_connections"] == 1);
  CHECK(s["active_rooms"] == 3); // user:alice, user:bob, execution:e1
  CHECK(f.http("GET", "/api/v1/ws/stats").status == 401);

  auto own = json::parse(
      f.http("GET", "/api/v1/ws/rooms", "Bearer " + f.token("alice", {})).body);
  CHECK(own["active_rooms"] == json::array({"execution:e1", "user:alice"}));
  auto all = json::parse(
      f.http("GET", "/api/v1/ws/rooms", "Bearer " + f.token("root", {}, true))
          .body);
  CHECK(all["total_rooms"] == 3);

  auto metrics = f.http("GET", "/metrics");
  CHECK(metrics.content_type.rfind("text/plain", 0) == 0);
  CHECK(metrics.body.find("tidings_connections 2") != std::string::npos);
}

TEST_CASE("heartbeat frames when configured", "[actors]") {
  fixture f{std::chrono::seconds(30), std::chrono::seconds(1)};
  auto c = f.connect(f.token("alice", {}));
  f.sched->trigger_timeouts();
  f.run();
  auto hb = c.sink->of_type("heartbeat");
  REQUIRE(hb.size() >= 1);
  CHECK(hb[0]["server_time"].is_string());
}

namespace {

std::string resume_frame(const std::string& room, const std::string& epoch,
                         std::uint64_t offset) {
  return R"({"type":"subscribe","room_id":")" + room +
         R"(","since":{"epoch":")" + epoch + R"(","offset":)" +
         std::to_string(offset) + "}}";
}

/// Frames about `room` after its `subscribed` confirmation.
std::vector<json> room_frames(const recording_sink& sink,
                              const std::string& room) {
  std::vector<json> out;
  for (auto& j : sink.parsed())
    if (j.value("room_id", "") == room && j["type"] != "subscription")
      out.push_back(j);
  return out;
}

json confirmation(const recording_sink& sink, const std::string& room) {
  for (auto& j : sink.parsed())
    if (j["type"] == "subscription" && j["room_id"] == room)
      return j;
  FAIL("no confirmation for " << room);
  return {};
}

} // namespace

TEST_CASE("resume replays exactly the missed events, then live ones",
          "[actors]") {
  fixture f;
  for (int i = 1; i <= 5; ++i)
    f.publish("execution:r", std::to_string(i));
  auto epoch = f.epoch_of("execution:r");
  auto c = f.connect(f.token("alice", {"execution:*"}));
  SECTION("recoverable") {
    c.send(resume_frame("execution:r", epoch, 2));
    f.run();
    auto conf = confirmation(*c.sink, "execution:r");
    CHECK(conf["recovered"] == true);
    CHECK(conf["offset"] == 5);
    CHECK(conf["epoch"] == epoch);
    f.publish("execution:r", "6");
    auto evs = room_frames(*c.sink, "execution:r");
    REQUIRE(evs.size() == 4);
    for (std::size_t i = 0; i < evs.size(); ++i) {
      CHECK(evs[i]["offset"] == 3 + i);
      CHECK(evs[i]["data"] == 3 + i);
      CHECK(evs[i]["epoch"] == epoch);
    }
  }
  SECTION("already up to date") {
    c.send(resume_frame("execution:r", epoch, 5));
    f.run();
    CHECK(confirmation(*c.sink, "execution:r")["recovered"] == true);
    CHECK(room_frames(*c.sink, "execution:r").empty());
  }
  SECTION("another epoch is not recoverable") {
    c.send(resume_frame("execution:r", "not-" + epoch, 2));
    f.run();
    auto conf = confirmation(*c.sink, "execution:r");
    CHECK(conf["recovered"] == false);
    CHECK(conf["offset"] == 5); // the client continues from here
    CHECK(room_frames(*c.sink, "execution:r").empty());
  }
  SECTION("a cursor ahead of the room is not recoverable") {
    c.send(resume_frame("execution:r", epoch, 9));
    f.run();
    CHECK(confirmation(*c.sink, "execution:r")["recovered"] == false);
  }
  SECTION("a resume a few events behind is served from memory") {
    // History emptied behind the room's back: only the room's recent
    // events in memory can answer.
    REQUIRE(f.store->trim("execution:r", 0, 0));
    REQUIRE(f.store->read_since("execution:r", 0, 10)->empty());
    c.send(resume_frame("execution:r", epoch, 2));
    f.run();
    CHECK(confirmation(*c.sink, "execution:r")["recovered"] == true);
    auto evs = room_frames(*c.sink, "execution:r");
    REQUIRE(evs.size() == 3);
    for (std::size_t i = 0; i < evs.size(); ++i)
      CHECK(evs[i]["offset"] == 3 + i);
  }
  SECTION("trimmed history is never a silent gap") {
    // Written and trimmed before the room's actor starts (no recent events
    // in memory): the resume reads history.
    REQUIRE(f.store->position("execution:t"));
    std::vector<persistence::stored_event> written;
    for (std::uint64_t i = 1; i <= 5; ++i)
      written.push_back({"execution:t", i, 0, "execution_update", "",
                         std::to_string(i), ""});
    REQUIRE(f.store->append(written, {}));
    REQUIRE(f.store->trim("execution:t", 2, 0));
    c.send(resume_frame("execution:t", f.epoch_of("execution:t"), 1));
    f.run();
    auto conf = confirmation(*c.sink, "execution:t");
    CHECK(conf["recovered"] == false);
    CHECK(room_frames(*c.sink, "execution:t").empty());
    f.publish("execution:t", "6");
    auto evs = room_frames(*c.sink, "execution:t");
    REQUIRE(evs.size() == 1);
    CHECK(evs[0]["offset"] == 6);
  }
}

TEST_CASE("a user room holds no room actor until it carries an event",
          "[actors]") {
  fixture f;
  auto a1 = f.connect(f.token("alice", {}));
  auto a2 = f.connect(f.token("alice", {}));
  auto bob = f.connect(f.token("bob", {}));
  CHECK(f.node.counters.rooms_alive.load() == 0);
  auto epoch = f.epoch_of("user:alice");
  auto c1 = confirmation(*a1.sink, "user:alice");
  CHECK(c1["event"] == "subscribed");
  CHECK(c1["epoch"] == epoch);
  CHECK(c1["offset"] == 0);
  CHECK(confirmation(*a2.sink, "user:alice")["epoch"] == epoch);
  auto stats = json::parse(
      f.http("GET", "/api/v1/ws/stats", "Bearer " + f.token("bob", {})).body);
  CHECK(stats["active_rooms"] == 2); // user:alice, user:bob

  // The first event starts the room; both parked connections get it.
  CHECK(f.publish("user:alice", "1", "notice") == 1);
  CHECK(f.node.counters.rooms_alive.load() == 1);
  REQUIRE(a1.sink->of_type("notice").size() == 1);
  CHECK(a1.sink->of_type("notice")[0]["offset"] == 1);
  CHECK(a2.sink->of_type("notice").size() == 1);
  CHECK(bob.sink->of_type("notice").empty());

  // Later connections join the room's actor; unsubscribing from a room
  // joined while parked reaches the actor.
  auto a3 = f.connect(f.token("alice", {}));
  CHECK(confirmation(*a3.sink, "user:alice")["offset"] == 1);
  a1.send(R"({"type":"unsubscribe","room_id":"user:alice"})");
  f.run();
  CHECK(a1.sink->of_type("subscription").back()["event"] == "unsubscribed");
  CHECK(f.publish("user:alice", "2", "notice") == 2);
  CHECK(a1.sink->of_type("notice").size() == 1);
  CHECK(a2.sink->of_type("notice").size() == 2);
  REQUIRE(a3.sink->of_type("notice").size() == 1);
  CHECK(a3.sink->of_type("notice")[0]["offset"] == 2);
}

TEST_CASE("a connection that ends without leaving leaves every parked room",
          "[actors]") {
  fixture f;
  // One connection (an admin may join other users' rooms) in two parked
  // rooms, and another in one of them.
  auto idle = [](caf::event_based_actor*) {
    return caf::behavior{[](actors::tick_atom) {}};
  };
  auto conn = f.sys->spawn(idle);
  auto other = f.sys->spawn(idle);
  auto sink = std::make_shared<recording_sink>();
  auto join = [&](const caf::actor& c, std::uint64_t id,
                  const std::string& room) {
    actors::subscriber sub;
    sub.conn_id = id;
    sub.conn = c;
    sub.sink = sink;
    caf::anon_send(f.directory, actors::subscribe_atom::value,
                   *protocol::parse_room_id(room), std::move(sub));
    f.run();
  };
  join(conn, 901, "user:bob");
  join(conn, 901, "user:carol");
  join(other, 902, "user:carol");
  CHECK(f.node.counters.rooms_alive.load() == 0);
  CHECK(f.node.active_rooms() ==
        std::vector<std::string>{"user:bob", "user:carol"});
  // It ends without unsubscribing: both rooms forget it.
  caf::anon_send_exit(conn, caf::exit_reason::kill);
  f.run();
  CHECK(f.node.active_rooms() == std::vector<std::string>{"user:carol"});
  caf::anon_send_exit(other, caf::exit_reason::kill);
  f.run();
  CHECK(f.node.active_rooms().empty());
}

TEST_CASE("a parked user room: unsubscribe, disconnect, resume", "[actors]") {
  fixture f{std::chrono::seconds(1)};
  CHECK(f.publish("user:alice", "1", "notice") == 1);
  CHECK(f.publish("user:alice", "2", "notice") == 2);
  // Its actor retires once idle; the next connections park again.
  f.sched->trigger_timeouts();
  f.run();
  f.sched->trigger_timeouts();
  f.run();
  REQUIRE(f.node.counters.rooms_alive.load() == 0);
  auto epoch = f.epoch_of("user:alice");
  auto a = f.connect(f.token("alice", {}));
  auto b = f.connect(f.token("alice", {}));
  auto c = f.connect(f.token("alice", {}));
  CHECK(f.node.counters.rooms_alive.load() == 0);
  CHECK(confirmation(*a.sink, "user:alice")["offset"] == 2);
  // Joined while parked (the room already parked): listed, and leaving it
  // is answered without an error.
  c.send(R"({"type":"list_subscriptions"})");
  c.send(R"({"type":"unsubscribe","room_id":"user:alice"})");
  c.send(R"({"type":"subscribe","room_id":"user:alice"})");
  f.run();
  REQUIRE(c.sink->of_type("subscriptions").size() == 1);
  CHECK(c.sink->of_type("subscriptions")[0]["rooms"] ==
        json::array({"user:alice"}));
  CHECK(c.sink->of_type("subscription").back()["event"] == "subscribed");
  CHECK(c.sink->of_type("error").empty());

  a.send(R"({"type":"unsubscribe","room_id":"user:alice"})");
  f.run();
  CHECK(a.sink->of_type("error").empty());
  auto left = a.sink->of_type("subscription").back();
  CHECK(left["event"] == "unsubscribed");
  CHECK(left["offset"] == 2);
  a.send(R"({"type":"unsubscribe","room_id":"user:alice"})");
  f.run();
  CHECK(a.sink->of_type("error").back()["error_code"] == "NOT_SUBSCRIBED");
  b.handler->on_closed();
  f.run();

  // A resume needs the room's actor: it starts, takes the parked
  // subscriber (c) and replays the missed event to the resuming one.
  a.send(resume_frame("user:alice", epoch, 1));
  f.run();
  CHECK(f.node.counters.rooms_alive.load() == 1);
  auto back = a.sink->of_type("subscription").back();
  CHECK(back["event"] == "subscribed");
  CHECK(back["recovered"] == true);
  auto replayed = a.sink->of_type("notice");
  REQUIRE(replayed.size() == 1);
  CHECK(replayed[0]["offset"] == 2);

  CHECK(f.publish("user:alice", "3", "notice") == 3);
  CHECK(a.sink->of_type("notice").back()["offset"] == 3);
  REQUIRE(c.sink->of_type("notice").size() == 1);
  CHECK(c.sink->of_type("notice")[0]["offset"] == 3);
  CHECK(b.sink->of_type("notice").empty()); // left before the room started
  // Fanned out: event 3 to a and c (1 and 2 had no subscriber).
  CHECK(f.node.counters.deliveries.load() == 2);
}

TEST_CASE("resume beyond the replay limit is refused, not truncated",
          "[actors]") {
  fixture f; // replay_limit 50
  for (int i = 1; i <= 60; ++i)
    f.publish("execution:big", std::to_string(i));
  auto c = f.connect(f.token("alice", {"execution:*"}));
  c.send(resume_frame("execution:big", f.epoch_of("execution:big"), 5));
  f.run();
  CHECK(confirmation(*c.sink, "execution:big")["recovered"] == false);
  CHECK(room_frames(*c.sink, "execution:big").empty());
}

TEST_CASE("publishes racing a resume: no gap, no duplicate", "[actors]") {
  fixture f;
  for (int i = 1; i <= 10; ++i)
    f.publish("execution:race", std::to_string(i));
  auto epoch = f.epoch_of("execution:race");
  std::vector<fixture::client> clients;
  for (int i = 0; i < 20; ++i)
    clients.push_back(
        f.connect(f.token("u" + std::to_string(i), {"execution:*"})));
  // Interleave: resumes from different cursors and publishes, all queued
  // before any of them runs, so live events land during history reads.
  int next = 11;
  for (int i = 0; i < 20; ++i) {
    clients[i].send(resume_frame("execution:race", epoch, i % 10));
    f.publish_async("execution:race", std::to_string(next++));
    if (i % 3 == 0)
      f.sched->run_once(); // partial progress shifts the interleaving
  }
  f.run();
  for (int k = 0; k < 5; ++k)
    f.publish_async("execution:race", std::to_string(next++));
  f.run();
  const std::uint64_t last = next - 1;
  for (int i = 0; i < 20; ++i) {
    INFO("client " << i);
    CHECK(confirmation(*clients[i].sink, "execution:race")["recovered"] ==
          true);
    auto evs = room_frames(*clients[i].sink, "execution:race");
    std::uint64_t expect = i % 10 + 1;
    REQUIRE(evs.size() == last - expect + 1);
    for (auto& e : evs)
      CHECK(e["offset"] == expect++); // strictly consecutive: no gap, no dup
  }
}

TEST_CASE("an API request nobody answers gets UNAVAILABLE after 10 s",
          "[actors]") {
  fixture f;
  // A directory and writer that take every request and answer only when
  // told (and then with an offset, whatever was asked).
  auto held = std::make_shared<std::vector<caf::response_promise>>();
  auto hole = f.sys->spawn([held](caf::event_based_actor* self) {
    self->set_default_handler(
        [=](caf::scheduled_actor*,
            caf::message_view&) -> caf::result<caf::message> {
          held->push_back(self->make_response_promise());
          return caf::delegated<caf::message>{};
        });
    return caf::behavior{
        [=](actors::tick_atom) {
          for (auto& rp : *held)
            rp.deliver(std::uint64_t{1});
        },
    };
  });
  actors::connection_config cc;
  cc.key = std::make_shared<const protocol::jwt_key>(
      *protocol::jwt_key::hs256(secret));
  actors::gateway_config gc;
  gc.conn = std::make_shared<const actors::connection_config>(cc);
  gc.api_key = f.api_key;
  auto kinds = std::make_shared<kind_registry_t>();
  kinds->add_operation_kind("index");
  gc.kinds = kinds;
  auto gw = std::make_shared<actors::gateway>(*f.sys, hole, hole, f.node, gc);
  auto answers = std::make_shared<std::vector<transport::http_response>>();
  auto key = "Bearer " + f.api_key;
  auto jwt = "Bearer " + f.token("alice", {"execution:*"});
  // Each route that waits for an actor: a publish, an operation's creation,
  // event and read, a history page.
  auto request = [](std::string method, std::string target, std::string auth,
                    std::string body) {
    transport::http_request r;
    r.method = std::move(method);
    r.target = std::move(target);
    r.authorization = std::move(auth);
    r.body = std::move(body);
    return r;
  };
  std::vector<transport::http_request> reqs{
      request("POST", "/api/v1/publish", key,
              R"({"room_id":"execution:lost","type":"t","data":1})"),
      request("POST", "/api/v1/operations", key,
              R"({"id":"op1","kind":"index","owner":"alice"})"),
      request("POST", "/api/v1/operations/op1/events", key,
              R"({"type":"operation_started","data":{"total_files":4}})"),
      request("GET", "/api/v1/operations/op1", jwt, ""),
      request("GET", "/api/v1/rooms/execution:lost/history", jwt, ""),
  };
  auto send_all = [&] {
    for (auto& r : reqs)
      gw->handle_http(r, [answers](transport::http_response a) {
        answers->push_back(std::move(a));
      });
  };
  send_all();
  f.run();
  // The operation event and read wait on the writer's lookup.
  REQUIRE(held->size() == 5);
  CHECK(answers->empty());
  f.sched->advance_time(std::chrono::seconds(9));
  f.run();
  CHECK(answers->empty()); // still within their deadline
  f.sched->advance_time(std::chrono::seconds(2));
  f.run();
  REQUIRE(answers->size() == 5);
  for (auto& a : *answers) {
    CHECK(a.status == 503);
    CHECK(json::parse(a.body)["error_code"] == "UNAVAILABLE");
  }
  // An answer after the deadline is not answered twice.
  caf::anon_send(hole, actors::tick_atom::value);
  f.run();
  CHECK(answers->size() == 5);
  // Once stopped, the gateway refuses them at once.
  gw->stop();
  f.run();
  send_all();
  REQUIRE(answers->size() == 10);
  for (std::size_t i = 5; i < 10; ++i)
    CHECK((*answers)[i].status == 503);
  gw.reset();
  caf::anon_send_exit(hole, caf::exit_reason::user_shutdown);
  f.run();
}

TEST_CASE("a repeated publish_id returns the first offset", "[actors]") {
  fixture f{std::chrono::seconds(1)};
  auto body = [](const std::string& id, int n) {
    return R"({"room_id":"execution:p","type":"t","publish_id":")" + id +
           R"(","data":)" + std::to_string(n) + "}";
  };
  auto offsets = std::make_shared<std::vector<std::uint64_t>>();
  auto send = [&](const std::string& b) {
    transport::http_request req;
    req.method = "POST";
    req.target = "/api/v1/publish";
    req.authorization = "Bearer " + f.api_key;
    req.body = b;
    f.gw->handle_http(req, [offsets](transport::http_response r) {
      REQUIRE(r.status == 200);
      offsets->push_back(json::parse(r.body)["offset"].get<std::uint64_t>());
    });
  };
  // The retry arrives while the first is still in flight.
  send(body("a", 1));
  send(body("a", 1));
  send(body("b", 2));
  f.run();
  send(body("a", 1)); // after the commit
  f.run();
  REQUIRE(offsets->size() == 4);
  CHECK((*offsets)[0] == 1);
  CHECK((*offsets)[1] == 1);
  CHECK((*offsets)[2] == 2);
  CHECK((*offsets)[3] == 1);
  // The room retires; a new room actor reloads the ids from history.
  f.sched->trigger_timeouts();
  f.run();
  f.sched->trigger_timeouts();
  f.run();
  REQUIRE(f.node.counters.rooms_alive.load() == 0);
  send(body("b", 2));
  send(body("c", 3));
  f.run();
  REQUIRE(offsets->size() == 6);
  CHECK((*offsets)[4] == 2);
  CHECK((*offsets)[5] == 3);
  auto stored = f.store->read_since("execution:p", 0, 10);
  REQUIRE(stored);
  CHECK(stored->size() == 3); // a, b, c: no duplicates stored
}

namespace {

/// Node a is `f` (its placement table `a_table`); node b is a second
/// directory and writer in the same actor system, with its own table. Both
/// see {a, b} alive; set_views() gives both a new view.
struct two_nodes {
  std::shared_ptr<actors::placement_table> a_table =
      std::make_shared<actors::placement_table>("a");
  fixture f{std::chrono::seconds(30), {}, a_table};
  actors::node_state b_node;
  std::shared_ptr<persistence::memory_store> b_store =
      std::make_shared<persistence::memory_store>();
  std::shared_ptr<actors::placement_table> b_table =
      std::make_shared<actors::placement_table>("b");
  caf::actor b_dir;
  std::uint64_t version = 1;

  explicit two_nodes(std::shared_ptr<const kind_registry_t> b_kinds = {}) {
    actors::history_writer_config wc;
    wc.detached = false;
    auto writer = actors::spawn_history_writer(*f.sys, b_store, b_node, wc);
    actors::room_config rc;
    rc.placement = b_table;
    rc.kinds = std::move(b_kinds);
    b_dir = actors::spawn_room_directory(*f.sys, writer, b_node, rc);
    set_views();
  }
  ~two_nodes() { // b stops before the fixture does
    caf::anon_send(b_dir, actors::shutdown_atom::value);
    f.run();
  }

  void set_views() {
    ++version;
    for (auto& [table, self] :
         {std::pair{a_table, std::string{"a"}}, {b_table, std::string{"b"}}}) {
      auto v = std::make_shared<actors::placement_view>();
      v->version = version;
      v->self = self;
      v->live = {"a", "b"};
      v->endpoints["a"] = self == "a" ? nullptr
                                      : caf::actor_cast<caf::strong_actor_ptr>(
                                            f.directory);
      v->endpoints["b"] =
          self == "b" ? nullptr : caf::actor_cast<caf::strong_actor_ptr>(b_dir);
      table->replace(std::move(v));
    }
    caf::anon_send(f.directory, actors::view_atom::value);
    caf::anon_send(b_dir, actors::view_atom::value);
    f.run();
  }

  /// The first `prefix`N that a owns.
  std::string room_owned_by_a(const std::string& prefix) {
    for (int i = 0;; ++i)
      if (a_table->current()->owner(prefix + std::to_string(i)) == "a")
        return prefix + std::to_string(i);
  }

  /// Hands b a batch as a's room sends it; whether b stored it.
  bool replicate_to_b(persistence::replica_batch batch) {
    auto stored = std::make_shared<bool>(false);
    f.sys->spawn([=, dir = b_dir](caf::event_based_actor* self) {
      self->request(dir, caf::infinite, actors::repl_atom::value,
                    std::string{"a"}, batch)
          .then([=](bool ok, std::uint64_t) { *stored = ok; });
    });
    f.run();
    return *stored;
  }
};

} // namespace

TEST_CASE("an owner that adopts events only its replica stored keeps their "
          "publish_ids", "[actors]") {
  // Node a (the fixture) owns the room; node b is a second directory and
  // writer in the same actor system, a's replica. An event a assigned
  // reached b, but a gave up on the answer (a view change abandons pending
  // replication). On the view change a looks for further copies, adopts
  // b's and fills the gap for its subscriber. A retry of that event's
  // publish_id must get its offset back, not a second one.
  two_nodes nodes;
  auto& f = nodes.f;
  auto room = nodes.room_owned_by_a("execution:adopt");
  REQUIRE(nodes.a_table->current()->replica(room) == "b");

  auto c = f.connect(f.token("alice", {"execution:*"}));
  c.send(R"({"type":"subscribe","room_id":")" + room + R"("})");
  f.run();
  auto publish = [&](const std::string& pid, int n) {
    auto r = f.http("POST", "/api/v1/publish", "Bearer " + f.api_key,
                    R"({"room_id":")" + room +
                        R"(","type":"t","publish_id":")" + pid +
                        R"(","data":)" + std::to_string(n) + "}");
    INFO(r.body);
    REQUIRE(r.status == 200);
    return json::parse(r.body)["offset"].get<std::uint64_t>();
  };
  for (int i = 1; i <= 3; ++i)
    REQUIRE(publish("p" + std::to_string(i), i) == std::uint64_t(i));
  auto epoch = f.epoch_of(room);
  REQUIRE(nodes.b_store->position(room)->offset == 3); // replicated first

  // Event 4 as a's room sent it to b, whose answer a never took.
  persistence::replica_batch batch;
  batch.room = room;
  batch.epoch = epoch;
  batch.after = 3;
  batch.events.push_back({room, 4, actors::unix_now_ms(), "t", "", "4", "p4"});
  REQUIRE(nodes.replicate_to_b(batch));
  REQUIRE(f.store->position(room)->offset == 3);

  nodes.set_views(); // same members, a new view: a looks for further copies
  CHECK(f.store->position(room)->offset == 4);
  CHECK(publish("p4", 4) == 4); // the retry: its first offset
  CHECK(publish("p5", 5) == 5);

  auto evs = room_frames(*c.sink, room);
  REQUIRE(evs.size() == 5);
  for (std::size_t i = 0; i < evs.size(); ++i) {
    CHECK(evs[i]["offset"] == i + 1);
    CHECK(evs[i]["data"] == i + 1);
  }
  auto rows = f.store->read_since(room, 0, 10);
  REQUIRE(rows);
  CHECK(rows->size() == 5);
}

TEST_CASE("an owner filling a gap sends mirrors each event with its own "
          "state", "[actors]") {
  // As in the test above, b's store holds events a gave up on, here two
  // events of an operation. a adopts them and fills the gap for its
  // subscriber; a node mirroring the room must get event 4 with the
  // state after 4, not after 5, or a client subscribing there in between
  // gets a current_state ahead of its offset.
  auto kinds = std::make_shared<kind_registry_t>();
  kinds->add_operation_kind("index");
  two_nodes nodes{kinds};
  auto& f = nodes.f;
  // A mirror: records each event the owner sends it, with the state.
  using sent = std::pair<persistence::stored_event, std::string>;
  auto got = std::make_shared<std::vector<sent>>();
  caf::actor mirror;
  struct stop_mirror { // before the nodes stop, on any exit
    fixture& f;
    caf::actor& mirror;
    ~stop_mirror() {
      if (mirror)
        caf::anon_send_exit(mirror, caf::exit_reason::user_shutdown);
      f.run();
    }
  } stopper{f, mirror};
  auto room = nodes.room_owned_by_a("index:gap");
  auto op = room.substr(std::string{"index:"}.size());
  auto key = "Bearer " + f.api_key;
  REQUIRE(f.http("POST", "/api/v1/operations", key,
                 R"({"id":")" + op + R"(","kind":"index","owner":"alice"})")
              .status == 201);
  auto c = f.connect(f.token("alice", {"index:*"}));
  c.send(R"({"type":"subscribe","room_id":")" + room + R"("})");
  f.run();
  mirror = f.sys->spawn([got, room, dir = f.directory](
                            caf::event_based_actor* self) -> caf::behavior {
    self->request(dir, caf::infinite, actors::r_attach_atom::value,
                  room, caf::actor_cast<caf::actor>(self), std::string{},
                  std::uint64_t{0})
        .then([](std::string&, std::uint64_t, bool, std::string&,
                 caf::actor&) {});
    return {
        [=](actors::r_event_atom, persistence::stored_event& ev,
            std::string& state) { got->emplace_back(std::move(ev), state); },
    };
  });
  f.run();
  auto event = [&](int n) {
    auto r = f.http("POST", "/api/v1/operations/" + op + "/events", key,
                    R"({"type":"file_processing","data":{"processed_files":)" +
                        std::to_string(n) + R"(,"total_files":9}})");
    INFO(r.body);
    REQUIRE(r.status == 200);
  };
  for (int n = 1; n <= 3; ++n)
    event(n);
  REQUIRE(got->size() == 3);
  REQUIRE(nodes.b_store->position(room)->offset == 3);

  // Events 4 and 5 as a's room sent them to b, state included; a never
  // took b's answer.
  auto epoch = f.epoch_of(room);
  const auto* reducer = kinds->operation_reducer("index");
  REQUIRE(reducer);
  persistence::replica_batch batch;
  batch.room = room;
  batch.epoch = epoch;
  batch.after = 3;
  std::vector<std::string> states{got->back().second};
  for (std::uint64_t off = 4; off <= 5; ++off) {
    auto ev = got->back().first;
    ev.offset = off;
    ev.data = R"({"processed_files":)" + std::to_string(off) +
              R"(,"total_files":9})";
    ev.publish_id.clear();
    states.push_back(reducer->apply(
        states.back(), actors::to_publication(*protocol::parse_room_id(room),
                                              epoch, persistence::stored_event{
                                                         ev})));
    batch.events.push_back(ev);
  }
  REQUIRE(states[1] != states[2]);
  batch.snapshots.push_back({room, 5, states[2]});
  REQUIRE(nodes.replicate_to_b(batch));

  nodes.set_views(); // a adopts b's copy and fills the gap
  REQUIRE(got->size() == 5);
  CHECK((*got)[3].first.offset == 4);
  CHECK(json::parse((*got)[3].second) == json::parse(states[1]));
  CHECK((*got)[4].first.offset == 5);
  CHECK(json::parse((*got)[4].second) == json::parse(states[2]));
  // The owner's own state ends where the adopted snapshot is.
  auto now = f.http("GET", "/api/v1/operations/" + op, key);
  REQUIRE(now.status == 200);
  CHECK(json::parse(now.body)["offset"] == 5);
  CHECK(json::parse(now.body)["state"] == json::parse(states[2]));
  CHECK(room_frames(*c.sink, room).size() >= 5);
}

TEST_CASE("a view change keeps waiting for a replica that is still there",
          "[actors]") {
  // Node a (the fixture) owns the room; b and c are stand-ins that answer
  // as an empty node's directory would, and b can hold a replication.
  auto table_a = std::make_shared<actors::placement_table>("a");
  fixture f{std::chrono::seconds(30), {}, table_a};
  struct peer_state {
    bool hold = false;
    std::vector<caf::response_promise> held;
  };
  auto b_state = std::make_shared<peer_state>();
  auto peer = [](std::shared_ptr<peer_state> ps) {
    return [ps](caf::event_based_actor* self) -> caf::behavior {
      return {
          [=](actors::r_pos_atom, const std::string&, const std::string&) {
            return caf::make_message(std::string{}, std::uint64_t{0});
          },
          [=](actors::repl_atom, const std::string&,
              persistence::replica_batch& b)
              -> caf::result<bool, std::uint64_t> {
            if (ps->hold) {
              ps->held.push_back(self->make_response_promise());
              return caf::delegated<bool, std::uint64_t>{};
            }
            return {true, b.after + b.events.size()};
          },
          [=](actors::tick_atom) { // answers what it held: stored
            for (auto& rp : ps->held)
              rp.deliver(true, std::uint64_t{2});
            ps->held.clear();
          },
      };
    };
  };
  auto b = f.sys->spawn(peer(b_state));
  auto c = f.sys->spawn(peer(std::make_shared<peer_state>()));
  struct stop_peers { // before the fixture stops, on any exit
    fixture& f;
    std::vector<caf::actor> peers;
    ~stop_peers() {
      for (auto& p : peers)
        caf::anon_send_exit(p, caf::exit_reason::user_shutdown);
      f.run();
    }
  } stopper{f, {b, c}};
  std::uint64_t version = 1;
  auto set_view = [&](std::vector<std::string> live) {
    auto v = std::make_shared<actors::placement_view>();
    v->version = ++version;
    v->self = "a";
    v->live = std::move(live);
    v->endpoints["a"] = nullptr;
    v->endpoints["b"] = caf::actor_cast<caf::strong_actor_ptr>(b);
    v->endpoints["c"] = caf::actor_cast<caf::strong_actor_ptr>(c);
    table_a->replace(std::move(v));
    caf::anon_send(f.directory, actors::view_atom::value);
    f.run();
  };
  // A room a owns with b as its replica, with and without c.
  std::string room;
  for (int i = 0; room.empty(); ++i) {
    auto id = "execution:keep" + std::to_string(i);
    actors::placement_view two, three;
    two.live = {"a", "b"};
    three.live = {"a", "b", "c"};
    if (two.owner(id) == "a" && two.replica(id) == "b" &&
        three.owner(id) == "a" && three.replica(id) == "b")
      room = id;
  }
  set_view({"a", "b"});
  auto answers = std::make_shared<std::vector<transport::http_response>>();
  auto publish = [&](int n) {
    transport::http_request req;
    req.method = "POST";
    req.target = "/api/v1/publish";
    req.authorization = "Bearer " + f.api_key;
    req.body = R"({"room_id":")" + room + R"(","type":"t","data":)" +
               std::to_string(n) + "}";
    f.gw->handle_http(req, [answers](transport::http_response r) {
      answers->push_back(std::move(r));
    });
    f.run();
  };
  auto offset_of = [&](std::size_t i) {
    REQUIRE(answers->size() > i);
    INFO((*answers)[i].body);
    REQUIRE((*answers)[i].status == 200);
    return json::parse((*answers)[i].body)["offset"].get<std::uint64_t>();
  };
  publish(1);
  CHECK(offset_of(0) == 1);

  SECTION("another member joins: the publish is not failed") {
    b_state->hold = true;
    publish(2);
    REQUIRE(b_state->held.size() == 1);
    set_view({"a", "b", "c"});
    CHECK(answers->size() == 1); // still waiting for b
    b_state->hold = false;
    caf::anon_send(b, actors::tick_atom::value);
    f.run();
    CHECK(offset_of(1) == 2);
    publish(3);
    CHECK(offset_of(2) == 3);
    CHECK(f.store->read_since(room, 0, 10)->size() == 3);
  }
  SECTION("the replica leaves: the publish fails at once, a retry is stored") {
    b_state->hold = true;
    publish(2);
    REQUIRE(b_state->held.size() == 1);
    set_view({"a", "c"});
    REQUIRE(answers->size() == 2);
    b_state->held.clear();
    CHECK((*answers)[1].status == 503);
    publish(2); // c is the replica now
    CHECK(offset_of(2) == 2);
    CHECK(f.store->read_since(room, 0, 10)->size() == 2);
  }
}

TEST_CASE("history API pages through a room with the subscribe ACL",
          "[actors]") {
  fixture f;
  for (int i = 1; i <= 7; ++i)
    f.publish("execution:h", std::to_string(i));
  auto auth = "Bearer " + f.token("alice", {"execution:h"});
  auto page =
      f.http("GET", "/api/v1/rooms/execution:h/history?since=2&limit=3", auth);
  REQUIRE(page.status == 200);
  auto j = json::parse(page.body);
  CHECK(j["room_id"] == "execution:h");
  CHECK(j["offset"] == 7);
  CHECK(j["epoch"] == f.epoch_of("execution:h"));
  REQUIRE(j["events"].size() == 3);
  CHECK(j["events"][0]["offset"] == 3);
  CHECK(j["events"][2]["data"] == 5);
  CHECK(j["events"][0]["type"] == "execution_update");
  auto all = json::parse(
      f.http("GET", "/api/v1/rooms/execution%3Ah/history", auth).body);
  CHECK(all["events"].size() == 7);
  CHECK(f.http("GET", "/api/v1/rooms/execution:other/history", auth).status ==
        403);
  CHECK(f.http("GET", "/api/v1/rooms/execution:h/history").status == 401);
  CHECK(f.http("GET", "/api/v1/rooms/nocolon/history", auth).status == 400);
  CHECK(
      f.http("GET", "/api/v1/rooms/execution:h/history?limit=x", auth).status ==
      400);
  CHECK(f.http("GET", "/api/v1/rooms/execution:h/history?since=-1", auth)
            .status == 400);
  CHECK(f.http("POST", "/api/v1/rooms/execution:h/history", auth).status ==
        405);
}

TEST_CASE("retention trims per kind, and a resume into it is not recovered",
          "[actors]") {
  fixture f;
  for (int i = 1; i <= 6; ++i) {
    f.publish("kept:k", std::to_string(i));
    f.publish("execution:x", std::to_string(i));
  }
  auto kept = f.store->read_since("kept:k", 0, 100);
  REQUIRE(kept);
  REQUIRE(kept->size() == 3);
  CHECK(kept->front().offset == 4);
  CHECK(f.store->read_since("execution:x", 0, 100)->size() == 6);
  auto c = f.connect(f.token("alice", {"kept:*"}));
  c.send(resume_frame("kept:k", f.epoch_of("kept:k"), 2));
  f.run();
  CHECK(confirmation(*c.sink, "kept:k")["recovered"] == false);
  CHECK(room_frames(*c.sink, "kept:k").empty());
  auto d = f.connect(f.token("bob", {"kept:*"}));
  d.send(resume_frame("kept:k", f.epoch_of("kept:k"), 3));
  f.run();
  CHECK(confirmation(*d.sink, "kept:k")["recovered"] == true);
  CHECK(room_frames(*d.sink, "kept:k").size() == 3);
}

TEST_CASE("operations: created, folded, current_state first, hand-over",
          "[actors]") {
  fixture f;
  auto key = "Bearer " + f.api_key;
  // Subscribing or publishing before it exists is an error, not a room.
  auto early = f.connect(f.token("alice", {"index:*"}));
  early.send(R"({"type":"subscribe","room_id":"index:op1"})");
  f.run();
  REQUIRE(early.sink->of_type("error").size() == 1);
  CHECK(early.sink->of_type("error")[0]["error_code"] == "OPERATION_NOT_FOUND");
  CHECK(f.http("POST", "/api/v1/operations/op1/events", key,
               R"({"type":"progress","data":{}})")
            .status == 404);
  CHECK(f.http("POST", "/api/v1/publish", key,
               R"({"room_id":"index:op1","type":"t","data":1})")
            .status == 404);

  auto created = f.http(
      "POST", "/api/v1/operations", key,
      R"({"id":"op1","kind":"index","owner":"alice","meta":{"path":"/d"}})");
  REQUIRE(created.status == 201);
  auto c = json::parse(created.body);
  CHECK(c["room_id"] == "index:op1");
  CHECK(c["state"]["status"] == "pending");
  CHECK(c["state"]["meta"]["path"] == "/d");
  CHECK(
      f.http(
           "POST", "/api/v1/operations", key,
           R"({"id":"op1","kind":"index","owner":"alice","meta":{"path":"/d"}})")
          .status == 201); // idempotent
  CHECK(f.http("POST", "/api/v1/operations", key,
               R"({"id":"op1","kind":"index","owner":"bob"})")
            .status == 409);
  CHECK(f.http("POST", "/api/v1/operations", key,
               R"({"id":"x","kind":"execution","owner":"a"})")
            .status == 400);

  auto ev = [&](const std::string& type, const std::string& data) {
    auto r = f.http("POST", "/api/v1/operations/op1/events", key,
                    R"({"type":")" + type + R"(","data":)" + data + "}");
    REQUIRE(r.status == 200);
    return json::parse(r.body)["offset"].get<std::uint64_t>();
  };
  CHECK(ev("operation_started", R"({"total_files":4})") == 1);
  CHECK(ev("file_processing",
           R"({"processed_files":1,"total_files":4,"current_file":"/a"})") ==
        2);

  // A late subscriber: confirmation, then current_state at offset 2.
  auto late = f.connect(f.token("bob", {"index:*"}));
  late.send(R"({"type":"subscribe","room_id":"index:op1"})");
  f.run();
  auto frames = room_frames(*late.sink, "index:op1");
  REQUIRE(frames.size() == 1);
  CHECK(frames[0]["type"] == "current_state");
  CHECK(frames[0]["offset"] == 2);
  CHECK(frames[0]["data"]["progress"]["completed"] == 1);

  ev("file_processing", R"({"processed_files":3,"total_files":4})");
  ev("operation_completed", R"({"status":"completed","result":{"files":4}})");
  // Hand-over: current_state then the stream reproduces the final state.
  protocol::default_reducer r;
  auto all = room_frames(*late.sink, "index:op1");
  REQUIRE(all.size() == 3);
  std::string state = all[0]["data"].dump();
  std::uint64_t at = all[0]["offset"];
  for (std::size_t i = 1; i < all.size(); ++i) {
    CHECK(all[i]["offset"] == ++at);
    protocol::publication pub;
    pub.room = *protocol::parse_room_id("index:op1");
    pub.type = all[i]["type"];
    pub.data = all[i]["data"].dump();
    pub.offset = all[i]["offset"];
    // The server folds with its own event timestamp.
    pub.timestamp_ms = f.store->read_since("index:op1", pub.offset - 1, 1)
                           ->front()
                           .timestamp_ms;
    state = r.apply(state, pub);
  }
  auto got = f.http("GET", "/api/v1/operations/op1", key);
  REQUIRE(got.status == 200);
  auto g = json::parse(got.body);
  CHECK(g["offset"] == 4);
  CHECK(g["id"] == "op1");
  CHECK(g["kind"] == "index");
  CHECK(g["owner"] == "alice");
  CHECK(g["room_id"] == "index:op1");
  CHECK(g["state"]["status"] == "completed");
  CHECK(g["state"]["terminal"] == true);
  CHECK(json::parse(state) == g["state"]);
  // The snapshot is stored with the events.
  auto snap = f.store->get_snapshot("index:op1");
  REQUIRE(snap);
  REQUIRE(*snap);
  CHECK((*snap)->offset == 4);
  CHECK(json::parse((*snap)->state) == g["state"]);
  // GET with a JWT: the owner, or the room's ACL.
  CHECK(
      f.http("GET", "/api/v1/operations/op1", "Bearer " + f.token("alice", {}))
          .status == 200);
  CHECK(f.http("GET", "/api/v1/operations/op1", "Bearer " + f.token("eve", {}))
            .status == 403);
  CHECK(f.http("GET", "/api/v1/operations/nope", key).status == 404);
}

TEST_CASE("custom commands of a kind publish through the room", "[actors]") {
  fixture f;
  REQUIRE(f.http("POST", "/api/v1/operations", "Bearer " + f.api_key,
                 R"({"id":"rel","kind":"checklist","owner":"alice"})")
              .status == 201);
  auto c = f.connect(f.token("alice", {"checklist:*"}));
  auto watcher = f.connect(f.token("bob", {"checklist:*"}));
  watcher.send(R"({"type":"subscribe","room_id":"checklist:rel"})");
  c.send(
      R"({"type":"command","room_id":"checklist:rel","command":"add","args":{"item":"docs"}})");
  c.send(
      R"({"type":"command","room_id":"checklist:rel","command":"check","args":{"item":"docs"}})");
  c.send(
      R"({"type":"command","room_id":"checklist:rel","command":"check","args":{"item":"nope"}})");
  c.send(
      R"({"type":"command","room_id":"checklist:rel","command":"fly","args":{"item":"x"}})");
  c.send(
      R"({"type":"command","room_id":"checklist:none","command":"add","args":{"item":"x"}})");
  c.send(
      R"({"type":"command","room_id":"index:x","command":"add","args":{"item":"x"}})");
  f.run();
  auto results = c.sink->of_type("command_result");
  REQUIRE(results.size() == 2);
  CHECK(results[0]["offset"] == 1);
  CHECK(results[1]["offset"] == 2);
  auto errors = c.sink->of_type("error");
  REQUIRE(errors.size() == 4);
  CHECK(errors[0]["error_code"] == "INVALID_MESSAGE");
  CHECK(errors[1]["error_code"] == "UNKNOWN_COMMAND");
  CHECK(errors[2]["error_code"] == "OPERATION_NOT_FOUND");
  // index:x is not granted to alice: denied before reaching any room.
  CHECK(errors[3]["error_code"] == "ACCESS_DENIED");
  auto evs = room_frames(*watcher.sink, "checklist:rel");
  REQUIRE(evs.size() == 3); // current_state, item_added, item_done
  CHECK(evs[1]["type"] == "item_added");
  CHECK(evs[2]["data"]["by"] == "alice");
  auto g = json::parse(
      f.http("GET", "/api/v1/operations/rel", "Bearer " + f.api_key).body);
  CHECK(g["state"]["complete"] == true);
}

TEST_CASE("a large resume is paced below the session's queue bound",
          "[actors]") {
  fixture f;
  std::string pad(200, 'x');
  for (int i = 1; i <= 40; ++i)
    f.publish("execution:big", "\"" + pad + std::to_string(i) + "\"");
  auto c = f.connect(f.token("alice", {"execution:*"}));
  c.sink->fill_up(4096); // ~12 frames fit; a burst of 40 would close 4001
  c.send(resume_frame("execution:big", f.epoch_of("execution:big"), 0));
  f.run();
  CHECK(confirmation(*c.sink, "execution:big")["recovered"] == true);
  CHECK(c.sink->close_code() == 0);
  CHECK(c.sink->held() <= 4096);
  auto sent_before = room_frames(*c.sink, "execution:big").size();
  CHECK(sent_before < 40);
  // Live events published meanwhile wait behind the replay.
  f.publish_async("execution:big", "41");
  f.run();
  for (int round = 0; round < 100; ++round) {
    if (room_frames(*c.sink, "execution:big").size() == 41)
      break;
    c.sink->drain(); // the client reads
    f.sched->trigger_timeouts();
    f.run();
  }
  CHECK(c.sink->close_code() == 0);
  auto evs = room_frames(*c.sink, "execution:big");
  REQUIRE(evs.size() == 41);
  for (std::size_t i = 0; i < evs.size(); ++i)
    CHECK(evs[i]["offset"] == i + 1);
  // Now live: the next event goes straight to the session.
  c.sink->drain();
  f.publish("execution:big", "42");
  CHECK(room_frames(*c.sink, "execution:big").size() == 42);
}

TEST_CASE("history of quiet rooms ages out on the sweep timer", "[actors]") {
  fixture f;
  auto now = actors::unix_now() * 1000;
  // History from before a restart: the room is never written again.
  std::vector<persistence::stored_event> old_events;
  for (std::uint64_t i = 1; i <= 3; ++i)
    old_events.push_back(
        {"aged:a", i, i < 3 ? now - 3600 * 1000 : now, "t", "", "1", ""});
  REQUIRE(f.store->append(old_events));
  REQUIRE(f.store->read_since("aged:a", 0, 10)->size() == 3);
  f.sched->trigger_timeouts(); // the directory's sweep timer
  f.run();
  auto left = f.store->read_since("aged:a", 0, 10);
  REQUIRE(left);
  REQUIRE(left->size() == 1);
  CHECK(left->front().offset == 3);
}
