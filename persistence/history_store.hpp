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
// - Each room has at most one snapshot (an operation's current state folded
//   from its events up to the snapshot's offset). Its offset never exceeds
//   the room's last stored offset and never goes back; trim never deletes it.
//   Events and snapshots given to one `append` commit together or not at
//   all, so a snapshot never names events that are not stored.
// - An operation record, once created, never changes.
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
  std::string room;         // canonical room id, `kind:id`
  std::uint64_t offset = 0; // dense, from 1
  std::int64_t timestamp_ms = 0;
  std::string type;
  std::string event;      // may be empty
  std::string data;       // JSON text
  std::string publish_id; // may be empty; for idempotent publishes
};

/// A room's latest snapshot: the state after applying events 1..offset.
struct snapshot {
  std::uint64_t offset = 0;
  std::string state; // JSON text
};

/// A snapshot to store with a batch of events.
struct snapshot_update {
  std::string room;
  std::uint64_t offset = 0;
  std::string state; // JSON text
};

/// An operation as created through the API. Immutable once stored.
struct operation_record {
  std::string id;
  std::string kind;
  std::string owner;
  std::string meta_json;
  std::int64_t created_ms = 0;
};

struct room_position {
  std::string epoch;
  std::uint64_t offset = 0; // last stored offset; 0 when none
};

/// A piece of a room's history as its owner sends it to the replica: the
/// events at offsets after+1, after+2, … in the owner's epoch, and the
/// operation snapshot at the last of them (if the room has one).
struct replica_batch {
  std::string room;
  std::string epoch;
  std::uint64_t after = 0;
  /// Drop what the replica holds and continue from `after` (the owner's
  /// history before `after` was trimmed, or the replica is being reset).
  bool reset = false;
  std::vector<stored_event> events;
  std::vector<snapshot_update> snapshots;
};

/// What a replica did with a batch: `ok` and its last offset now, or not ok
/// (a gap: it holds less than `after`) with its last offset, from which the
/// owner sends the missing events.
struct replica_outcome {
  bool ok = false;
  std::uint64_t last = 0;
};

class history_store {
 public:
  virtual ~history_store() = default;

  /// The room's epoch and last offset; creates the epoch on first use.
  virtual result<room_position> position(const std::string& room) = 0;

  /// Stores events of any rooms in one transaction (group commit).
  /// Same as `append(batch, {})`.
  result<bool> append(const std::vector<stored_event>& batch) {
    return append(batch, {});
  }

  /// Stores events of any rooms and snapshots of any rooms in one
  /// transaction: all of it or none. Snapshots are checked after the batch's
  /// events, in order: each needs offset <= the room's last offset including
  /// this batch (else OFFSET_CONFLICT) and >= the room's current snapshot
  /// offset, including one earlier in `snapshots` (else SNAPSHOT_STALE); an
  /// equal offset replaces the state. A snapshot may create its room (then
  /// only at offset 0).
  virtual result<bool>
  append(const std::vector<stored_event>& batch,
         const std::vector<snapshot_update>& snapshots) = 0;

  /// Replaces the room's snapshot; same as `append({}, {{room, offset,
  /// state}})`.
  result<bool> put_snapshot(const std::string& room, std::uint64_t offset,
                            const std::string& state_json) {
    return append({}, {snapshot_update{room, offset, state_json}});
  }

  /// The room's latest snapshot, or nullopt when it has none.
  virtual result<std::optional<snapshot>>
  get_snapshot(const std::string& room) = 0;

  /// Stores `op` unless its id exists. Returns true when stored now, false
  /// when an identical record (same id, kind, owner and meta; `created_ms`
  /// is not compared and the first one stays) was already stored, and
  /// OPERATION_EXISTS when the id is taken by a different record.
  virtual result<bool> create_operation(const operation_record& op) = 0;

  /// The operation with this id, or nullopt when there is none.
  virtual result<std::optional<operation_record>>
  get_operation(const std::string& id) = 0;

  /// Events with offset > `after`, ascending, at most `limit`.
  virtual result<std::vector<stored_event>> read_since(const std::string& room,
                                                       std::uint64_t after,
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

  /// Replication: applies each batch so the room's history continues as the
  /// owner's does, all batches in one transaction. For each batch: when the
  /// room is new, its epoch differs or `reset` is set, the room's events and
  /// snapshot are dropped and it takes the batch's epoch with last offset
  /// `after`. Otherwise a batch applies only when `after` is the room's
  /// last offset; else the outcome is not ok with the room's last offset:
  /// below `after` a gap the owner fills, above it this copy holds events
  /// the sender lacks (it must look for the furthest copy before it may
  /// assign offsets again). A replica never drops events on its own: only
  /// a `reset` replaces them.
  virtual result<std::vector<replica_outcome>>
  replicate(const std::vector<replica_batch>& batches) = 0;

  /// Every room the store knows, in no particular order (for retention
  /// sweeps over rooms that are no longer written).
  virtual result<std::vector<std::string>> rooms() = 0;
};

} // namespace tidings::persistence
