// Durable per-room history: the interface every store implements.
//
// Guarantees a caller may rely on:
// - `append` is all-or-nothing for the whole batch: either every event is
//   stored (and, for the SQLite store, on disk per its durability mode) or
//   none is and an error is returned.
// - Offsets are assigned by the caller (the room's owner), dense from 1 and
//   per room; the store rejects a batch whose offsets do not continue the
//   room's last stored offset, so an offset never names two events.
// - Each room has an `epoch`, created on first use and kept across restarts.
// Not thread-safe: one owner (the node's history writer) uses a store.
#pragma once

#include "protocol/result.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tidings::persistence {

struct stored_event {
  std::string room;          // canonical room id, `kind:id`
  std::uint64_t offset = 0;  // dense, from 1
  std::int64_t timestamp_ms = 0;
  std::string type;
  std::string event;         // may be empty
  std::string data;          // JSON text
  std::string publish_id;    // may be empty; for idempotent publishes
};

struct room_position {
  std::string epoch;
  std::uint64_t offset = 0;  // last stored offset; 0 when none
};

class history_store {
public:
  virtual ~history_store() = default;

  /// The room's epoch and last offset; creates the epoch on first use.
  virtual result<room_position> position(const std::string& room) = 0;

  /// Stores events of any rooms in one transaction (group commit).
  virtual result<bool> append(const std::vector<stored_event>& batch) = 0;

  /// Events with offset > `after`, ascending, at most `limit`.
  virtual result<std::vector<stored_event>>
  read_since(const std::string& room, std::uint64_t after,
             std::size_t limit) = 0;

  /// The first offset ever stored with `publish_id` in `room`, if any.
  virtual result<std::optional<std::uint64_t>>
  find_publish_id(const std::string& room, const std::string& publish_id) = 0;

  /// Deletes events so that at most `keep_last` remain in `room` and none is
  /// older than `min_timestamp_ms` (0: no age bound). Returns how many were
  /// deleted. The room's last offset is kept even if every event goes.
  virtual result<std::size_t> trim(const std::string& room,
                                   std::uint64_t keep_last,
                                   std::int64_t min_timestamp_ms) = 0;

  /// Oldest offset still stored in `room`, or nullopt when none is.
  virtual result<std::optional<std::uint64_t>>
  first_offset(const std::string& room) = 0;
};

} // namespace tidings::persistence
