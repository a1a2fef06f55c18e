// SQLite history store: WAL mode, prepared statements only, schema versioned
// with `PRAGMA user_version` and forward-only migrations.
//
// Durability: `synchronous=FULL` by default (a committed append survives
// power loss). `synchronous=NORMAL` is offered for speed; then a crash may
// lose the last commits, so on open after an unclean shutdown the store
// gives every room a new epoch (see `opened_clean()`), and an offset can
// never name two different events for one epoch.
#pragma once

#include "persistence/history_store.hpp"

#include <memory>
#include <string>

namespace tidings::persistence {

enum class durability { full, normal };

struct sqlite_options {
  std::string path; // file path; ":memory:" for tests
  durability mode = durability::full;
};

class sqlite_store : public history_store {
 public:
  /// Opens (creating the file and parent schema) and migrates.
  static result<std::unique_ptr<sqlite_store>> open(const sqlite_options& opt);

  ~sqlite_store() override;

  /// Schema version after migrations.
  int schema_version() const;
  /// False when the previous process did not close the store cleanly.
  bool opened_clean() const;

  using history_store::append;

  result<room_position> position(const std::string& room) override;
  result<bool> append(const std::vector<stored_event>& batch,
                      const std::vector<snapshot_update>& snapshots) override;
  result<std::vector<stored_event>> read_since(const std::string& room,
                                               std::uint64_t after,
                                               std::size_t limit) override;
  result<std::optional<std::uint64_t>>
  find_publish_id(const std::string& room,
                  const std::string& publish_id) override;
  result<std::size_t> trim(const std::string& room, std::uint64_t keep_last,
                           std::int64_t min_timestamp_ms) override;
  result<std::optional<std::uint64_t>>
  first_offset(const std::string& room) override;
  result<std::vector<std::string>> rooms() override;
  result<std::vector<replica_outcome>>
  replicate(const std::vector<replica_batch>& batches) override;
  result<std::optional<snapshot>>
  get_snapshot(const std::string& room) override;
  result<bool> create_operation(const operation_record& op) override;
  result<std::optional<operation_record>>
  get_operation(const std::string& id) override;

 private:
  sqlite_store();
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace tidings::persistence
