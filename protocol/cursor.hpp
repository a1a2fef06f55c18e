// Cursors: a client's position in one room or in several, as text that
// fits an SSE `id:` line, a `Last-Event-ID` header and a query parameter.
// Pure; parsing never throws and rejects anything it did not make.
//
// One room:   `<epoch>:<offset>`                e.g. `3f9a0c1d2e4b5a69:42`
// Several:    `<room>=<epoch>:<offset>,…`       e.g.
// `pipeline:a=ep:3,system:all=ep:9`
//   rooms sorted and unique, `%`, `,` and `=` in a room id written as
//   %25, %2C and %3D (room ids may hold them; no other byte is escaped).
// An epoch is 1..64 of [A-Za-z0-9_.-] (the stores make 16 hex digits or
// `mem-N`); an offset is decimal u64 without sign or leading zeros.
#pragma once

#include "protocol/errors.hpp"
#include "protocol/publication.hpp"
#include "protocol/room_id.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tidings::protocol {

constexpr std::size_t max_epoch_size = 64;
/// Rooms one composite cursor may name (a multi-room stream's bound).
constexpr std::size_t max_cursor_rooms = 64;
/// Longest cursor text accepted, in bytes (64 rooms of 200 bytes, escaped,
/// plus positions fit).
constexpr std::size_t max_cursor_size = 16 * 1024;

bool valid_epoch(std::string_view epoch);

/// `<epoch>:<offset>`. The epoch must be valid (callers pass a store's).
std::string encode_cursor(const stream_position& pos);

/// The cursor of a publication: where a client stands after receiving it.
std::string encode_cursor(const publication& pub);

std::optional<stream_position> parse_cursor(std::string_view text);

struct room_position {
  room_id room;
  stream_position pos;
};

/// Positions of several rooms, sorted by room id, one entry per room. A
/// plain value owned by one stream (no locking).
class cursor_set {
 public:
  /// Sets (or replaces) the position of `room`; false when the set already
  /// names `max_cursor_rooms` other rooms.
  bool set(const room_id& room, const stream_position& pos);
  /// The position of `room`, if the set names it.
  const stream_position* find(const room_id& room) const;
  const std::vector<room_position>& entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }

 private:
  std::vector<room_position> entries_;
};

std::string encode_cursor_set(const cursor_set& set);

/// Nullopt for garbage, unsorted or repeated rooms, more than
/// `max_cursor_rooms` rooms or more than `max_cursor_size` bytes.
std::optional<cursor_set> parse_cursor_set(std::string_view text);

/// Where each room of a stream resumes, read from a `Last-Event-ID` header
/// (or a `cursor` query parameter) for a stream over `rooms`:
///  - empty/blank header: no position for any room (a fresh stream);
///  - a one-room stream takes the one-room form (and also the set form);
///  - a several-room stream takes the set form; rooms of the set that the
///    stream does not cover are ignored, rooms it does not name start
///    fresh.
/// The result has one entry per room of `rooms`, in the same order;
/// `invalid_cursor` when the text is not a cursor of either form.
using resume_points = std::vector<std::optional<stream_position>>;
std::variant<resume_points, error_code>
parse_last_event_id(std::string_view header, const std::vector<room_id>& rooms);

} // namespace tidings::protocol
