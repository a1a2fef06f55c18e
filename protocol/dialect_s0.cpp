#include "protocol/dialect_s0.hpp"

#include "protocol/dialect_common.hpp"
#include "protocol/text.hpp"
#include "protocol/timefmt.hpp"

#include <cctype>

namespace tidings::protocol {

namespace {

using json = nlohmann::json;

constexpr std::string_view channels[] = {"pipeline", "connector", "project",
                                         "system", "discovery"};

s0_decode_error fail(error_code code, std::string channel = {},
                     std::string id = {}) {
  return s0_decode_error{code, std::move(channel), std::move(id)};
}

// Echoes a sent value into an error's details only when it is short.
std::string echo(const json& v, std::size_t max) {
  if (!v.is_string())
    return {};
  const auto& s = v.get_ref<const std::string&>();
  return s.size() <= max ? s : std::string{};
}

std::variant<room_id, s0_decode_error> read_channel_room(const json& msg) {
  auto ch = msg.find("channel");
  if (ch == msg.end() || !ch->is_string())
    return fail(error_code::missing_field);
  const auto& channel = ch->get_ref<const std::string&>();
  if (!s0_channel(channel))
    return fail(error_code::invalid_channel, echo(*ch, max_room_kind_size));
  auto key = channel + "_id";
  auto idv = msg.find(key);
  std::string id;
  if (idv != msg.end() && !idv->is_null()) {
    if (!idv->is_string())
      return fail(error_code::missing_field, channel);
    id = idv->get<std::string>();
    if (id.empty())
      return fail(error_code::missing_field, channel);
  }
  if (id.empty() && !s0_global_channel(channel))
    return fail(error_code::missing_field, channel);
  auto room = s0_room(channel, id);
  if (!room)
    return fail(error_code::invalid_room, channel,
                id.size() <= max_room_id_size ? id : std::string{});
  return *room;
}

bool s0_global_room(const room_id& room) {
  return s0_global_channel(room.kind()) && room.id() == s0_global_id;
}

void append_channel_fields(std::string& out, const room_id& room) {
  out += "\"channel\":";
  append_json_string(out, room.kind());
  if (!s0_global_room(room)) {
    out += ',';
    append_json_string(out, room.kind() + "_id");
    out += ':';
    append_json_string(out, room.id());
  }
}

std::optional<std::uint32_t> parse_limit(std::string_view s) {
  if (s.empty() || s.size() > 7)
    return std::nullopt;
  std::uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return std::nullopt;
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (v < 1 || v > 1000000)
    return std::nullopt;
  return v;
}

} // namespace

ws_dialect classify_ws_message(std::string_view text) {
  auto parsed = parse_bounded_json(text);
  auto* msg = std::get_if<json>(&parsed);
  if (!msg || !msg->is_object())
    return ws_dialect::undecided;
  auto t = msg->find("type");
  if (t == msg->end() || !t->is_string())
    return ws_dialect::undecided;
  const auto& type = t->get_ref<const std::string&>();
  if (type != "subscribe" && type != "unsubscribe")
    return ws_dialect::undecided;
  bool channel = msg->contains("channel");
  bool room = msg->contains("room_id");
  if (channel == room)
    return ws_dialect::undecided;
  return channel ? ws_dialect::s0 : ws_dialect::native;
}

bool s0_channel(std::string_view channel) {
  for (auto c : channels)
    if (c == channel)
      return true;
  return false;
}

bool s0_global_channel(std::string_view channel) {
  return channel == "system" || channel == "discovery";
}

std::optional<room_id> s0_room(std::string_view channel, std::string_view id) {
  if (!s0_channel(channel))
    return std::nullopt;
  if (id.empty()) {
    if (!s0_global_channel(channel))
      return std::nullopt;
    id = s0_global_id;
  }
  return room_id::make(channel, id);
}

s0_decoded decode_s0(std::string_view text) {
  auto parsed = parse_bounded_json(text);
  if (auto* f = std::get_if<json_failure>(&parsed))
    return fail(*f == json_failure::too_large ? error_code::payload_too_large
                                              : error_code::invalid_json);
  const auto& msg = std::get<json>(parsed);
  if (!msg.is_object())
    return fail(error_code::invalid_message);
  auto t = msg.find("type");
  if (t == msg.end() || !t->is_string())
    return fail(error_code::invalid_message);
  const auto& type = t->get_ref<const std::string&>();
  if (type == "subscribe" || type == "unsubscribe") {
    auto room = read_channel_room(msg);
    if (auto* err = std::get_if<s0_decode_error>(&room))
      return *err;
    auto& r = std::get<room_id>(room);
    if (type == "subscribe")
      return command{cmd_subscribe{std::move(r), std::nullopt}};
    return command{cmd_unsubscribe{std::move(r)}};
  }
  if (type == "list_subscriptions")
    return command{cmd_list_subscriptions{}};
  if (type == "ping")
    return command{cmd_ping{}};
  if (type == "pong")
    return command{cmd_pong{}};
  if (type == "auth") {
    auto tok = auth_token_of(msg);
    if (!tok)
      return fail(error_code::missing_field);
    return command{cmd_auth{std::move(*tok)}};
  }
  return fail(error_code::unknown_type);
}

std::string s0_event_type(const publication& pub) {
  auto name = event_name(pub);
  if (name.find('.') != std::string::npos)
    return name;
  std::string out;
  out.reserve(pub.room.kind().size() + 1 + name.size());
  out.append(pub.room.kind()).append(1, '.').append(name);
  return out;
}

std::string encode_s0_event(const publication& pub) {
  std::string out;
  out.reserve(128 + pub.type.size() + pub.event.size() + pub.room.str().size() +
              pub.data.size());
  out += "{\"type\":";
  append_json_string(out, s0_event_type(pub));
  out += ",\"timestamp\":\"";
  out += iso8601_s(pub.timestamp_ms);
  out += "\",";
  append_channel_fields(out, pub.room);
  out += ",\"payload\":";
  out += pub.data;
  out += '}';
  return out;
}

std::string encode_s0_subscriptions(const std::vector<room_id>& rooms) {
  std::string out = R"({"type":"subscriptions","payload":{"subscriptions":[)";
  for (std::size_t i = 0; i < rooms.size(); ++i) {
    if (i)
      out += ',';
    out += '{';
    append_channel_fields(out, rooms[i]);
    out += '}';
  }
  out += "]}}";
  return out;
}

std::string encode_s0_heartbeat(std::int64_t now_ms,
                                std::uint64_t active_connections) {
  std::string out = R"({"type":"heartbeat","timestamp":")";
  out += iso8601_s(now_ms);
  out += R"(","server_time":")";
  out += iso8601_ms(now_ms);
  out += R"(","active_connections":)";
  out += std::to_string(active_connections);
  out += '}';
  return out;
}

