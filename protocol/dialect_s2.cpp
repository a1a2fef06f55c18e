#include "protocol/dialect_s2.hpp"

#include "protocol/cursor.hpp"
#include "protocol/dialect_common.hpp"
#include "protocol/native.hpp"
#include "protocol/text.hpp"
#include "protocol/timefmt.hpp"

#include <cctype>
#include <map>

namespace tidings::protocol {

namespace {

struct stream_entry {
  s2_stream stream;
  std::string_view name;
  std::string_view payload_key; // the key S2's `data` frame puts it under
};

constexpr stream_entry streams[] = {
    {s2_stream::events, "events", "event"},
    {s2_stream::metrics, "metrics", "metrics"},
    {s2_stream::alerts, "alerts", "alert"},
    {s2_stream::predictions, "predictions", "prediction"},
    {s2_stream::aggregations, "aggregations", "aggregation"},
    {s2_stream::system_status, "system_status", "status"},
};

const stream_entry& entry(s2_stream s) {
  return streams[static_cast<std::size_t>(s)];
}

std::string dump(const s2_json& j) {
  return j.dump(-1, ' ', false, s2_json::error_handler_t::replace);
}

void close_with_timestamp(std::string& out, std::int64_t now_ms) {
  out += R"(,"timestamp":")";
  out += iso8601_ms(now_ms);
  out += "\"}";
}

// JSON equality as S2's Python server has it: objects compare without
// regard to key order (ordered_json's own == minds the order). Depth is
// bounded by the filter value's, which the decoder bounded.
bool json_equal(const s2_json& a, const s2_json& b) {
  if (a.is_object() && b.is_object()) {
    if (a.size() != b.size())
      return false;
    for (auto it = a.begin(); it != a.end(); ++it) {
      auto other = b.find(it.key());
      if (other == b.end() || !json_equal(*it, *other))
        return false;
    }
    return true;
  }
  if (a.is_array() && b.is_array()) {
    if (a.size() != b.size())
      return false;
    for (std::size_t i = 0; i < a.size(); ++i)
      if (!json_equal(a[i], b[i]))
        return false;
    return true;
  }
  return a == b;
}

std::vector<std::string> split_path(const std::string& key) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    auto dot = key.find('.', start);
    out.push_back(key.substr(start, dot == std::string::npos ? std::string::npos
                                                             : dot - start));
    if (dot == std::string::npos)
      break;
    start = dot + 1;
  }
  return out;
}

// -- env -------------------------------------------------------------------

constexpr std::string_view env_prefix = "streaming_websocket__";

std::string lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s)
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::optional<std::uint64_t> env_int(std::string_view v, std::uint64_t lo,
                                     std::uint64_t hi) {
  v = trim_space(v);
  if (!v.empty() && v.front() == '+')
    v.remove_prefix(1);
  if (v.empty() || v.size() > 12)
    return std::nullopt;
  std::uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9')
      return std::nullopt;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (n < lo || n > hi)
    return std::nullopt;
  return n;
}

std::optional<bool> env_bool(std::string_view v) {
  auto l = lower(trim_space(v));
  for (auto t : {"true", "1", "yes", "on", "t", "y"})
    if (l == t)
      return true;
  for (auto f : {"false", "0", "no", "off", "f", "n"})
    if (l == f)
      return false;
  return std::nullopt;
}

bool plain_origin(std::string_view o) {
  if (o.empty() || o.size() > 255)
    return false;
  for (char c : o) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == ',')
      return false;
  }
  return true;
}

std::optional<std::string> env_origins(std::string_view v) {
  v = trim_space(v);
  std::vector<std::string> items;
  if (!v.empty() && v.front() == '[') {
    auto parsed = parse_bounded_json(v, 16 * 1024, 2);
    auto* arr = std::get_if<nlohmann::json>(&parsed);
    if (!arr || !arr->is_array())
      return std::nullopt;
    for (const auto& e : *arr) {
      if (!e.is_string())
        return std::nullopt;
      items.push_back(e.get<std::string>());
    }
  } else {
    while (!v.empty()) {
      auto comma = v.find(',');
      auto item = trim_space(v.substr(0, comma));
      if (!item.empty())
        items.emplace_back(item);
      if (comma == std::string_view::npos)
        break;
      v.remove_prefix(comma + 1);
    }
  }
  if (items.size() > 64)
    return std::nullopt;
  std::string out;
  for (const auto& o : items) {
    if (!plain_origin(o))
      return std::nullopt;
    if (!out.empty())
      out += ',';
    out += o;
  }
  return out;
}

