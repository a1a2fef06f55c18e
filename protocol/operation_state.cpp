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

/// The operation-level subjects whose `<subject><sep>completed|failed|…`
/// events end an operation (sep one of `.` `:` `_`): the seeds' own names
/// (S0 `pipeline.completed`, S3 `operation_completed` and its per-type
/// `index_completed`…, S4 `job:completed`). Any other subject names a
/// step (`file_completed`, `pipeline.task_failed`, `scanning_completed`),
/// which ends nothing: a suffix match would end operations early.
constexpr std::string_view operation_subjects[] = {
    "operation", "pipeline", "job",    "execution",     "workflow", "run",
    "index",     "reindex",  "append", "remove_source", "batch"};

/// "completed", "failed" or "cancelled" when `type` names the end of the
/// whole operation: exactly a terminal word, or an operation subject, one
/// separator and a terminal word. Empty otherwise.
std::string_view terminal_event(std::string_view type) {
  auto word = [](std::string_view w) -> std::string_view {
    if (w == "completed" || w == "complete")
      return "completed";
    if (w == "failed" || w == "error")
      return "failed";
    if (w == "cancelled" || w == "canceled")
      return "cancelled";
    return {};
  };
  if (auto w = word(type); !w.empty())
    return w;
  auto sep = type.find_last_of(".:_");
  if (sep == std::string_view::npos)
    return {};
  auto w = word(type.substr(sep + 1));
  if (w.empty())
    return {};
  auto subject = type.substr(0, sep);
  for (auto s : operation_subjects)
    if (subject == s)
      return w;
  return {};
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
  // The payload's `status` decides; without one, only an event type that
  // names the end of the whole operation does (see terminal_event).
  if (auto st = first_of(d, {"status"}, is_string))
    s["status"] = *st;
  else if (auto t = terminal_event(ev.type); !t.empty())
    s["status"] = std::string{t};
  else if (auto e = terminal_event(ev.event); !e.empty())
    s["status"] = std::string{e};
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
