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

std::string checklist_reducer::initial(const protocol::operation_info& op) const {
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

} // namespace tidings::actors::examples
