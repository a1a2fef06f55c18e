#include "protocol/cursor.hpp"

#include "protocol/text.hpp"

#include <algorithm>

namespace tidings::protocol {

namespace {

bool epoch_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

std::optional<std::uint64_t> parse_offset(std::string_view s) {
  // u64 max has 20 digits; no sign, no leading zeros (one canonical form).
  if (s.empty() || s.size() > 20 || (s.size() > 1 && s[0] == '0'))
    return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return std::nullopt;
    auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10)
      return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

void append_room(std::string& out, std::string_view room) {
  for (char c : room) {
    switch (c) {
    case '%':
      out += "%25";
      break;
    case ',':
      out += "%2C";
      break;
    case '=':
      out += "%3D";
      break;
    default:
      out += c;
    }
  }
}

// Undoes append_room; only the three escapes it writes are accepted, and
// the characters it escapes may not appear bare.
std::optional<std::string> unescape_room(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '=' || s[i] == ',')
      return std::nullopt;
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size())
      return std::nullopt;
    auto esc = s.substr(i, 3);
    if (esc == "%25")
      out += '%';
    else if (esc == "%2C")
      out += ',';
    else if (esc == "%3D")
      out += '=';
    else
      return std::nullopt;
    i += 2;
  }
  return out;
}

} // namespace

bool valid_epoch(std::string_view epoch) {
  if (epoch.empty() || epoch.size() > max_epoch_size)
    return false;
  return std::all_of(epoch.begin(), epoch.end(), epoch_char);
}

std::string encode_cursor(const stream_position& pos) {
  std::string out;
  out.reserve(pos.epoch.size() + 21);
  out.append(pos.epoch).append(1, ':').append(std::to_string(pos.offset));
  return out;
}

std::string encode_cursor(const publication& pub) {
  return encode_cursor(stream_position{pub.epoch, pub.offset});
}

std::optional<stream_position> parse_cursor(std::string_view text) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos)
    return std::nullopt;
  auto epoch = text.substr(0, colon);
  if (!valid_epoch(epoch))
    return std::nullopt;
  auto offset = parse_offset(text.substr(colon + 1));
  if (!offset)
    return std::nullopt;
  return stream_position{std::string{epoch}, *offset};
}

bool cursor_set::set(const room_id& room, const stream_position& pos) {
  auto it = std::lower_bound(
      entries_.begin(), entries_.end(), room,
      [](const room_position& e, const room_id& r) { return e.room < r; });
  if (it != entries_.end() && it->room == room) {
    it->pos = pos;
    return true;
  }
  if (entries_.size() >= max_cursor_rooms)
    return false;
  entries_.insert(it, room_position{room, pos});
  return true;
}

const stream_position* cursor_set::find(const room_id& room) const {
  auto it = std::lower_bound(
      entries_.begin(), entries_.end(), room,
      [](const room_position& e, const room_id& r) { return e.room < r; });
  if (it != entries_.end() && it->room == room)
    return &it->pos;
  return nullptr;
}

std::string encode_cursor_set(const cursor_set& set) {
  std::string out;
  for (const auto& e : set.entries()) {
    if (!out.empty())
      out += ',';
    append_room(out, e.room.str());
    out += '=';
    out += encode_cursor(e.pos);
  }
  return out;
}

std::optional<cursor_set> parse_cursor_set(std::string_view text) {
  if (text.empty() || text.size() > max_cursor_size)
    return std::nullopt;
  cursor_set out;
  std::optional<room_id> previous;
  std::size_t count = 0;
  while (true) {
    auto comma = text.find(',');
    auto item = text.substr(0, comma);
    // The epoch and offset never hold '=', so the last '=' splits.
    auto eq = item.rfind('=');
    if (eq == std::string_view::npos)
      return std::nullopt;
    auto room_text = unescape_room(item.substr(0, eq));
    if (!room_text)
      return std::nullopt;
    auto room = parse_room_id(*room_text);
    auto pos = parse_cursor(item.substr(eq + 1));
    if (!room || !pos || ++count > max_cursor_rooms)
      return std::nullopt;
    // Strictly increasing: sorted and no repeats, as encode writes them.
    if (previous && !(*previous < *room))
      return std::nullopt;
    out.set(*room, *pos);
    previous = std::move(room);
    if (comma == std::string_view::npos)
      break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

std::variant<resume_points, error_code>
parse_last_event_id(std::string_view header,
                    const std::vector<room_id>& rooms) {
  header = trim_ows(header);
  resume_points points(rooms.size());
  if (header.empty())
    return points;
  if (header.size() > max_cursor_size)
    return error_code::invalid_cursor;
  if (header.find('=') == std::string_view::npos) {
    // The one-room form names no room: it only fits a one-room stream.
    auto pos = parse_cursor(header);
    if (!pos || rooms.size() != 1)
      return error_code::invalid_cursor;
    points[0] = std::move(*pos);
    return points;
  }
  auto set = parse_cursor_set(header);
  if (!set)
    return error_code::invalid_cursor;
  for (std::size_t i = 0; i < rooms.size(); ++i)
    if (auto* pos = set->find(rooms[i]))
      points[i] = *pos;
  return points;
}

} // namespace tidings::protocol
