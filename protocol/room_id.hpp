// Typed room identifier `kind:id`, parsed once at the edge.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace tidings::protocol {

/// Longest accepted room id, `kind:id` together, in bytes.
constexpr std::size_t max_room_id_size = 200;
/// Longest accepted kind, in bytes.
constexpr std::size_t max_room_kind_size = 32;

/// A room id: `kind` is lower-case `[a-z0-9_-]`, `id` is printable ASCII
/// without spaces, quotes, backslashes, `*` or control characters (and may
/// itself contain `:`). Both parts are non-empty.
class room_id {
 public:
  room_id() = default;

  const std::string& kind() const { return kind_; }
  const std::string& id() const { return id_; }
  /// The canonical text, `kind:id`.
  const std::string& str() const { return text_; }

  friend bool operator==(const room_id& a, const room_id& b) {
    return a.text_ == b.text_;
  }
  friend bool operator!=(const room_id& a, const room_id& b) {
    return !(a == b);
  }
  friend bool operator<(const room_id& a, const room_id& b) {
    return a.text_ < b.text_;
  }

  friend std::optional<room_id> parse_room_id(std::string_view text);
  /// Makes `kind:id` from parts; nullopt when either part is invalid.
  static std::optional<room_id> make(std::string_view kind,
                                     std::string_view id);

 private:
  std::string kind_;
  std::string id_;
  std::string text_;
};

/// Parses `kind:id`; nullopt for anything malformed or too long.
std::optional<room_id> parse_room_id(std::string_view text);

/// True when `kind` is a valid room kind.
bool valid_room_kind(std::string_view kind);

} // namespace tidings::protocol

template <>
struct std::hash<tidings::protocol::room_id> {
  std::size_t operator()(const tidings::protocol::room_id& r) const noexcept {
    return std::hash<std::string>{}(r.str());
  }
};
