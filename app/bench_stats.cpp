#include "app/bench_stats.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace tidings::app::bench {

namespace {

// Values below 2^7 get one bucket each; above, each power of two is split
// into 64 buckets by the six bits after the leading one.
constexpr unsigned linear_limit = 128;
constexpr unsigned sub_buckets = 64;
constexpr std::size_t bucket_count = linear_limit + 57 * sub_buckets;

unsigned leading_bit(std::uint64_t v) {
  return 63u - static_cast<unsigned>(__builtin_clzll(v));
}

std::size_t bucket_of(std::uint64_t v) {
  if (v < linear_limit)
    return static_cast<std::size_t>(v);
  unsigned shift = leading_bit(v) - 6; // >= 1, leaves v >> shift in [64,128)
  return linear_limit + (shift - 1) * sub_buckets +
         static_cast<std::size_t>((v >> shift) - sub_buckets);
}

// Midpoint of a bucket: halves the worst-case error of its lower bound.
std::uint64_t bucket_value(std::size_t i) {
  if (i < linear_limit)
    return i;
  std::size_t rel = i - linear_limit;
  unsigned shift = static_cast<unsigned>(rel / sub_buckets) + 1;
  std::uint64_t low = (sub_buckets + rel % sub_buckets) << shift;
  return low + ((std::uint64_t{1} << shift) >> 1);
}

// Position just after `"key"` and the colon, or npos (also when nothing
// follows the colon).
std::size_t value_pos(std::string_view s, std::string_view quoted_key,
                      std::size_t from = 0) {
  auto k = s.find(quoted_key, from);
  if (k == std::string_view::npos)
    return k;
  auto i = k + quoted_key.size();
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t'))
    ++i;
  if (i >= s.size() || s[i] != ':')
    return std::string_view::npos;
  ++i;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t'))
    ++i;
  return i < s.size() ? i : std::string_view::npos;
}

} // namespace

std::optional<std::uint64_t>
number_at(std::string_view s, std::string_view quoted_key, std::size_t from) {
  auto i = value_pos(s, quoted_key, from);
  if (i == std::string_view::npos)
    return std::nullopt;
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data() + i, s.data() + s.size(), v);
  if (ec != std::errc{} || end == s.data() + i)
    return std::nullopt;
  return v;
}

// Room names are ours (no escapes), so the closing quote ends the value.
std::optional<std::string_view>
string_at(std::string_view s, std::string_view quoted_key, std::size_t from) {
  auto i = value_pos(s, quoted_key, from);
  if (i == std::string_view::npos || s[i] != '"')
    return std::nullopt;
  auto end = s.find('"', i + 1);
  if (end == std::string_view::npos)
    return std::nullopt;
  return s.substr(i + 1, end - i - 1);
}

histogram::histogram() : buckets_(bucket_count, 0) {}

void histogram::record(std::uint64_t value) {
  ++buckets_[bucket_of(value)];
  ++count_;
  max_ = std::max(max_, value);
  min_ = std::min(min_, value);
  sum_ += value;
}

double histogram::mean() const {
  return count_ ? static_cast<double>(sum_ / count_) : 0.0;
}

std::uint64_t histogram::percentile(double q) const {
  if (count_ == 0)
    return 0;
  if (q >= 1.0)
    return max_;
  // Nearest-rank: the smallest value with at least q of the samples at or
  // below it.
  auto rank = static_cast<std::uint64_t>(
      std::ceil(std::max(q, 0.0) * static_cast<double>(count_)));
  rank = std::max<std::uint64_t>(rank, 1);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    if (seen >= rank)
      return std::min(std::max(bucket_value(i), min_), max_);
  }
  return max_;
}

std::optional<bench_payload> scan_payload(std::string_view frame) {
  // The payload's keys are searched after "sent_ns" is found, starting from
  // the object that holds it, so envelope fields of the same name (none
  // today) cannot be mistaken for ours.
  auto sent = frame.find("\"sent_ns\"");
  if (sent == std::string_view::npos)
    return std::nullopt;
  auto obj = frame.rfind('{', sent);
  if (obj == std::string_view::npos)
    return std::nullopt;
  auto sent_ns = number_at(frame, "\"sent_ns\"", sent);
  auto seq = number_at(frame, "\"seq\"", obj);
  auto room = string_at(frame, "\"room\"", obj);
  if (!sent_ns || !seq || !room)
    return std::nullopt;
  bench_payload p;
  p.seq = *seq;
  p.sent_ns = *sent_ns;
  p.room = *room;
  p.offset = number_at(frame, "\"offset\"");
  return p;
}

