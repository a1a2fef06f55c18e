#include "protocol/dialect_common.hpp"

#include "protocol/native.hpp"
#include "protocol/timefmt.hpp"

namespace tidings::protocol {

std::optional<std::string> auth_token_of(const nlohmann::json& msg) {
  auto tok = msg.find("token");
  if (tok == msg.end() || !tok->is_string())
    return std::nullopt;
  const auto& t = tok->get_ref<const std::string&>();
  if (t.empty() || t.size() > max_token_size)
    return std::nullopt;
  return t;
}

std::size_t json_depth(std::string_view text, std::size_t limit) {
  std::size_t depth = 0;
  std::size_t deepest = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    switch (c) {
    case '"':
      in_string = true;
      break;
    case '[':
    case '{':
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > limit)
          return limit + 1;
      }
      break;
    case ']':
    case '}':
      if (depth > 0)
        --depth;
      break;
    default:
      break;
    }
  }
  return deepest;
}

std::variant<nlohmann::json, json_failure>
parse_bounded_json(std::string_view text, std::size_t max_size,
                   std::size_t max_depth) {
  if (text.size() > max_size)
    return json_failure::too_large;
  if (json_depth(text, max_depth) > max_depth)
    return json_failure::too_deep;
  auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded())
    return json_failure::invalid;
  return j;
}

std::string iso8601_s(std::int64_t unix_ms) {
  // iso8601_ms always writes "YYYY-MM-DDTHH:MM:SS.mmmZ"; drop ".mmm".
  auto s = iso8601_ms(unix_ms);
  if (s.size() >= 5 && s[s.size() - 5] == '.')
    s.erase(s.size() - 5, 4);
  return s;
}

std::string event_name(const publication& pub) {
  if (pub.event.empty())
    return pub.type;
  std::string out;
  out.reserve(pub.type.size() + 1 + pub.event.size());
  out.append(pub.type).append(1, '.').append(pub.event);
  return out;
}

namespace {

// Length of the valid UTF-8 sequence at the start of `s`, 0 when invalid
// (overlong forms, surrogates and code points above U+10FFFF included).
std::size_t utf8_sequence(std::string_view s) {
  auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  auto cont = [&](std::size_t i) {
    return i < s.size() && (b(i) & 0xC0) == 0x80;
  };
  unsigned char c = b(0);
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2))
      return 0;
    if (c == 0xE0 && b(1) < 0xA0)
      return 0; // overlong
    if (c == 0xED && b(1) >= 0xA0)
      return 0; // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3))
      return 0;
    if (c == 0xF0 && b(1) < 0x90)
      return 0; // overlong
    if (c == 0xF4 && b(1) >= 0x90)
      return 0; // above U+10FFFF
    return 4;
  }
  return 0;
}

} // namespace

void append_json_string_utf8(std::string& out, std::string_view s) {
  std::string clean;
  clean.reserve(s.size());
  while (!s.empty()) {
    auto n = utf8_sequence(s);
    if (n == 0) {
      clean += "\xEF\xBF\xBD";
      s.remove_prefix(1);
    } else {
      clean.append(s.substr(0, n));
      s.remove_prefix(n);
    }
  }
  append_json_string(out, clean);
}

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace tidings::protocol
