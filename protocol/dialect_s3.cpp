#include "protocol/dialect_s3.hpp"

#include "protocol/dialect_common.hpp"
#include "protocol/native.hpp"
#include "protocol/operation_state.hpp"
#include "protocol/timefmt.hpp"

#include <iterator>

namespace tidings::protocol {

namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

struct scan_entry {
  scan_error err;
  std::string_view message;
};

constexpr scan_entry scan_errors[] = {
    {scan_error::invalid_message, "Invalid scan message"},
    {scan_error::path_required, "Path required for scan action"},
    {scan_error::path_not_allowed,
     "Failed to scan directory: Path not allowed"},
    {scan_error::not_found, "Failed to scan directory: Directory not found"},
    {scan_error::not_a_directory, "Failed to scan directory: Not a directory"},
    {scan_error::permission_denied,
     "Failed to scan directory: Permission denied"},
    {scan_error::already_running, "A scan is already running"},
    {scan_error::not_running, "No scan is running"},
    {scan_error::too_many_files, "Failed to scan directory: Too many files"},
    {scan_error::cancelled, "Scan cancelled"},
    {scan_error::internal, "Failed to scan directory: Internal error"},
};

static_assert(std::size(scan_errors) ==
                  static_cast<std::size_t>(scan_error::internal) + 1,
              "one message per scan_error");

std::optional<ojson> parse_object(std::string_view text) {
  auto j = ojson::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return std::nullopt;
  return j;
}

bool reserved_key(const std::string& key) {
  return key == "type" || key == "timestamp" || key == "data";
}

// Splits `p` at '/', dropping empty and "." components.
std::vector<std::string_view> components(std::string_view p) {
  std::vector<std::string_view> out;
  while (!p.empty()) {
    auto slash = p.find('/');
    auto c = p.substr(0, slash);
    if (!c.empty() && c != ".")
      out.push_back(c);
    if (slash == std::string_view::npos)
      break;
    p.remove_prefix(slash + 1);
  }
  return out;
}

std::string join(const std::vector<std::string_view>& parts) {
  if (parts.empty())
    return "/";
  std::string out;
  for (auto p : parts)
    out.append(1, '/').append(p);
  return out;
}

} // namespace

std::optional<room_id> s3_operation_room(std::string_view operation_id,
                                         std::string_view kind) {
  return room_id::make(kind, operation_id);
}

std::optional<close_reason> s3_admit(std::uint32_t user_connections,
                                     std::uint32_t operation_connections,
                                     const s3_limits& limits) {
  if (user_connections >= limits.per_user)
    return close_reason::user_connection_limit;
  if (operation_connections >= limits.per_operation)
    return close_reason::operation_connection_limit;
  return std::nullopt;
}

s3_client_frame decode_s3_operation_message(std::string_view text) {
  auto parsed = parse_bounded_json(text);
  auto* msg = std::get_if<json>(&parsed);
  if (!msg || !msg->is_object())
    return s3_client_frame::ignored;
  auto t = msg->find("type");
  if (t != msg->end() && t->is_string() && *t == "ping")
    return s3_client_frame::ping;
  return s3_client_frame::ignored;
}

std::string encode_s3_event(const publication& pub, s3_shape shape) {
  std::string out;
  out.reserve(96 + pub.type.size() + pub.event.size() + 2 * pub.data.size());
  out += "{\"type\":";
  append_json_string(out, event_name(pub));
  out += ",\"timestamp\":\"";
  out += iso8601_ms(pub.timestamp_ms);
  out += "\",\"data\":";
  out += pub.data;
  if (shape == s3_shape::enveloped_and_flat) {
    if (auto data = parse_object(pub.data)) {
      for (auto it = data->begin(); it != data->end(); ++it) {
        if (reserved_key(it.key()))
          continue;
        out += ',';
        append_json_string(out, it.key());
        out += ':';
        out += dump_json(it.value());
      }
    }
  }
  out += '}';
  return out;
}

std::string encode_s3_current_state(const room_id& room,
                                    const stream_position& pos,
                                    std::string_view state_json,
                                    std::int64_t now_ms) {
  auto state = parse_object(state_json).value_or(ojson::object());
  if (!state.contains("operation_type"))
    state["operation_type"] = state.value("kind", ojson());
  if (!state.contains("error_message")) {
    auto e = state.find("error");
    state["error_message"] = e != state.end() && e->is_string() ? *e : ojson();
  }
  std::string out = R"({"type":"current_state","timestamp":")";
  out += iso8601_ms(now_ms);
  out += "\",\"data\":";
  out += state.dump(-1, ' ', false, ojson::error_handler_t::replace);
  out += ",\"operation_id\":";
  append_json_string(out, room.id());
  out += ",\"offset\":";
  out += std::to_string(pos.offset);
  out += ",\"epoch\":";
  append_json_string(out, pos.epoch);
  out += '}';
  return out;
}

std::optional<std::string> s3_terminal_status(const publication& pub) {
  auto data = parse_object(pub.data);
  if (!data)
    return std::nullopt;
  auto st = data->find("status");
  if (st == data->end() || !st->is_string())
    return std::nullopt;
  const auto& s = st->get_ref<const std::string&>();
  if (!terminal_status(s))
    return std::nullopt;
  return s;
}

std::string encode_s3_status_update(std::string_view status,
                                    std::int64_t now_ms) {
  std::string out = R"({"type":"status_update","timestamp":")";
  out += iso8601_ms(now_ms);
  out += R"(","data":{"status":)";
  append_json_string(out, status);
  out += "}}";
  return out;
}