std::optional<std::string> env_host(std::string_view v) {
  v = trim_space(v);
  if (v.empty() || v.size() > 255)
    return std::nullopt;
  for (char c : v) {
    auto u = static_cast<unsigned char>(c);
    if (!(std::isalnum(u) || c == '.' || c == '-' || c == ':' || c == '[' ||
          c == ']' || c == '_' || c == '%'))
      return std::nullopt;
  }
  return std::string{v};
}

enum class field_kind { host, integer, boolean, origins, rate_switch, ignore };

struct env_field {
  std::string_view field; // S2's config field name
  std::string_view option;
  field_kind kind;
  std::uint64_t lo = 0;
  std::uint64_t hi = 0;
};

// Output order is this table's order.
constexpr env_field env_fields[] = {
    {"host", "s2-host", field_kind::host},
    {"port", "s2-port", field_kind::integer, 0, 65535},
    {"max_connections", "s2-max-connections", field_kind::integer, 1, 10000000},
    {"ping_interval", "s2-ping-interval", field_kind::integer, 0, 86400},
    {"ping_timeout", "s2-ping-timeout", field_kind::integer, 0, 86400},
    {"close_timeout", "s2-close-timeout", field_kind::integer, 0, 86400},
    {"max_message_size", "s2-max-message-size", field_kind::integer, 1,
     1ull << 31},
    {"require_auth", "s2-require-auth", field_kind::boolean},
    {"auth_timeout_seconds", "s2-auth-timeout", field_kind::integer, 0, 86400},
    {"allowed_origins", "s2-allowed-origins", field_kind::origins},
    {"rate_limit_per_minute", "s2-rate-limit-per-minute", field_kind::integer,
     0, 1000000},
    {"enable_rate_limiting", "s2-rate-limit-per-minute",
     field_kind::rate_switch},
    {"compression", "", field_kind::ignore},
};

} // namespace

std::string_view s2_stream_name(s2_stream s) {
  return entry(s).name;
}

std::optional<s2_stream> parse_s2_stream(std::string_view name) {
  for (const auto& e : streams)
    if (e.name == name)
      return e.stream;
  return std::nullopt;
}

room_id s2_room(s2_stream s) {
  // Both parts are fixed valid names, so make() cannot fail.
  return *room_id::make(s2_room_kind, entry(s).name);
}

std::optional<s2_stream> s2_stream_of(const room_id& room) {
  if (room.kind() != s2_room_kind)
    return std::nullopt;
  return parse_s2_stream(room.id());
}

bool s2_filter::matches(const s2_json& event) const {
  for (const auto& c : clauses_) {
    const s2_json* v = &event;
    for (const auto& seg : c.path) {
      if (!v->is_object())
        return false;
      auto it = v->find(seg);
      if (it == v->end())
        return false;
      v = &*it;
    }
    bool any = false;
    for (const auto& want : c.any_of)
      if (json_equal(want, *v)) {
        any = true;
        break;
      }
    if (!any)
      return false;
  }
  return true;
}

std::variant<s2_filter, error_code> compile_s2_filter(const s2_json& filters) {
  s2_filter out;
  if (filters.is_null())
    return out;
  if (!filters.is_object() || filters.size() > max_s2_filter_keys ||
      dump(filters).size() > max_s2_filters_size)
    return error_code::invalid_filter;
  for (auto it = filters.begin(); it != filters.end(); ++it) {
    const auto& key = it.key();
    if (key.size() > max_s2_filter_path_size)
      return error_code::invalid_filter;
    s2_filter::clause c;
    c.path = split_path(key);
    if (c.path.size() > max_s2_filter_path_segments)
      return error_code::invalid_filter;
    if (it->is_array()) {
      if (it->size() > max_s2_filter_values)
        return error_code::invalid_filter;
      c.any_of.assign(it->begin(), it->end());
    } else {
      c.any_of.push_back(*it);
    }
    out.clauses_.push_back(std::move(c));
  }
  return out;
}

