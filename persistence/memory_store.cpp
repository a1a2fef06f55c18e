// In-memory history store. Runs on whichever single thread owns it (actor
// tests); mirrors the SQLite store's semantics, including OFFSET_CONFLICT and
// the prefix-only trimming that keeps stored history contiguous.
#include "persistence/memory_store.hpp"

#include <iterator>
#include <unordered_map>
#include <utility>

namespace tidings::persistence {

memory_store::memory_store(std::function<std::string()> make_epoch)
    : make_epoch_(std::move(make_epoch)) {}

memory_store::room_state& memory_store::get(const std::string& room) {
  auto i = rooms_.find(room);
  if (i != rooms_.end())
    return i->second;
  ++epochs_made_;
  room_state st;
  st.pos.epoch =
      make_epoch_ ? make_epoch_() : "mem-" + std::to_string(epochs_made_);
  return rooms_.emplace(room, std::move(st)).first->second;
}

result<room_position> memory_store::position(const std::string& room) {
  return get(room).pos;
}

result<bool>
memory_store::append(const std::vector<stored_event>& batch,
                     const std::vector<snapshot_update>& snapshots) {
  // Validate the whole batch before touching anything: all-or-nothing.
  std::unordered_map<std::string, std::uint64_t> last;
  auto last_of = [&](const std::string& room) -> std::uint64_t& {
    auto i = last.find(room);
    if (i == last.end()) {
      auto r = rooms_.find(room);
      auto start = r == rooms_.end() ? std::uint64_t{0} : r->second.pos.offset;
      i = last.emplace(room, start).first;
    }
    return i->second;
  };
  for (const auto& ev : batch) {
    auto& room_last = last_of(ev.room);
    if (ev.offset != room_last + 1)
      return error_info{"OFFSET_CONFLICT",
                        "offset " + std::to_string(ev.offset) +
                            " does not follow last offset " +
                            std::to_string(room_last) + " of room " + ev.room};
    room_last = ev.offset;
  }
  // Snapshot offsets as they would be after the earlier updates of this call.
  std::unordered_map<std::string, std::uint64_t> snap_at;
  for (const auto& up : snapshots) {
    auto room_last = last_of(up.room);
    if (up.offset > room_last)
      return error_info{"OFFSET_CONFLICT",
                        "snapshot offset " + std::to_string(up.offset) +
                            " is past last offset " +
                            std::to_string(room_last) + " of room " + up.room};
    auto i = snap_at.find(up.room);
    if (i == snap_at.end()) {
      auto r = rooms_.find(up.room);
      if (r != rooms_.end() && r->second.snap)
        i = snap_at.emplace(up.room, r->second.snap->offset).first;
    }
    if (i != snap_at.end() && up.offset < i->second)
      return error_info{"SNAPSHOT_STALE",
                        "snapshot offset " + std::to_string(up.offset) +
                            " is older than stored snapshot offset " +
                            std::to_string(i->second) + " of room " + up.room};
    snap_at[up.room] = up.offset;
  }
  for (const auto& ev : batch) {
    auto& st = get(ev.room);
    st.events.emplace(ev.offset, ev);
    st.pos.offset = ev.offset;
  }
  for (const auto& up : snapshots)
    get(up.room).snap = snapshot{up.offset, up.state};
  return true;
}

result<std::vector<stored_event>>
memory_store::read_since(const std::string& room, std::uint64_t after,
                         std::size_t limit) {
  std::vector<stored_event> out;
  auto r = rooms_.find(room);
  if (r == rooms_.end())
    return out;
  const auto& evs = r->second.events;
  for (auto i = evs.upper_bound(after); i != evs.end() && out.size() < limit;
       ++i)
    out.push_back(i->second);
  return out;
}

result<std::optional<std::uint64_t>>
memory_store::find_publish_id(const std::string& room,
                              const std::string& publish_id) {
  std::optional<std::uint64_t> none;
  // An empty publish_id means "no id": it never names an event.
  if (publish_id.empty())
    return none;
  auto r = rooms_.find(room);
  if (r == rooms_.end())
    return none;
  for (const auto& [offset, ev] : r->second.events)
    if (ev.publish_id == publish_id)
      return std::optional<std::uint64_t>{offset};
  return none;
}

result<std::size_t> memory_store::trim(const std::string& room,
                                       std::uint64_t keep_last,
                                       std::int64_t min_timestamp_ms) {
  auto r = rooms_.find(room);
  if (r == rooms_.end())
    return std::size_t{0};
  auto& evs = r->second.events;
  // Everything up to `cutoff` goes. Deleting only a prefix keeps the stored
  // history contiguous even when timestamps are not monotonic, so a reader
  // that starts at first_offset() never skips a hole.
  std::uint64_t cutoff = 0;
  if (keep_last < evs.size())
    cutoff =
        std::prev(evs.end(), static_cast<std::ptrdiff_t>(keep_last) + 1)->first;
  if (min_timestamp_ms > 0)
    for (const auto& [offset, ev] : evs)
      if (ev.timestamp_ms < min_timestamp_ms && offset > cutoff)
        cutoff = offset;
  auto end = evs.upper_bound(cutoff);
  auto n = static_cast<std::size_t>(std::distance(evs.begin(), end));
  evs.erase(evs.begin(), end);
  return n;
}

result<std::vector<std::string>> memory_store::rooms() {
  std::vector<std::string> out;
  for (const auto& [room, state] : rooms_)
    out.push_back(room);
  return out;
}

namespace {

/// Events of a batch must follow `after` densely.
std::optional<error_info> check_batch(const replica_batch& b) {
  auto at = b.after;
  for (const auto& ev : b.events)
    if (ev.room != b.room || ev.offset != ++at)
      return error_info{"OFFSET_CONFLICT",
                        "replicated events of room " + b.room +
                            " do not follow offset " + std::to_string(b.after)};
  for (const auto& up : b.snapshots)
    if (up.room != b.room || up.offset > at)
      return error_info{"OFFSET_CONFLICT",
                        "replicated snapshot of room " + b.room +
                            " is past its events"};
  return std::nullopt;
}

} // namespace

result<std::vector<replica_outcome>>
memory_store::replicate(const std::vector<replica_batch>& batches) {
  for (const auto& b : batches)
    if (auto err = check_batch(b))
      return *err;
  std::vector<replica_outcome> out;
  for (const auto& b : batches) {
    auto r = rooms_.find(b.room);
    if (r == rooms_.end() || b.reset || r->second.pos.epoch != b.epoch) {
      auto& st = rooms_[b.room];
      st = room_state{};
      st.pos = room_position{b.epoch, b.after};
      r = rooms_.find(b.room);
    } else if (b.after != r->second.pos.offset) {
      out.push_back({false, r->second.pos.offset});
      continue;
    }
    auto& st = r->second;
    st.events.erase(st.events.upper_bound(b.after), st.events.end());
    if (st.snap && st.snap->offset > b.after)
      st.snap.reset();
    st.pos.offset = b.after;
    for (const auto& ev : b.events) {
      st.events.emplace(ev.offset, ev);
      st.pos.offset = ev.offset;
    }
    for (const auto& up : b.snapshots)
      st.snap = snapshot{up.offset, up.state};
    out.push_back({true, st.pos.offset});
  }
  return out;
}

result<std::optional<std::uint64_t>>
memory_store::first_offset(const std::string& room) {
  std::optional<std::uint64_t> none;
  auto r = rooms_.find(room);
  if (r == rooms_.end() || r->second.events.empty())
    return none;
  return std::optional<std::uint64_t>{r->second.events.begin()->first};
}

result<std::optional<snapshot>>
memory_store::get_snapshot(const std::string& room) {
  auto r = rooms_.find(room);
  if (r == rooms_.end())
    return std::optional<snapshot>{};
  return r->second.snap;
}

result<bool> memory_store::create_operation(const operation_record& op) {
  auto i = operations_.find(op.id);
  if (i == operations_.end()) {
    operations_.emplace(op.id, op);
    return true;
  }
  const auto& have = i->second;
  if (have.kind != op.kind || have.owner != op.owner ||
      have.meta_json != op.meta_json)
    return error_info{"OPERATION_EXISTS",
                      "operation " + op.id + " exists with other attributes"};
  return false;
}

result<std::optional<operation_record>>
memory_store::get_operation(const std::string& id) {
  auto i = operations_.find(id);
  if (i == operations_.end())
    return std::optional<operation_record>{};
  return std::optional<operation_record>{i->second};
}

} // namespace tidings::persistence
