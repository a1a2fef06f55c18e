// The extension point for new room kinds: register an operation kind with
// its own reducer before the node starts (see docs/extending.md). The
// registry is immutable once the runtime has it, so every actor reads it
// without locks.
#pragma once

#include "protocol/operation_state.hpp"

#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace tidings::actors {

class kind_registry {
 public:
  /// Rooms `<kind>:<id>` become operations: created through the API, with a
  /// current state folded by `r` from their events and sent first to every
  /// subscriber. Without `r`, the default reducer is used.
  /// `commands`, when given, answers clients' `command` messages on rooms
  /// of this kind (see protocol::command_handler).
  void add_operation_kind(
      std::string kind, std::shared_ptr<const protocol::reducer> r = {},
      std::shared_ptr<const protocol::command_handler> commands = {});

  /// The reducer of an operation kind; nullptr for plain rooms.
  const protocol::reducer* operation_reducer(std::string_view kind) const;

  /// The command handler of a kind; nullptr when it has none.
  const protocol::command_handler* commands(std::string_view kind) const;

  bool is_operation_kind(std::string_view kind) const {
    return operation_reducer(kind) != nullptr;
  }

 private:
  struct entry {
    std::shared_ptr<const protocol::reducer> reducer;
    std::shared_ptr<const protocol::command_handler> commands;
  };
  std::map<std::string, entry, std::less<>> operations_;
};

} // namespace tidings::actors