s2_decoded decode_s2(std::string_view text) {
  if (text.size() > max_dialect_message_size)
    return error_code::payload_too_large;
  if (json_depth(text, max_dialect_json_depth) > max_dialect_json_depth)
    return error_code::invalid_json;
  auto msg = s2_json::parse(text.begin(), text.end(), nullptr, false);
  if (msg.is_discarded())
    return error_code::invalid_json;
  if (!msg.is_object())
    return error_code::invalid_message;
  auto t = msg.find("type");
  if (t == msg.end() || !t->is_string())
    return error_code::invalid_message;
  static const s2_json no_data = s2_json::object();
  const s2_json* data = &no_data;
  if (auto d = msg.find("data"); d != msg.end() && !d->is_null()) {
    if (!d->is_object())
      return error_code::invalid_message;
    data = &*d;
  }
  const auto& type = t->get_ref<const std::string&>();
  if (type == "auth") {
    auto tok = data->find("token");
    if (tok == data->end() || !tok->is_string() ||
        tok->get_ref<const std::string&>().empty() ||
        tok->get_ref<const std::string&>().size() > max_token_size)
      return error_code::invalid_credentials;
    return s2_command{s2_auth{tok->get<std::string>()}};
  }
  if (type == "subscribe") {
    s2_subscribe sub;
    if (auto st = data->find("type"); st != data->end() && !st->is_null()) {
      std::optional<s2_stream> stream;
      if (st->is_string())
        stream = parse_s2_stream(st->get_ref<const std::string&>());
      if (!stream)
        return error_code::invalid_channel;
      sub.stream = *stream;
    }
    if (auto f = data->find("filters"); f != data->end()) {
      auto compiled = compile_s2_filter(*f);
      if (auto* err = std::get_if<error_code>(&compiled))
        return *err;
      sub.filter = std::move(std::get<s2_filter>(compiled));
    }
    return s2_command{std::move(sub)};
  }
  if (type == "unsubscribe") {
    auto id = data->find("subscription_id");
    if (id == data->end() || !id->is_string() ||
        id->get_ref<const std::string&>().empty() ||
        id->get_ref<const std::string&>().size() > max_s2_subscription_id_size)
      return error_code::missing_field;
    return s2_command{s2_unsubscribe{id->get<std::string>()}};
  }
  if (type == "ping")
    return s2_command{s2_ping{}};
  if (type == "pong")
    return s2_command{s2_pong{}};
  return error_code::unknown_type;
}

std::string encode_s2_auth_success(std::string_view client_id,
                                   std::int64_t now_ms) {
  std::string out = R"({"type":"auth_success","data":{"client_id":)";
  append_json_string(out, client_id);
  out += '}';
  close_with_timestamp(out, now_ms);
  return out;
}

std::string encode_s2_auth_failed(error_code why, std::int64_t now_ms) {
  std::string out = R"({"type":"auth_failed","data":{"error":)";
  append_json_string(out, describe(why).message);
  out += '}';
  close_with_timestamp(out, now_ms);
  return out;
}

std::string encode_s2_subscribed(std::string_view subscription_id,
                                 s2_stream stream, std::int64_t now_ms) {
  std::string out =
      R"({"type":"data","data":{"status":"subscribed","subscription_id":)";
  append_json_string(out, subscription_id);
  out += ",\"type\":";
  append_json_string(out, s2_stream_name(stream));
  out += "},\"subscription_id\":";
  append_json_string(out, subscription_id);
  close_with_timestamp(out, now_ms);
  return out;
}

std::string encode_s2_unsubscribed(std::string_view subscription_id,
                                   std::int64_t now_ms) {
  std::string out =
      R"({"type":"data","data":{"status":"unsubscribed","subscription_id":)";
  append_json_string(out, subscription_id);
  out += '}';
  close_with_timestamp(out, now_ms);
  return out;
}

s2_json s2_event_object(const publication& pub, s2_stream stream) {
  s2_json data;
  if (json_depth(pub.data, max_s2_event_depth) <= max_s2_event_depth) {
    data = s2_json::parse(pub.data, nullptr, false);
    if (data.is_discarded())
      data = nullptr;
  }
  if (stream != s2_stream::events)
    return data;
  s2_json ev = s2_json::object();
  auto fill = [&](s2_json& target) {
    if (!target.contains("event_id"))
      target["event_id"] =
          pub.publish_id.empty() ? encode_cursor(pub) : pub.publish_id;
    if (!target.contains("event_type"))
      target["event_type"] = event_name(pub);
    if (!target.contains("timestamp"))
      target["timestamp"] = iso8601_ms(pub.timestamp_ms);
  };
  if (data.is_object()) {
    fill(data);
    return data;
  }
  fill(ev);
  ev["payload"] = std::move(data);
  return ev;
}

