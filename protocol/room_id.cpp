#include "protocol/room_id.hpp"

namespace tidings::protocol {

namespace {

bool kind_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

bool id_char(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u >= 0x7f)
    return false;
  switch (c) {
  case '"':
  case '\\':
  case '*':
  case '/':
  case '?':
  case '#':
    return false;
  default:
    return true;
  }
}

bool valid_id(std::string_view id) {
  if (id.empty())
    return false;
  for (char c : id)
    if (!id_char(c))
      return false;
  return true;
}

} // namespace

bool valid_room_kind(std::string_view kind) {
  if (kind.empty() || kind.size() > max_room_kind_size)
    return false;
  for (char c : kind)
    if (!kind_char(c))
      return false;
  return true;
}

std::optional<room_id> room_id::make(std::string_view kind,
                                     std::string_view id) {
  if (!valid_room_kind(kind) || !valid_id(id) ||
      kind.size() + 1 + id.size() > max_room_id_size)
    return std::nullopt;
  room_id r;
  r.kind_ = std::string{kind};
  r.id_ = std::string{id};
  r.text_.reserve(kind.size() + 1 + id.size());
  r.text_.append(kind).append(1, ':').append(id);
  return r;
}

std::optional<room_id> parse_room_id(std::string_view text) {
  if (text.size() > max_room_id_size)
    return std::nullopt;
  auto colon = text.find(':');
  if (colon == std::string_view::npos)
    return std::nullopt;
  return room_id::make(text.substr(0, colon), text.substr(colon + 1));
}

} // namespace tidings::protocol
