#include "protocol/native.hpp"

#include "protocol/dialect_common.hpp"
#include "protocol/timefmt.hpp"

#include <nlohmann/json.hpp>

#include <cctype>

namespace tidings::protocol {

namespace {

using json = nlohmann::json;

decode_error fail(error_code code, std::string room = {}) {
  return decode_error{code, std::move(room)};
}

// Reads `room_id`, echoing what was sent when it does not parse.
std::variant<room_id, decode_error> read_room(const json& msg) {
  auto it = msg.find("room_id");
  if (it == msg.end() || !it->is_string())
    return fail(error_code::missing_field);
  const auto& text = it->get_ref<const std::string&>();
  auto room = parse_room_id(text);
  if (!room)
    return fail(error_code::invalid_room,
                text.size() <= max_room_id_size ? text : std::string{});
  return *room;
}

std::variant<std::optional<stream_position>, decode_error>
read_since(const json& msg, const room_id& room) {
  auto it = msg.find("since");
  if (it == msg.end() || it->is_null())
    return std::optional<stream_position>{};
  if (!it->is_object())
    return fail(error_code::missing_field, room.str());
  auto ep = it->find("epoch");
  auto off = it->find("offset");
  if (ep == it->end() || !ep->is_string() || off == it->end() ||
      !off->is_number_unsigned())
    return fail(error_code::missing_field, room.str());
  return std::optional<stream_position>{
      stream_position{ep->get<std::string>(), off->get<std::uint64_t>()}};
}

void open_frame(std::string& out, std::string_view type) {
  out += "{\"type\":";
  append_json_string(out, type);
}

void add_timestamp_and_close(std::string& out, std::int64_t now_ms) {
  out += ",\"timestamp\":\"";
  out += iso8601_ms(now_ms);
  out += "\"}";
}

} // namespace

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    switch (c) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    default:
      if (u < 0x20) {
        out += "\\u00";
        out += hex[u >> 4];
        out += hex[u & 0xf];
      } else {
        out += c;
      }
    }
  }
  out += '"';
}

decoded decode_native(std::string_view text) {
  auto msg = json::parse(text.begin(), text.end(), nullptr, false);
  if (msg.is_discarded())
    return fail(error_code::invalid_json);
  if (!msg.is_object())
    return fail(error_code::invalid_message);
  auto t = msg.find("type");
  if (t == msg.end() || !t->is_string())
    return fail(error_code::invalid_message);
  const auto& type = t->get_ref<const std::string&>();
  if (type == "subscribe") {
    auto room = read_room(msg);
    if (auto* err = std::get_if<decode_error>(&room))
      return *err;
    auto& r = std::get<room_id>(room);
    auto since = read_since(msg, r);
    if (auto* err = std::get_if<decode_error>(&since))
      return *err;
    return command{cmd_subscribe{
        std::move(r), std::get<std::optional<stream_position>>(since)}};
  }
  if (type == "unsubscribe") {
    auto room = read_room(msg);
    if (auto* err = std::get_if<decode_error>(&room))
      return *err;
    return command{cmd_unsubscribe{std::get<room_id>(std::move(room))}};
  }
  if (type == "ping")
    return command{cmd_ping{}};
  if (type == "pong")
    return command{cmd_pong{}};
  if (type == "list_subscriptions")
    return command{cmd_list_subscriptions{}};
  if (type == "command") {
    auto room = read_room(msg);
    if (auto* err = std::get_if<decode_error>(&room))
      return *err;
    auto& r = std::get<room_id>(room);
    auto name = msg.find("command");
    if (name == msg.end() || !name->is_string())
      return fail(error_code::missing_field, r.str());
    const auto& n = name->get_ref<const std::string&>();
    bool plain = !n.empty() && n.size() <= 64;
    for (char c : n)
      plain = plain && (std::isalnum(static_cast<unsigned char>(c)) ||
                        c == '_' || c == '.' || c == ':' || c == '-');
    if (!plain)
      return fail(error_code::invalid_message, r.str());
    auto args = msg.find("args");
    if (args != msg.end() && !args->is_object() && !args->is_null())
      return fail(error_code::missing_field, r.str());
    return command{cmd_command{std::move(r), n,
                               args == msg.end() || args->is_null()
                                   ? std::string{"{}"}
                                   : args->dump()}};
  }
  if (type == "auth") {
    auto tok = auth_token_of(msg);
    if (!tok)
      return fail(error_code::missing_field);
    return command{cmd_auth{std::move(*tok)}};
  }
  return fail(error_code::unknown_type);
}

