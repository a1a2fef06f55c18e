// `tidings tail <room>…`: connect, subscribe, print every frame as a line.
// With --resume it reconnects after a drop and resubscribes with each
// room's cursor (`since`), reporting whether the server recovered the gap.
#include "app/cli_common.hpp"
#include "app/commands.hpp"
#include "protocol/native.hpp"
#include "transport/client.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <thread>

namespace tidings::app {

namespace {

using json = nlohmann::json;
using clock = std::chrono::steady_clock;

struct cursor {
  std::string epoch;
  std::uint64_t offset = 0;
};

std::string subscribe_frame(const std::string& room,
                            const std::optional<cursor>& since) {
  std::string msg = "{\"type\":\"subscribe\",\"room_id\":";
  protocol::append_json_string(msg, room);
  if (since) {
    msg += ",\"since\":{\"epoch\":";
    protocol::append_json_string(msg, since->epoch);
    msg += ",\"offset\":" + std::to_string(since->offset) + "}";
  }
  return msg + "}";
}

/// Follows the cursor of every room from the frames; returns true for an
/// event frame (one that counts toward --count).
bool track(const std::string& text, std::map<std::string, cursor>& cursors,
           bool report) {
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("room_id") || !j["room_id"].is_string())
    return false;
  auto room = j["room_id"].get<std::string>();
  auto type = j.value("type", "");
  if (type == "subscription") {
    if (j.value("event", "") != "subscribed" || !j["offset"].is_number())
      return false;
    auto& c = cursors[room];
    bool recovered = j.value("recovered", false);
    if (report && j.contains("recovered"))
      std::fprintf(stderr, "tidings tail: %s resumed from %llu: recovered=%s\n",
                   room.c_str(), static_cast<unsigned long long>(c.offset),
                   recovered ? "true" : "false");
    // Not recovered: what was missed is gone; continue from here.
    if (!recovered || c.epoch.empty())
      c = cursor{j.value("epoch", ""), j["offset"].get<std::uint64_t>()};
    return false;
  }
  if (!j.contains("offset") || !j["offset"].is_number_unsigned())
    return false;
  cursors[room] =
      cursor{j.value("epoch", ""), j["offset"].get<std::uint64_t>()};
  return true;
}

} // namespace

int cmd_tail(int argc, char** argv) {
  options o;
  add_server_options(o);
  add_token_options(o);
  o.add("count", "0", "Exit after this many events (0: run until closed).",
        false, false);
  o.add("timeout", "0", "Give up after this many seconds (0: never).", false,
        false);
  o.add("resume", "false",
        "Reconnect after a drop and resubscribe from each room's cursor.", true,
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
    bool resume = o.flag("resume");
    auto deadline =
        clock::now() + std::chrono::seconds(timeout > 0 ? timeout : 1 << 30);
    std::map<std::string, cursor> cursors;
    std::int64_t events = 0;
    auto backoff = std::chrono::milliseconds(200);
    for (bool first = true;; first = false) {
      if (!first) {
        if (clock::now() + backoff >= deadline)
          break;
        std::this_thread::sleep_for(backoff); // reconnect backoff
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
      }
      transport::ws_client ws;
      auto ok =
          ws.connect(o.str("host"), port_of(o), "/api/v1/ws?token=" + *token);
      if (!ok) {
        std::fprintf(stderr, "tidings tail: %s\n", ok.error().message.c_str());
        if (!resume)
          return 1;
        continue;
      }
      for (auto& r : rooms) {
        std::optional<cursor> since;
        if (auto c = cursors.find(r); c != cursors.end() && resume)
          since = c->second;
        ws.send(subscribe_frame(r, since));
      }
      for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - clock::now());
        if (left.count() <= 0) {
          std::fprintf(stderr, "tidings tail: timeout\n");
          return 1;
        }
        auto msg = ws.read(left);
        if (!msg) {
          std::fprintf(stderr, "tidings tail: %s %s\n",
                       msg.error().code.c_str(), msg.error().message.c_str());
          if (msg.error().code == "TIMEOUT")
            return 1;
          break;
        }
        std::printf("%s\n", msg->c_str());
        std::fflush(stdout);
        if (track(*msg, cursors, resume)) {
          backoff = std::chrono::milliseconds(200);
          if (count > 0 && ++events >= count)
            return 0;
        }
      }
      if (!resume)
        return 0;
    }
    std::fprintf(stderr, "tidings tail: timeout\n");
    return 1;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "tidings tail: %s\n", e.what());
    return 2;
  }
}

} // namespace tidings::app