std::string make_payload(std::uint64_t seq, std::string_view room,
                         std::uint64_t sent_ns, std::size_t payload_bytes) {
  std::string out;
  out.reserve(std::max<std::size_t>(payload_bytes, 64));
  out += "{\"seq\":";
  out += std::to_string(seq);
  out += ",\"room\":\"";
  out += room;
  out += "\",\"sent_ns\":";
  out += std::to_string(sent_ns);
  constexpr std::string_view pad_open = ",\"pad\":\"";
  constexpr std::size_t pad_overhead = pad_open.size() + 2; // `"}`
  if (payload_bytes > out.size() + pad_overhead) {
    out += pad_open;
    out.append(payload_bytes - out.size() - 2, 'x');
    out += '"';
  }
  out += '}';
  return out;
}

delivery_ledger::delivery_ledger(std::size_t subscribers, std::size_t rooms,
                                 std::uint64_t events)
    : rooms_(rooms), events_(events), subs_(subscribers),
      ready_per_room_(rooms, 0),
      delivered_(static_cast<std::size_t>(events), 0),
      acked_(static_cast<std::size_t>(events), false) {
  for (std::size_t i = 0; i < subscribers; ++i) {
    auto r = room_of_subscriber(i);
    // Events r, r+R, r+2R, ... below `events`.
    auto n = events > r ? (events - r + rooms - 1) / rooms : 0;
    subs_[i].seen.assign(static_cast<std::size_t>(n), false);
  }
}

void delivery_ledger::mark_ready(std::size_t sub) {
  auto& s = subs_[sub];
  if (s.ready)
    return;
  s.ready = true;
  ++ready_per_room_[room_of_subscriber(sub)];
}

void delivery_ledger::mark_acked(std::uint64_t seq) {
  if (seq >= events_ || acked_[seq])
    return;
  acked_[seq] = true;
  expected_ += ready_per_room_[room_of_event(seq)];
  // Deliveries can overtake the HTTP reply; they count from now on.
  received_ += delivered_[seq];
}

bool delivery_ledger::record(std::size_t sub, std::uint64_t seq,
                             std::size_t room_index,
                             std::optional<std::uint64_t> offset) {
  auto& s = subs_[sub];
  auto room = room_of_subscriber(sub);
  if (seq >= events_ || room_index != room || room_of_event(seq) != room) {
    ++misrouted_;
    return false;
  }
  auto k = static_cast<std::size_t>(seq / rooms_);
  if (s.seen[k]) {
    ++duplicated_; // a repeat is counted once, not also as out of order
    return false;
  }
  s.seen[k] = true;
  if (offset) {
    if (s.has_offset && *offset <= s.last_offset)
      ++out_of_order_;
    s.last_offset = *offset;
    s.has_offset = true;
  }
  if (!s.ready)
    return false; // not counted as expected, so not as received either
  ++delivered_[seq];
  if (acked_[seq])
    ++received_;
  return true;
}

delivery_ledger::totals delivery_ledger::summarize() const {
  totals t;
  t.expected = expected_;
  t.received = received_;
  t.duplicated = duplicated_;
  t.misrouted = misrouted_;
  t.out_of_order = out_of_order_;
  for (std::size_t i = 0; i < subs_.size(); ++i) {
    const auto& s = subs_[i];
    if (!s.ready)
      continue;
    auto r = room_of_subscriber(i);
    for (std::size_t k = 0; k < s.seen.size(); ++k)
      if (!s.seen[k] && acked_[k * rooms_ + r])
        ++t.missed;
  }
  for (std::size_t seq = 0; seq < delivered_.size(); ++seq)
    if (!acked_[seq])
      t.unacked += delivered_[seq];
  return t;
}

} // namespace tidings::app::bench