std::string encode_connected(std::string_view connection_id,
                             std::int64_t now_ms) {
  std::string out;
  out.reserve(128);
  open_frame(out, "connection");
  out += ",\"event\":\"connected\",\"connection_id\":";
  append_json_string(out, connection_id);
  add_timestamp_and_close(out, now_ms);
  return out;
}

std::string encode_subscription(bool subscribed, const room_id& room,
                                const stream_position& pos, std::int64_t now_ms,
                                std::optional<bool> recovered) {
  std::string out;
  out.reserve(160 + room.str().size());
  open_frame(out, "subscription");
  out +=
      subscribed ? ",\"event\":\"subscribed\"" : ",\"event\":\"unsubscribed\"";
  out += ",\"room_id\":";
  append_json_string(out, room.str());
  out += ",\"epoch\":";
  append_json_string(out, pos.epoch);
  out += ",\"offset\":";
  out += std::to_string(pos.offset);
  if (recovered)
    out += *recovered ? ",\"recovered\":true" : ",\"recovered\":false";
  add_timestamp_and_close(out, now_ms);
  return out;
}

std::string encode_pong(std::int64_t now_ms) {
  std::string out;
  open_frame(out, "pong");
  add_timestamp_and_close(out, now_ms);
  return out;
}

std::string encode_subscriptions(const std::vector<std::string>& rooms,
                                 std::int64_t now_ms) {
  std::string out;
  open_frame(out, "subscriptions");
  out += ",\"rooms\":[";
  for (std::size_t i = 0; i < rooms.size(); ++i) {
    if (i)
      out += ',';
    append_json_string(out, rooms[i]);
  }
  out += ']';
  add_timestamp_and_close(out, now_ms);
  return out;
}

std::string encode_command_result(const room_id& room, std::string_view name,
                                  std::uint64_t offset, std::int64_t now_ms) {
  std::string out;
  open_frame(out, "command_result");
  out += ",\"room_id\":";
  append_json_string(out, room.str());
  out += ",\"command\":";
  append_json_string(out, name);
  out += ",\"offset\":" + std::to_string(offset);
  add_timestamp_and_close(out, now_ms);
  return out;
}

std::string encode_heartbeat(std::int64_t now_ms) {
  std::string out;
  open_frame(out, "heartbeat");
  out += ",\"server_time\":\"";
  out += iso8601_ms(now_ms);
  out += '"';
  add_timestamp_and_close(out, now_ms);
  return out;
}

std::string encode_error(error_code code, std::string_view room,
                         std::int64_t now_ms) {
  const auto& e = describe(code);
  std::string out;
  open_frame(out, "error");
  out += ",\"error_code\":";
  append_json_string(out, e.name);
  out += ",\"message\":";
  append_json_string(out, e.message);
  if (!room.empty()) {
    out += ",\"room_id\":";
    append_json_string(out, room);
  }
  add_timestamp_and_close(out, now_ms);
  return out;
}

std::string encode_event(const publication& pub) {
  std::string out;
  out.reserve(128 + pub.type.size() + pub.event.size() + pub.room.str().size() +
              pub.data.size());
  open_frame(out, pub.type);
  if (!pub.event.empty()) {
    out += ",\"event\":";
    append_json_string(out, pub.event);
  }
  out += ",\"room_id\":";
  append_json_string(out, pub.room.str());
  out += ",\"offset\":";
  out += std::to_string(pub.offset);
  out += ",\"epoch\":";
  append_json_string(out, pub.epoch);
  out += ",\"timestamp\":\"";
  out += iso8601_ms(pub.timestamp_ms);
  out += "\",\"data\":";
  out += pub.data;
  out += '}';
  return out;
}

} // namespace tidings::protocol
