#include "cluster/member_table.hpp"

#include <algorithm>

namespace tidings::cluster {

namespace {

bool is_live(member_state s) {
  return s != member_state::dead;
}

std::uint64_t fnv1a(std::uint64_t h, const void* data, std::size_t n) {
  auto p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

} // namespace

std::string_view to_string(member_state s) {
  switch (s) {
  case member_state::alive:
    return "alive";
  case member_state::suspect:
    return "suspect";
  case member_state::dead:
    return "dead";
  }
  return "unknown";
}

bool operator==(const member_addr& a, const member_addr& b) {
  return a.node_id == b.node_id && a.incarnation == b.incarnation &&
         a.host == b.host && a.port == b.port;
}

member_table::member_table(member_addr self, std::size_t max_members)
    : self_(std::move(self)), max_(std::max<std::size_t>(max_members, 2)) {}

void member_table::set_self(member_addr self) {
  self_ = std::move(self);
}

bool member_table::make_room() {
  if (members_.size() + 1 < max_)
    return true;
  // Evict the dead entry that died first; live members are never evicted.
  auto victim = members_.end();
  for (auto i = members_.begin(); i != members_.end(); ++i)
    if (i->second.state == member_state::dead &&
        (victim == members_.end() ||
         i->second.changed < victim->second.changed))
      victim = i;
  if (victim == members_.end())
    return false;
  members_.erase(victim);
  return true;
}

contact_result member_table::heard_from(const member_addr& who,
                                        time_point now) {
  if (who.node_id == self_.node_id)
    return contact_result::rejected;
  auto i = members_.find(who.node_id);
  if (i == members_.end()) {
    if (!make_room())
      return contact_result::rejected;
    members_.emplace(who.node_id,
                     member_record{who, member_state::alive, now, now});
    return contact_result::joined;
  }
  auto& rec = i->second;
  if (who.incarnation < rec.addr.incarnation)
    return contact_result::stale;
  if (who.incarnation > rec.addr.incarnation) {
    rec = member_record{who, member_state::alive, now, now};
    return contact_result::rejoined;
  }
  if (rec.state == member_state::dead)
    return contact_result::dead;
  rec.last_heard = now;
  if (rec.state == member_state::suspect) {
    rec.state = member_state::alive;
    rec.changed = now;
  }
  return contact_result::refreshed;
}

bool member_table::declare_dead(std::string_view id, std::uint64_t incarnation,
                                time_point now) {
  auto i = members_.find(id);
  if (i == members_.end() || i->second.addr.incarnation != incarnation ||
      !is_live(i->second.state))
    return false;
  i->second.state = member_state::dead;
  i->second.changed = now;
  return true;
}

sweep_result member_table::sweep(time_point now, const failure_thresholds& t) {
  sweep_result out;
  for (auto i = members_.begin(); i != members_.end();) {
    auto& rec = i->second;
    if (rec.state == member_state::dead) {
      if (now - rec.changed >= t.forget_after) {
        out.forgotten.push_back(i->first);
        i = members_.erase(i);
        continue;
      }
    } else if (now - rec.last_heard >= t.dead_after) {
      rec.state = member_state::dead;
      rec.changed = now;
      out.died.push_back(i->first);
    } else if (rec.state == member_state::alive &&
               now - rec.last_heard >= t.suspect_after) {
      rec.state = member_state::suspect;
      rec.changed = now;
      out.suspected.push_back(i->first);
    }
    ++i;
  }
  return out;
}

void member_table::touch_live(time_point now) {
  for (auto& [id, rec] : members_)
    if (is_live(rec.state))
      rec.last_heard = now;
}

const member_record* member_table::find(std::string_view id) const {
  auto i = members_.find(id);
  return i == members_.end() ? nullptr : &i->second;
}

std::vector<member_addr> member_table::live_members() const {
  std::vector<member_addr> out;
  out.reserve(members_.size() + 1);
  bool self_done = false;
  for (auto& [id, rec] : members_) {
    if (!self_done && self_.node_id < id) {
      out.push_back(self_);
      self_done = true;
    }
    if (is_live(rec.state))
      out.push_back(rec.addr);
  }
  if (!self_done)
    out.push_back(self_);
  return out;
}

std::vector<std::string> member_table::live_ids() const {
  std::vector<std::string> out;
  for (auto& m : live_members())
    out.push_back(m.node_id);
  return out;
}

std::vector<member_record> member_table::others() const {
  std::vector<member_record> out;
  out.reserve(members_.size());
  for (auto& [id, rec] : members_)
    out.push_back(rec);
  return out;
}

std::size_t member_table::live_count() const {
  return 1 + static_cast<std::size_t>(
                 std::count_if(members_.begin(), members_.end(), [](auto& kv) {
                   return is_live(kv.second.state);
                 }));
}

std::uint64_t member_table::digest() const {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (auto& m : live_members()) {
    h = fnv1a(h, m.node_id.data(), m.node_id.size());
    unsigned char sep = 0;
    h = fnv1a(h, &sep, 1);
    for (int b = 0; b < 8; ++b) {
      unsigned char byte = static_cast<unsigned char>(m.incarnation >> (8 * b));
      h = fnv1a(h, &byte, 1);
    }
  }
  return h;
}

} // namespace tidings::cluster
