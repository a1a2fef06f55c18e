#include "actors/extension.hpp"

namespace tidings::actors {

void kind_registry::add_operation_kind(
  std::string kind, std::shared_ptr<const protocol::reducer> r) {
  if (!r)
    r = std::make_shared<const protocol::default_reducer>();
  operations_[std::move(kind)] = std::move(r);
}

const protocol::reducer*
kind_registry::operation_reducer(std::string_view kind) const {
  auto i = operations_.find(kind);
  return i == operations_.end() ? nullptr : i->second.get();
}

} // namespace tidings::actors
