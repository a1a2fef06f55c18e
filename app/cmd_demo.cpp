// `tidings demo`: publishes a simulated workflow execution (seed S1's
// `execution_update` / `node_update` frames) so a newcomer sees events flow.
#include "app/cli_common.hpp"
#include "app/commands.hpp"
#include "protocol/native.hpp"
#include "transport/client.hpp"

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <thread>

namespace tidings::app {

namespace {

struct demo_publisher {
  std::string host;
  std::uint16_t port;
  std::string api_key;

  bool publish(const std::string& room, const char* type, const char* event,
               const std::string& data) {
    std::string body = "{\"room_id\":";
    protocol::append_json_string(body, room);
    body += ",\"type\":\"";
    body += type;
    body += "\",\"event\":\"";
    body += event;
    body += "\",\"data\":" + data + "}";
    auto r = transport::http_call(host, port, "POST", "/api/v1/publish",
                                  {{"Authorization", "Bearer " + api_key},
                                   {"Content-Type", "application/json"}},
                                  body, std::chrono::seconds(10));
    if (!r || r->status != 200) {
      std::fprintf(stderr, "tidings demo: publish failed: %s\n",
                   r ? r->body.c_str() : r.error().message.c_str());
      return false;
    }
    std::printf("published %s/%s to %s -> %s\n", type, event, room.c_str(),
                r->body.c_str());
    std::fflush(stdout);
    return true;
  }
};

std::string quoted(const std::string& s) {
  std::string out;
  protocol::append_json_string(out, s);
  return out;
}

bool run_execution(demo_publisher& p, const std::string& exec_id, int nodes,
                   std::chrono::milliseconds interval) {
  static const char* names[] = {"Fetch inputs", "Customer Support Agent",
                                "Summarise", "Review", "Notify"};
  auto room = "execution:" + exec_id;
  auto exec = [&](const char* status, int done, const std::string& current) {
    double pct = nodes ? 100.0 * done / nodes : 100.0;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f", pct);
    return "{\"execution_id\":" + quoted(exec_id) + ",\"status\":\"" + status +
           "\",\"progress_percentage\":" + buf +
           ",\"completed_nodes\":" + std::to_string(done) +
           ",\"total_nodes\":" + std::to_string(nodes) +
           ",\"current_node\":" + quoted(current) + "}";
  };
  if (!p.publish(room, "execution_update", "status_changed",
                 exec("running", 0, "node-1")))
    return false;
  for (int i = 1; i <= nodes; ++i) {
    auto node_id = "node-" + std::to_string(i);
    std::string name = names[(i - 1) % 5];
    auto node = [&](const char* status, const char* msg) {
      return "{\"execution_id\":" + quoted(exec_id) +
             ",\"node_execution_id\":" + quoted(exec_id + "-" + node_id) +
             ",\"node_id\":" + quoted(node_id) +
             ",\"node_name\":" + quoted(name) + ",\"status\":\"" + status +
             "\",\"message\":" + quoted(msg) + "}";
    };
    std::this_thread::sleep_for(interval); // pacing a simulation, not a sync
    if (!p.publish(room, "node_update", "status_changed",
                   node("running", "Processing...")))
      return false;
    std::this_thread::sleep_for(interval);
    if (!p.publish(room, "node_update", "status_changed",
                   node("completed", "Done")))
      return false;
    bool last = i == nodes;
    if (!p.publish(room, "execution_update", "status_changed",
                   exec(last ? "completed" : "running", i,
                        last ? node_id : "node-" + std::to_string(i + 1))))
      return false;
  }
  return true;
}

} // namespace

int cmd_demo(int argc, char** argv) {
  options o;
  add_server_options(o);
  o.add("api-key", "", "Publish API key.");
  o.add("execution-id", "demo", "Execution id: events go to execution:<id>.",
        false, false);
  o.add("nodes", "5", "Workflow nodes to simulate.", false, false);
  o.add("interval-ms", "700", "Pause between node steps.", false, false);
  o.add("loop", "false", "Run executions forever (ids demo-1, demo-2, …).",
        true, false);
  if (auto err = o.parse(argc, argv, nullptr)) {
    std::fprintf(stderr, "tidings demo: %s\n", err->c_str());
    return 2;
  }
  if (o.help_requested()) {
    std::fputs(o.help("tidings demo [options]").c_str(), stdout);
    return 0;
  }
  try {
    demo_publisher p{o.str("host"), port_of(o), o.str("api-key")};
    auto nodes = static_cast<int>(o.integer("nodes"));
    auto interval = std::chrono::milliseconds(o.integer("interval-ms"));
    if (!o.flag("loop"))
      return run_execution(p, o.str("execution-id"), nodes, interval) ? 0 : 1;
    for (int round = 1;; ++round) {
      // The same room each round, so a `tail` started once keeps seeing it.
      if (!run_execution(p, o.str("execution-id"), nodes, interval))
        return 1;
      std::this_thread::sleep_for(interval * 3);
    }
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "tidings demo: %s\n", e.what());
    return 2;
  }
}

} // namespace tidings::app
