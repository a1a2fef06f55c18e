// `tidings tail <room>…`: connect, subscribe, print every frame as a line.
#include "app/cli_common.hpp"
#include "app/commands.hpp"
#include "protocol/native.hpp"
#include "transport/client.hpp"

#include <chrono>
#include <cstdio>
#include <stdexcept>

namespace tidings::app {

int cmd_tail(int argc, char** argv) {
  options o;
  add_server_options(o);
  add_token_options(o);
  o.add("count", "0", "Exit after this many events (0: run until closed).",
        false, false);
  o.add("timeout", "0", "Give up after this many seconds (0: never).", false,
        false);
  std::vector<std::string> rooms;
  if (auto err = o.parse(argc, argv, &rooms)) {
    std::fprintf(stderr, "tidings tail: %s\n", err->c_str());
    return 2;
  }
  if (o.help_requested() || rooms.empty()) {
    std::fputs(o.help("tidings tail <room_id>… [options]").c_str(),
               o.help_requested() ? stdout : stderr);
    return o.help_requested() ? 0 : 2;
  }
  try {
    auto token = client_token(o);
    if (!token) {
      std::fprintf(stderr, "tidings tail: %s\n", token.error().message.c_str());
      return 2;
    }
    auto count = o.integer("count");
    auto timeout = o.integer("timeout");
    auto deadline = std::chrono::steady_clock::now()
                    + std::chrono::seconds(timeout > 0 ? timeout : 1 << 30);
    transport::ws_client ws;
    auto ok = ws.connect(o.str("host"), port_of(o),
                         "/api/v1/ws?token=" + *token);
    if (!ok) {
      std::fprintf(stderr, "tidings tail: %s\n", ok.error().message.c_str());
      return 1;
    }
    for (auto& r : rooms) {
      std::string msg = "{\"type\":\"subscribe\",\"room_id\":";
      protocol::append_json_string(msg, r);
      msg += '}';
      ws.send(msg);
    }
    std::int64_t events = 0;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        std::fprintf(stderr, "tidings tail: timeout\n");
        return 1;
      }
      auto msg = ws.read(left);
      if (!msg) {
        std::fprintf(stderr, "tidings tail: %s %s\n",
                     msg.error().code.c_str(), msg.error().message.c_str());
        return msg.error().code == "CLOSED" ? 0 : 1;
      }
      std::printf("%s\n", msg->c_str());
      std::fflush(stdout);
      if (msg->find("\"offset\"") != std::string::npos
          && msg->rfind("{\"type\":\"subscription\"", 0) != 0)
        ++events;
      if (count > 0 && events >= count)
        return 0;
    }
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "tidings tail: %s\n", e.what());
    return 2;
  }
}

} // namespace tidings::app
