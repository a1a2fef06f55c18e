// `tidings publish <room> <type> [data-json]`: POST /api/v1/publish.
#include "app/cli_common.hpp"
#include "app/commands.hpp"
#include "protocol/native.hpp"
#include "transport/client.hpp"

#include <cstdio>
#include <stdexcept>

namespace tidings::app {

int cmd_publish(int argc, char** argv) {
  options o;
  add_server_options(o);
  o.add("api-key", "", "Publish API key.");
  o.add("event", "", "Optional sub-event name.", false, false);
  o.add("publish-id", "", "Idempotency key.", false, false);
  std::vector<std::string> pos;
  if (auto err = o.parse(argc, argv, &pos)) {
    std::fprintf(stderr, "tidings publish: %s\n", err->c_str());
    return 2;
  }
  if (o.help_requested() || pos.size() < 2 || pos.size() > 3) {
    std::fputs(o.help("tidings publish <room_id> <type> [data-json]").c_str(),
               o.help_requested() ? stdout : stderr);
    return o.help_requested() ? 0 : 2;
  }
  try {
    // The data is passed through as JSON text; the server validates it.
    std::string body = "{\"room_id\":";
    protocol::append_json_string(body, pos[0]);
    body += ",\"type\":";
    protocol::append_json_string(body, pos[1]);
    if (auto ev = o.str("event"); !ev.empty()) {
      body += ",\"event\":";
      protocol::append_json_string(body, ev);
    }
    if (auto id = o.str("publish-id"); !id.empty()) {
      body += ",\"publish_id\":";
      protocol::append_json_string(body, id);
    }
    body += ",\"data\":" + (pos.size() == 3 ? pos[2] : std::string{"{}"}) + "}";
    auto reply = transport::http_call(
        o.str("host"), port_of(o), "POST", "/api/v1/publish",
        {{"Authorization", "Bearer " + o.str("api-key")},
         {"Content-Type", "application/json"}},
        body, std::chrono::seconds(15));
    if (!reply) {
      std::fprintf(stderr, "tidings publish: %s\n",
                   reply.error().message.c_str());
      return 1;
    }
    std::printf("%s\n", reply->body.c_str());
    return reply->status == 200 ? 0 : 1;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "tidings publish: %s\n", e.what());
    return 2;
  }
}

} // namespace tidings::app
