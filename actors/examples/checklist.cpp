#include "actors/examples/checklist.hpp"

#include <nlohmann/json.hpp>

namespace tidings::actors::examples {

namespace {

using json = nlohmann::ordered_json;

void recount(json& s) {
  std::size_t done = 0;
  for (auto& [item, is_done] : s["items"].items())
    done += is_done.get<bool>() ? 1 : 0;
  s["done"] = done;
  s["total"] = s["items"].size();
  s["complete"] = !s["items"].empty() && done == s["items"].size();
}

} // namespace

std::string
checklist_reducer::initial(const protocol::operation_info& op) const {
  auto meta = json::parse(op.meta_json, nullptr, false);
  json s = {{"title", meta.is_object() ? meta.value("title", op.id) : op.id},
            {"items", json::object()}};
  recount(s);
  return s.dump();
}

std::string checklist_reducer::apply(const std::string& state,
                                     const protocol::publication& ev) const {
  auto s = json::parse(state, nullptr, false);
  if (!s.is_object() || !s.contains("items") || !s["items"].is_object())
    s = {{"title", ""}, {"items", json::object()}};
  auto d = json::parse(ev.data, nullptr, false);
  // Events that are not about an item leave the state as it is.
  if (!d.is_object() || !d.contains("item") || !d["item"].is_string())
    return s.dump();
  auto item = d["item"].get<std::string>();
  if (ev.type == "item_added" && !s["items"].contains(item))
    s["items"][item] = false;
  else if (ev.type == "item_done")
    s["items"][item] = true;
  else if (ev.type == "item_removed")
    s["items"].erase(item);
  recount(s);
  return s.dump();
}

protocol::command_outcome
checklist_commands::handle(const std::string& state, const std::string& command,
                           const std::string& args_json,
                           const std::string& caller) const {
  protocol::command_outcome out;
  auto args = json::parse(args_json, nullptr, false);
  if (!args.is_object() || !args.contains("item") ||
      !args["item"].is_string() ||
      args["item"].get_ref<const std::string&>().empty()) {
    out.error = protocol::error_code::missing_field;
    return out;
  }
  auto item = args["item"].get<std::string>();
  json data = {{"item", item}, {"by", caller}};
  if (command == "add") {
    out.type = "item_added";
  } else if (command == "check") {
    auto s = json::parse(state, nullptr, false);
    if (!s.is_object() || !s["items"].is_object() ||
        !s["items"].contains(item)) {
      out.error = protocol::error_code::invalid_message;
      return out;
    }
    out.type = "item_done";
  } else {
    out.error = protocol::error_code::unknown_command;
    return out;
  }
  out.data = data.dump();
  return out;
}

} // namespace tidings::actors::examples
