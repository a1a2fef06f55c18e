#include "app/bench_storm.hpp"

#include "app/bench_stats.hpp"

#include <algorithm>

namespace tidings::app::bench {

std::optional<native_cursor> scan_cursor(std::string_view frame) {
  auto offset = number_at(frame, "\"offset\"");
  auto epoch = string_at(frame, "\"epoch\"");
  // Epochs are plain tokens; an escape would need unescaping to resend.
  if (!offset || !epoch || epoch->find('\\') != std::string_view::npos)
    return std::nullopt;
  return native_cursor{*epoch, *offset};
}

catchup_tracker::catchup_tracker(std::size_t subscribers, std::size_t rooms,
                                 std::uint64_t events)
    : rooms_(rooms), events_(events), subs_(subscribers) {
  for (std::size_t i = 0; i < subscribers; ++i)
    subs_[i].seen.assign(events_of_room(i % rooms_, events), false);
}

std::size_t catchup_tracker::events_of_room(std::size_t room,
                                            std::uint64_t sent) const {
  // Events room, room + R, room + 2R, ... below `sent`.
  return sent > room
             ? static_cast<std::size_t>((sent - room + rooms_ - 1) / rooms_)
             : 0;
}

void catchup_tracker::record(std::size_t sub, std::uint64_t seq,
                             std::uint64_t at_ns) {
  if (sub >= subs_.size() || seq >= events_ || seq % rooms_ != sub % rooms_)
    return;
  mark(sub, static_cast<std::size_t>(seq / rooms_), at_ns);
}

void catchup_tracker::forget(std::uint64_t seq, std::uint64_t at_ns) {
  if (seq >= events_)
    return;
  auto room = static_cast<std::size_t>(seq % rooms_);
  for (auto sub = room; sub < subs_.size(); sub += rooms_)
    mark(sub, static_cast<std::size_t>(seq / rooms_), at_ns);
}

void catchup_tracker::mark(std::size_t sub, std::size_t k,
                           std::uint64_t at_ns) {
  auto& s = subs_[sub];
  if (k >= s.seen.size() || s.seen[k])
    return;
  s.seen[k] = true;
  ++s.held;
  if (!s.tracking || k >= s.need)
    return;
  ++s.held_below_need;
  if (!s.caught && s.held_below_need == s.need) {
    s.caught = true;
    s.caught_at = at_ns;
  }
}

void catchup_tracker::resubscribed(std::size_t sub, std::uint64_t at_ns,
                                   std::uint64_t sent_before) {
  if (sub >= subs_.size())
    return;
  auto& s = subs_[sub];
  s.tracking = true;
  s.need = std::min(events_of_room(sub % rooms_, sent_before), s.seen.size());
  s.held_below_need = static_cast<std::size_t>(
      std::count(s.seen.begin(),
                 s.seen.begin() + static_cast<std::ptrdiff_t>(s.need), true));
  s.caught = s.held_below_need == s.need;
  s.caught_at = at_ns;
}

catchup_tracker::result catchup_tracker::summarize(std::uint64_t sent) const {
  result r;
  std::uint64_t last = 0;
  for (std::size_t i = 0; i < subs_.size(); ++i) {
    const auto& s = subs_[i];
    if (!s.tracking)
      continue;
    ++r.tracked;
    // Events never sent are never held, so holding `all` means no hole.
    auto all = std::min(events_of_room(i % rooms_, sent), s.seen.size());
    if (s.caught && s.held >= all) {
      ++r.caught_up;
      last = std::max(last, s.caught_at);
    }
  }
  if (r.tracked > 0 && r.caught_up == r.tracked)
    r.last_caught_up_ns = last;
  return r;
}

} // namespace tidings::app::bench
