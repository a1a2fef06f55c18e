#include "protocol/longpoll.hpp"

#include "protocol/cursor.hpp"
#include "protocol/dialect_common.hpp"
#include "protocol/native.hpp"
#include "protocol/uri.hpp"

namespace tidings::protocol {

namespace {

std::optional<std::uint32_t> parse_count(std::string_view s,
                                         std::uint32_t cap) {
  // Accumulation stops once past `cap` (no overflow); larger is cut to it.
  if (s.empty())
    return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return std::nullopt;
    if (v <= cap)
      v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return static_cast<std::uint32_t>(v < cap ? v : cap);
}

} // namespace

std::variant<longpoll_query, error_code>
parse_longpoll_query(std::string_view query) {
  longpoll_query out;
  bool seen_wait = false;
  bool seen_cursor = false;
  bool seen_limit = false;
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    auto eq = pair.find('=');
    auto key = pair.substr(0, eq);
    auto raw =
        eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    bool* seen = key == "wait"     ? &seen_wait
                 : key == "cursor" ? &seen_cursor
                 : key == "limit"  ? &seen_limit
                                   : nullptr;
    if (seen && !*seen) {
      *seen = true;
      if (raw.size() > max_cursor_size)
        return key == "cursor" ? error_code::invalid_cursor
                               : error_code::invalid_query;
      auto value = percent_decode(raw);
      if (!value)
        return key == "cursor" ? error_code::invalid_cursor
                               : error_code::invalid_query;
      if (key == "wait") {
        auto w = parse_count(*value, max_longpoll_wait_seconds);
        if (!w)
          return error_code::invalid_query;
        out.wait_seconds = *w;
      } else if (key == "limit") {
        auto l = parse_count(*value, max_longpoll_limit);
        if (!l || *l == 0)
          return error_code::invalid_query;
        out.limit = *l;
      } else {
        auto c = parse_cursor(*value);
        if (!c)
          return error_code::invalid_cursor;
        out.cursor = std::move(*c);
      }
    }
    if (amp == std::string_view::npos)
      break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

std::optional<room_id> longpoll_run_room(std::string_view run_id) {
  return room_id::make("run", run_id);
}

std::string longpoll_event_type(const publication& pub) {
  auto name = event_name(pub);
  auto dot = name.find('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

std::string encode_longpoll_events(const std::vector<publication>& events) {
  std::string out = "[";
  for (const auto& pub : events) {
    if (out.size() > 1)
      out += ',';
    auto short_type = longpoll_event_type(pub);
    auto name = event_name(pub);
    out += "{\"event_type\":";
    append_json_string(out, short_type);
    out += ",\"type\":";
    append_json_string(
        out, name.find('.') == std::string::npos ? "pipeline." + name : name);
    out += ",\"run_id\":";
    append_json_string(out, pub.room.id());
    out += ",\"timestamp\":\"";
    out += iso8601_s(pub.timestamp_ms);
    out += "\",\"payload\":";
    out += pub.data;
    out += ",\"cursor\":";
    append_json_string(out, encode_cursor(pub));
    out += '}';
  }
  out += ']';
  return out;
}

} // namespace tidings::protocol
