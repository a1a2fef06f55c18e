// In-memory history store, for actor tests. Same contract as SQLite's.
#pragma once

#include "persistence/history_store.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

namespace tidings::persistence {

class memory_store : public history_store {
 public:
  /// `make_epoch` creates new epochs (tests pass a deterministic one).
  explicit memory_store(std::function<std::string()> make_epoch = {});

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
  struct room_state {
    room_position pos;
    std::map<std::uint64_t, stored_event> events;
    std::optional<snapshot> snap;
  };
  room_state& get(const std::string& room);

  std::function<std::string()> make_epoch_;
  std::map<std::string, room_state> rooms_;
  std::map<std::string, operation_record> operations_;
  std::uint64_t epochs_made_ = 0;
};

} // namespace tidings::persistence
