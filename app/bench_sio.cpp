#include "app/bench_sio.hpp"

#include <nlohmann/json.hpp>

namespace tidings::app::bench::sio {

namespace {

// The string value of `"key"` in a small JSON object, or empty. Socket.IO
// ids are base64id/yeast text: a value holding an escape is not one of
// them and is refused rather than unescaped.
std::string_view string_value(std::string_view obj, std::string_view key) {
  std::string quoted = "\"" + std::string(key) + "\"";
  auto k = obj.find(quoted);
  if (k == std::string_view::npos)
    return {};
  auto i = k + quoted.size();
  while (i < obj.size() && (obj[i] == ' ' || obj[i] == '\t'))
    ++i;
  if (i >= obj.size() || obj[i] != ':')
    return {};
  ++i;
  while (i < obj.size() && (obj[i] == ' ' || obj[i] == '\t'))
    ++i;
  if (i >= obj.size() || obj[i] != '"')
    return {};
  auto end = obj.find('"', i + 1);
  if (end == std::string_view::npos)
    return {};
  auto value = obj.substr(i + 1, end - i - 1);
  if (value.find('\\') != std::string_view::npos)
    return {};
  return value;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

} // namespace

packet parse(std::string_view frame) {
  packet p;
  if (frame.empty())
    return p;
  switch (frame[0]) {
  case '0':
    p.kind = packet_kind::eio_open;
    return p;
  case '1':
    p.kind = packet_kind::eio_close;
    return p;
  case '2':
    p.kind = packet_kind::eio_ping;
    return p;
  case '3':
  case '5':
  case '6':
    p.kind = packet_kind::eio_noop;
    return p;
  case '4':
    break;
  default:
    return p;
  }
  // An Engine.IO message: a Socket.IO packet follows.
  if (frame.size() < 2) {
    p.kind = packet_kind::other;
    return p;
  }
  auto rest = frame.substr(2);
  // "4x/nsp,…" is another namespace; the default one has no prefix.
  if (!rest.empty() && rest[0] == '/') {
    p.kind = packet_kind::other;
    return p;
  }
  switch (frame[1]) {
  case '0':
    p.kind = packet_kind::connect;
    p.sid = string_value(rest, "sid");
    p.pid = string_value(rest, "pid");
    return p;
  case '1':
    p.kind = packet_kind::disconnect;
    return p;
  case '2':
  case '3':
    p.kind = packet_kind::event;
    return p;
  case '4':
    p.kind = packet_kind::connect_err;
    return p;
  default:
    p.kind = packet_kind::other;
    return p;
  }
}

std::string_view trailing_offset(std::string_view f) {
  while (!f.empty() && is_space(f.back()))
    f.remove_suffix(1);
  if (f.size() < 2 || f.back() != ']')
    return {};
  f.remove_suffix(1);
  while (!f.empty() && is_space(f.back()))
    f.remove_suffix(1);
  if (f.empty() || f.back() != '"')
    return {};
  auto close = f.size() - 1;
  // The opening quote is the nearest one before that is not escaped (an
  // even run of backslashes before it).
  for (auto i = close; i-- > 0;) {
    if (f[i] != '"')
      continue;
    std::size_t slashes = 0;
    for (auto j = i; j > 0 && f[j - 1] == '\\'; --j)
      ++slashes;
    if (slashes % 2 != 0)
      continue;
    auto before = i;
    while (before > 0 && is_space(f[before - 1]))
      --before;
    // After '[' it is the event name, not an extra argument.
    if (before == 0 || f[before - 1] != ',')
      return {};
    auto value = f.substr(i + 1, close - i - 1);
    if (value.find('\\') != std::string_view::npos)
      return {};
    return value;
  }
  return {};
}

std::string connect_packet(std::string_view pid, std::string_view offset) {
  if (pid.empty() || offset.empty())
    return "40";
  nlohmann::ordered_json j;
  j["pid"] = std::string(pid);
  j["offset"] = std::string(offset);
  return "40" + j.dump();
}

} // namespace tidings::app::bench::sio
