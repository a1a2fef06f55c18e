#include "protocol/publish_request.hpp"

#include "protocol/native.hpp"

#include <nlohmann/json.hpp>

#include <optional>

namespace tidings::protocol {

namespace {

// ordered_json: `data` reaches subscribers with the publisher's key order.
using json = nlohmann::ordered_json;

request_error bad(error_code code, std::string_view detail) {
  return request_error{code, detail};
}

// Letters, digits and `_ . : -`: event types end up in SSE `event:` lines
// and metric labels later, so keep them plain.
bool valid_type_text(std::string_view s) {
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
              c == '-';
    if (!ok)
      return false;
  }
  return true;
}

} // namespace

bool reserved_event_type(std::string_view type) {
  static constexpr std::string_view reserved[] = {
      "connection", "subscription", "subscriptions", "error", "pong",
      "ping",       "heartbeat",    "current_state", "auth",  "command_result",
  };
  for (auto r : reserved)
    if (type == r)
      return true;
  return false;
}

namespace {

/// Everything of a publish body but the room.
std::optional<request_error> read_event_fields(const json& msg,
                                               publish_request& out) {
  auto type = msg.find("type");
  if (type == msg.end() || !type->is_string() ||
      type->get_ref<const std::string&>().empty())
    return bad(error_code::missing_field,
               "type (non-empty string) is required");
  out.type = type->get<std::string>();
  if (out.type.size() > max_event_type_size || !valid_type_text(out.type))
    return bad(error_code::invalid_message,
               "type: at most 64 of [A-Za-z0-9_.:-]");
  if (reserved_event_type(out.type))
    return bad(error_code::invalid_message, "type is reserved by the server");
  if (auto ev = msg.find("event"); ev != msg.end() && !ev->is_null()) {
    if (!ev->is_string())
      return bad(error_code::missing_field, "event must be a string");
    out.event = ev->get<std::string>();
    if (out.event.size() > max_event_type_size || !valid_type_text(out.event))
      return bad(error_code::invalid_message,
                 "event: at most 64 of [A-Za-z0-9_.:-]");
  }
  auto data = msg.find("data");
  if (data == msg.end())
    return bad(error_code::missing_field, "data is required");
  out.data = data->dump();
  if (auto pid = msg.find("publish_id"); pid != msg.end() && !pid->is_null()) {
    if (!pid->is_string() || pid->get_ref<const std::string&>().empty())
      return bad(error_code::missing_field,
                 "publish_id must be a non-empty string");
    out.publish_id = pid->get<std::string>();
    if (out.publish_id.size() > max_publish_id_size)
      return bad(error_code::invalid_message, "publish_id: at most 128 bytes");
  }
  return std::nullopt;
}

std::variant<json, request_error> parse_object(std::string_view body) {
  auto msg = json::parse(body.begin(), body.end(), nullptr, false);
  if (msg.is_discarded())
    return bad(error_code::invalid_json, "body is not valid JSON");
  if (!msg.is_object())
    return bad(error_code::invalid_message, "body must be a JSON object");
  return msg;
}

} // namespace

std::variant<publish_request, request_error>
parse_publish_request(std::string_view body) {
  auto parsed = parse_object(body);
  if (auto* err = std::get_if<request_error>(&parsed))
    return *err;
  auto& msg = std::get<json>(parsed);
  publish_request out;
  auto room = msg.find("room_id");
  if (room == msg.end() || !room->is_string())
    return bad(error_code::missing_field, "room_id (string) is required");
  auto r = parse_room_id(room->get_ref<const std::string&>());
  if (!r)
    return bad(error_code::invalid_room, "room_id must be kind:id");
  out.room = std::move(*r);
  if (auto err = read_event_fields(msg, out))
    return *err;
  return out;
}

std::variant<publish_request, request_error>
parse_operation_event(std::string_view body, const room_id& room) {
  auto parsed = parse_object(body);
  if (auto* err = std::get_if<request_error>(&parsed))
    return *err;
  publish_request out;
  out.room = room;
  if (auto err = read_event_fields(std::get<json>(parsed), out))
    return *err;
  return out;
}

std::variant<operation_create, request_error>
parse_operation_create(std::string_view body) {
  auto parsed = parse_object(body);
  if (auto* err = std::get_if<request_error>(&parsed))
    return *err;
  auto& msg = std::get<json>(parsed);
  auto text = [&](const char* key) -> const std::string* {
    auto i = msg.find(key);
    if (i == msg.end() || !i->is_string() ||
        i->get_ref<const std::string&>().empty())
      return nullptr;
    return &i->get_ref<const std::string&>();
  };
  auto id = text("id");
  auto kind = text("kind");
  auto owner = text("owner");
  if (!id || !kind || !owner)
    return bad(error_code::missing_field,
               "id, kind and owner (non-empty strings) are required");
  if (owner->size() > 128)
    return bad(error_code::invalid_message, "owner: at most 128 bytes");
  auto room = room_id::make(*kind, *id);
  if (!room)
    return bad(error_code::invalid_room, "kind:id must form a valid room id");
  operation_create out{std::move(*room), *id, *kind, *owner, "{}"};
  if (auto meta = msg.find("meta"); meta != msg.end() && !meta->is_null())
    out.meta = meta->dump();
  return out;
}

std::string encode_http_error(error_code code, std::string_view detail) {
  const auto& e = describe(code);
  std::string out = "{\"error_code\":";
  append_json_string(out, e.name);
  out += ",\"message\":";
  append_json_string(out, e.message);
  if (!detail.empty()) {
    out += ",\"detail\":";
    append_json_string(out, detail);
  }
  out += '}';
  return out;
}

} // namespace tidings::protocol