std::string encode_s2_payload(const s2_json& event, s2_stream stream) {
  std::string out = "{";
  append_json_string(out, entry(stream).payload_key);
  out += ':';
  out += dump(event);
  out += R"(,"subscription_type":)";
  append_json_string(out, s2_stream_name(stream));
  out += '}';
  return out;
}

std::string encode_s2_data(std::string_view subscription_id,
                           std::string_view payload, std::int64_t now_ms) {
  std::string out;
  out.reserve(payload.size() + subscription_id.size() + 96);
  out += R"({"type":"data","data":)";
  out += payload;
  out += ",\"subscription_id\":";
  append_json_string(out, subscription_id);
  close_with_timestamp(out, now_ms);
  return out;
}

std::string encode_s2_error(error_code code, std::int64_t now_ms) {
  const auto& e = describe(code);
  std::string out = R"({"type":"error","data":{"error":)";
  append_json_string(out, e.message);
  out += ",\"error_code\":";
  append_json_string(out, e.name);
  out += '}';
  close_with_timestamp(out, now_ms);
  return out;
}

std::string encode_s2_ping(std::int64_t now_ms) {
  std::string out = R"({"type":"ping")";
  close_with_timestamp(out, now_ms);
  return out;
}

std::string encode_s2_pong(std::int64_t now_ms) {
  std::string out = R"({"type":"pong")";
  close_with_timestamp(out, now_ms);
  return out;
}

result<s2_env_mapping>
map_s2_env(const std::vector<std::pair<std::string, std::string>>& env) {
  std::map<std::size_t, std::string> values; // env_fields index → option value
  std::vector<bool> seen(std::size(env_fields), false);
  s2_env_mapping out;
  auto bad = [](std::string_view name, const char* why) {
    std::string var{name.substr(0, 128)};
    return error_info{"CONFIG", var + ": " + why};
  };
  for (const auto& [name, value] : env) {
    auto lname = lower(name);
    if (lname.compare(0, env_prefix.size(), env_prefix) != 0)
      continue;
    auto field = std::string_view{lname}.substr(env_prefix.size());
    std::size_t i = 0;
    while (i < std::size(env_fields) && env_fields[i].field != field)
      ++i;
    if (i == std::size(env_fields)) {
      out.ignored.push_back(name.substr(0, 128));
      continue;
    }
    if (seen[i])
      return bad(name, "set twice");
    seen[i] = true;
    const auto& f = env_fields[i];
    switch (f.kind) {
    case field_kind::host: {
      auto h = env_host(value);
      if (!h)
        return bad(name, "not a valid host");
      values[i] = *h;
      break;
    }
    case field_kind::integer: {
      auto n = env_int(value, f.lo, f.hi);
      if (!n)
        return bad(name, "not a whole number in range");
      values[i] = std::to_string(*n);
      break;
    }
    case field_kind::boolean: {
      auto b = env_bool(value);
      if (!b)
        return bad(name, "not a boolean");
      values[i] = *b ? "true" : "false";
      break;
    }
    case field_kind::origins: {
      auto o = env_origins(value);
      if (!o)
        return bad(name, "not a list of origins");
      values[i] = *o;
      break;
    }
    case field_kind::rate_switch: {
      auto b = env_bool(value);
      if (!b)
        return bad(name, "not a boolean");
      if (!*b)
        values[i] = "0";
      break;
    }
    case field_kind::ignore:
      out.ignored.push_back(name.substr(0, 128));
      break;
    }
  }
  // enable_rate_limiting=false turns the limit off whatever the limit is.
  auto index_of = [](std::string_view field) {
    std::size_t i = 0;
    while (env_fields[i].field != field)
      ++i;
    return i;
  };
  if (values.count(index_of("enable_rate_limiting")))
    values.erase(index_of("rate_limit_per_minute"));
  for (const auto& [i, v] : values)
    out.options.emplace_back(std::string{env_fields[i].option}, v);
  return out;
}

} // namespace tidings::protocol