std::string encode_s0_pong(std::int64_t now_ms) {
  return R"({"type":"pong","timestamp":")" + iso8601_s(now_ms) + "\"}";
}

error_code s0_error_category(error_code cause, bool about_channel) {
  switch (cause) {
  case error_code::unauthorized:
  case error_code::not_authenticated:
  case error_code::invalid_credentials:
  case error_code::auth_required:
    return error_code::unauthorized;
  case error_code::unavailable:
  case error_code::internal:
  case error_code::connection_failed:
    return error_code::connection_failed;
  default:
    return about_channel ? error_code::subscription_failed : cause;
  }
}

std::string encode_s0_error(error_code cause, std::string_view channel,
                            std::string_view id, std::int64_t now_ms) {
  const auto& category = describe(s0_error_category(cause, !channel.empty()));
  std::string out = R"({"type":"error","error_code":)";
  append_json_string(out, category.name);
  out += ",\"message\":";
  append_json_string(out, describe(cause).message);
  if (!channel.empty()) {
    out += ",\"details\":{";
    if (!id.empty()) {
      std::string key{channel};
      key += "_id";
      append_json_string(out, key);
      out += ':';
      append_json_string(out, id);
    } else {
      out += "\"channel\":";
      append_json_string(out, channel);
    }
    out += '}';
  }
  out += R"(,"timestamp":")";
  out += iso8601_s(now_ms);
  out += "\"}";
  return out;
}

std::string encode_s0_error(const s0_decode_error& err, std::int64_t now_ms) {
  return encode_s0_error(err.code, err.channel, err.id, now_ms);
}

std::string encode_s0_room_error(error_code cause, const room_id& room,
                                 std::int64_t now_ms) {
  return encode_s0_error(cause, room.kind(),
                         s0_global_room(room) ? std::string_view{} : room.id(),
                         now_ms);
}

plan_limits plan_limits::defaults() {
  plan_limits p;
  p.entries_ = {{"free", 5, 10}, {"pro", 50, 100}, {"enterprise", 500, 1000}};
  return p;
}

std::optional<plan_limit> plan_limits::for_plan(std::string_view plan) const {
  if (plan.empty() || entries_.empty())
    return std::nullopt;
  for (const auto& e : entries_) {
    if (e.plan.size() != plan.size())
      continue;
    bool same = true;
    for (std::size_t i = 0; i < plan.size() && same; ++i)
      same = std::tolower(static_cast<unsigned char>(plan[i])) == e.plan[i];
    if (same)
      return e;
  }
  return entries_.front();
}

std::string plan_limits::str() const {
  std::string out;
  for (const auto& e : entries_) {
    if (!out.empty())
      out += ',';
    out += e.plan + '=' + std::to_string(e.max_connections) + '/' +
           std::to_string(e.messages_per_second);
  }
  return out;
}

result<plan_limits> parse_plan_limits(std::string_view config) {
  auto bad = [](const char* why) {
    return error_info{"CONFIG", std::string{"plan limits: "} + why +
                                    " (expected name=connections/"
                                    "messages_per_second,…)"};
  };
  plan_limits out;
  if (trim_space(config).empty())
    return bad("empty");
  while (true) {
    auto comma = config.find(',');
    auto item = trim_space(config.substr(0, comma));
    auto eq = item.find('=');
    auto slash = item.find('/');
    if (eq == std::string_view::npos || slash == std::string_view::npos ||
        slash < eq)
      return bad("each entry needs name=N/M");
    auto name = trim_space(item.substr(0, eq));
    if (name.empty() || name.size() > 32)
      return bad("a plan name must have 1 to 32 characters");
    std::string lower;
    for (char c : name) {
      auto l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (!((l >= 'a' && l <= 'z') || (l >= '0' && l <= '9') || l == '_' ||
            l == '-'))
        return bad("a plan name may hold only a-z, 0-9, _ and -");
      lower += l;
    }
    auto conns = parse_limit(trim_space(item.substr(eq + 1, slash - eq - 1)));
    auto rate = parse_limit(trim_space(item.substr(slash + 1)));
    if (!conns || !rate)
      return bad("limits must be whole numbers from 1 to 1000000");
    for (const auto& e : out.entries_)
      if (e.plan == lower)
        return bad("a plan is named twice");
    if (out.entries_.size() >= 16)
      return bad("at most 16 plans");
    out.entries_.push_back(plan_limit{std::move(lower), *conns, *rate});
    if (comma == std::string_view::npos)
      break;
    config.remove_prefix(comma + 1);
  }
  return out;
}

} // namespace tidings::protocol
