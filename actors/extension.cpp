#include "actors/extension.hpp"

namespace tidings::actors {

void kind_registry::add_operation_kind(
    std::string kind, std::shared_ptr<const protocol::reducer> r,
    std::shared_ptr<const protocol::command_handler> commands) {
  if (!r)
    r = std::make_shared<const protocol::default_reducer>();
  operations_[std::move(kind)] = entry{std::move(r), std::move(commands)};
}

const protocol::reducer*
kind_registry::operation_reducer(std::string_view kind) const {
  auto i = operations_.find(kind);
  return i == operations_.end() ? nullptr : i->second.reducer.get();
}

const protocol::command_handler*
kind_registry::commands(std::string_view kind) const {
  auto i = operations_.find(kind);
  return i == operations_.end() ? nullptr : i->second.commands.get();
}

} // namespace tidings::actors
