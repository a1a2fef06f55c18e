// Example operation kind: a checklist. It shows the extension API in a
// few lines: a reducer with its own state and two client commands,
// registered under a kind name.
//
// Events (published to `checklist:<id>` through the operations API):
//   {"type":"item_added","data":{"item":"Write docs"}}
//   {"type":"item_done","data":{"item":"Write docs"}}
//   {"type":"item_removed","data":{"item":"Write docs"}}
// State: {"title", "items":{"<item>":false|true}, "done":N, "total":N,
//         "complete":bool}; `complete` once every item (at least one) is done.
#pragma once

#include "protocol/operation_state.hpp"

namespace tidings::actors::examples {

class checklist_reducer : public protocol::reducer {
 public:
  std::string initial(const protocol::operation_info& op) const override;
  std::string apply(const std::string& state,
                    const protocol::publication& ev) const override;
};

/// Client commands on a checklist room (WebSocket `command` messages):
///   {"command":"add","args":{"item":…}}   → publishes item_added
///   {"command":"check","args":{"item":…}} → publishes item_done; an item
///                                           not on the list is refused
class checklist_commands : public protocol::command_handler {
 public:
  protocol::command_outcome handle(const std::string& state,
                                   const std::string& command,
                                   const std::string& args_json,
                                   const std::string& caller) const override;
};

} // namespace tidings::actors::examples
