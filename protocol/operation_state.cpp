#include "protocol/operation_state.hpp"

#include "protocol/native.hpp"
#include "protocol/timefmt.hpp"

#include <nlohmann/json.hpp>

#include <cctype>
#include <initializer_list>

namespace tidings::protocol {

namespace {

using json = nlohmann::ordered_json;

const json* first_of(const json& d, std::initializer_list<const char*> keys,
                     bool (json::*is)() const noexcept) {
  for (auto k : keys) {
    auto i = d.find(k);
    if (i != d.end() && ((*i).*is)())
      return &*i;
  }
  return nullptr;
}

bool status_event(std::string_view type, std::string_view suffix) {
  return type.size() >= suffix.size() &&
         type.substr(type.size() - suffix.size()) == suffix;
}

} // namespace

bool terminal_status(std::string_view status) {
  std::string s;
  for (char c : status)
    s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s == "completed" || s == "failed" || s == "cancelled" ||
         s == "canceled" || s == "delivered" || s == "blocked" ||
         s == "aborted";
}

std::string default_reducer::initial(const operation_info& op) const {
  json meta = json::parse(op.meta_json, nullptr, false);
  if (meta.is_discarded())
    meta = json::object();
  json s = {
      {"operation_id", op.id},
      {"kind", op.kind},
      {"owner", op.owner},
      {"meta", meta},
      {"status", "pending"},
      {"terminal", false},
      {"progress",
       {{"percent", nullptr}, {"completed", nullptr}, {"total", nullptr}}},
      {"current_step", nullptr},
      {"message", nullptr},
      {"error", nullptr},
      {"result", nullptr},
      {"events", 0},
      {"last_event", nullptr},
      {"created_at", iso8601_ms(op.created_ms)},
      {"updated_at", iso8601_ms(op.created_ms)},
  };
  return s.dump();
}

std::string default_reducer::apply(const std::string& state_text,
                                   const publication& ev) const {
  json s = json::parse(state_text, nullptr, false);
  if (!s.is_object())
    s = json::object();
  json d = json::parse(ev.data, nullptr, false);
  if (!d.is_object())
    d = json::object();
  s["events"] = s.value("events", 0) + 1;
  s["last_event"] = ev.event.empty() ? ev.type : ev.type + "." + ev.event;
  s["updated_at"] = iso8601_ms(ev.timestamp_ms);
  // Terminal states are kept: later events are counted, nothing else.
  if (s.value("terminal", false))
    return s.dump();
  using is_fn = bool (json::*)() const noexcept;
  is_fn is_string = &json::is_string;
  is_fn is_number = &json::is_number;
  if (auto st = first_of(d, {"status"}, is_string))
    s["status"] = *st;
  else if (status_event(ev.type, "completed"))
    s["status"] = "completed";
  else if (ev.type == "error" || status_event(ev.type, ":error") ||
           status_event(ev.type, "failed"))
    s["status"] = "failed";
  auto& p = s["progress"];
  if (!p.is_object())
    p = json::object();
  if (auto v = first_of(
          d, {"progress_percentage", "progress_percent", "percent", "progress"},
          is_number))
    p["percent"] = *v;
  if (auto v = first_of(
          d, {"completed_nodes", "processed_files", "processed", "completed"},
          is_number))
    p["completed"] = *v;
  if (auto v = first_of(d, {"total_nodes", "total_files", "total"}, is_number))
    p["total"] = *v;
  if (!first_of(
          d, {"progress_percentage", "progress_percent", "percent", "progress"},
          is_number) &&
      p.value("completed", json()).is_number() &&
      p.value("total", json()).is_number() && p["total"].get<double>() > 0)
    p["percent"] =
        100.0 * p["completed"].get<double>() / p["total"].get<double>();
  if (auto v = first_of(d,
                        {"current_node", "current_step", "step", "current_file",
                         "current_path"},
                        is_string))
    s["current_step"] = *v;
  if (auto v = first_of(d, {"message"}, is_string))
    s["message"] = *v;
  if (auto e = d.find("error"); e != d.end() && !e->is_null())
    s["error"] = *e;
  else if (s["status"] == "failed" && d.contains("message"))
    s["error"] = d["message"];
  if (auto r = d.find("result"); r != d.end())
    s["result"] = *r;
  s["terminal"] = s["status"].is_string() &&
                  terminal_status(s["status"].get<std::string>());
  return s.dump();
}

std::string encode_current_state(const room_id& room,
                                 const stream_position& pos,
                                 std::string_view state_json,
                                 std::int64_t now_ms) {
  std::string out = "{\"type\":\"current_state\",\"room_id\":";
  append_json_string(out, room.str());
  out += ",\"offset\":" + std::to_string(pos.offset) + ",\"epoch\":";
  append_json_string(out, pos.epoch);
  out += ",\"data\":";
  out += state_json;
  out += ",\"timestamp\":\"" + iso8601_ms(now_ms) + "\"}";
  return out;
}

} // namespace tidings::protocol
