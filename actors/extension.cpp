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

namespace tidings::actors {

void kind_registry::add_socket_kind(std::string path_prefix,
                                    socket_factory make) {
  sockets_[std::move(path_prefix)] = std::move(make);
}

const socket_factory* kind_registry::socket_kind(std::string_view path,
                                                 std::string_view* rest) const {
  const socket_factory* best = nullptr;
  std::size_t best_len = 0;
  for (auto& [prefix, make] : sockets_)
    if (path.size() > prefix.size() &&
        path.substr(0, prefix.size()) == prefix && prefix.size() > best_len) {
      best = &make;
      best_len = prefix.size();
    }
  if (best && rest)
    *rest = path.substr(best_len);
  return best;
}

} // namespace tidings::actors