std::string encode_s3_pong(std::int64_t now_ms) {
  return R"({"type":"pong","timestamp":")" + iso8601_ms(now_ms) + "\"}";
}

std::string encode_s3_error(error_code code, std::int64_t now_ms) {
  const auto& e = describe(code);
  std::string out = R"({"type":"error","timestamp":")";
  out += iso8601_ms(now_ms);
  out += R"(","data":{"message":)";
  append_json_string(out, e.message);
  out += "},\"message\":";
  append_json_string(out, e.message);
  out += '}';
  return out;
}

std::string_view describe(scan_error err) {
  return scan_errors[static_cast<std::size_t>(err)].message;
}

s3_scan_command decode_s3_scan(std::string_view text) {
  auto parsed = parse_bounded_json(text);
  auto* msg = std::get_if<json>(&parsed);
  if (!msg || !msg->is_object())
    return scan_error::invalid_message;
  auto action = msg->find("action");
  if (action == msg->end() || !action->is_string())
    return scan_error::invalid_message;
  if (*action == "cancel")
    return s3_scan_cancel{};
  if (*action != "scan")
    return scan_error::invalid_message;
  s3_scan_start start;
  auto path = msg->find("path");
  if (path == msg->end() || path->is_null())
    return scan_error::path_required;
  if (!path->is_string())
    return scan_error::invalid_message;
  start.path = path->get<std::string>();
  if (start.path.empty())
    return scan_error::path_required;
  if (start.path.size() > max_scan_path_size ||
      start.path.find('\0') != std::string::npos)
    return scan_error::path_not_allowed;
  auto rec = msg->find("recursive");
  if (rec != msg->end() && !rec->is_null()) {
    if (!rec->is_boolean())
      return scan_error::invalid_message;
    start.recursive = rec->get<bool>();
  }
  return start;
}

std::variant<std::string, scan_error> resolve_scan_path(std::string_view root,
                                                        std::string_view path) {
  if (path.empty())
    return scan_error::path_required;
  auto unusable = [](std::string_view p) {
    return p.size() > max_scan_path_size ||
           p.find('\0') != std::string_view::npos;
  };
  if (root.empty() || root.front() != '/' || unusable(root) || unusable(path))
    return scan_error::path_not_allowed;
  // The root is configuration: normalise it, ".." included.
  std::vector<std::string_view> base;
  for (auto c : components(root)) {
    if (c == "..") {
      if (!base.empty())
        base.pop_back();
    } else {
      base.push_back(c);
    }
  }
  auto parts = components(path);
  std::size_t first = 0;
  if (path.front() == '/') {
    // An absolute path must name the root first, component by component
    // ("/documents2" is not inside "/documents").
    if (parts.size() < base.size())
      return scan_error::path_not_allowed;
    for (std::size_t i = 0; i < base.size(); ++i)
      if (parts[i] != base[i])
        return scan_error::path_not_allowed;
    first = base.size();
  }
  auto out = base;
  for (std::size_t i = first; i < parts.size(); ++i) {
    if (parts[i] == "..") {
      if (out.size() == base.size())
        return scan_error::path_not_allowed;
      out.pop_back();
    } else {
      out.push_back(parts[i]);
    }
  }
  auto joined = join(out);
  if (joined.size() > max_scan_path_size)
    return scan_error::path_not_allowed;
  return joined;
}

std::string scan_extension(std::string_view path) {
  auto slash = path.rfind('/');
  auto name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  auto dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == name.size())
    return {};
  return std::string{name.substr(dot)};
}

std::string encode_s3_scan_progress(std::uint64_t scanned, std::uint64_t total,
                                    std::string_view current_path) {
  std::string out = R"({"type":"progress","scanned":)";
  out += std::to_string(scanned);
  out += ",\"total\":";
  out += std::to_string(total);
  out += ",\"current_path\":";
  append_json_string_utf8(out, current_path);
  out += '}';
  return out;
}

std::string encode_s3_scan_completed(const std::vector<scan_file>& files,
                                     std::uint64_t count,
                                     std::uint64_t total_size,
                                     const std::vector<std::string>& warnings) {
  std::string out = R"({"type":"completed","files":[)";
  for (std::size_t i = 0; i < files.size(); ++i) {
    const auto& f = files[i];
    if (i)
      out += ',';
    out += "{\"path\":";
    append_json_string_utf8(out, f.path);
    out += ",\"size\":";
    out += std::to_string(f.size);
    out += ",\"modified\":\"";
    out += iso8601_s(f.modified_ms);
    out += "\",\"extension\":";
    append_json_string_utf8(out, f.extension);
    out += '}';
  }
  out += "],\"count\":";
  out += std::to_string(count);
  out += ",\"total_size\":";
  out += std::to_string(total_size);
  out += ",\"warnings\":[";
  for (std::size_t i = 0; i < warnings.size(); ++i) {
    if (i)
      out += ',';
    append_json_string_utf8(out, warnings[i]);
  }
  out += "]}";
  return out;
}

std::string encode_s3_scan_error(scan_error err) {
  std::string out = R"({"type":"error","message":)";
  append_json_string(out, describe(err));
  out += '}';
  return out;
}

std::string scan_permission_warning(std::string_view path) {
  std::string out = "Permission denied: ";
  out.append(path);
  return out;
}

} // namespace tidings::protocol
