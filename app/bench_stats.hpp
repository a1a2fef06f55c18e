// Bookkeeping for `tidings bench`, kept apart from the sockets so it can be
// tested alone: a latency histogram, the scan that finds the bench payload in
// a received frame, and the per-subscriber delivery ledger that yields
// missed / duplicated / misrouted / out-of-order counts.
//
// Nothing here is thread-safe: the bench runs all its I/O on one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tidings::app::bench {

/// Log-linear histogram of non-negative integers (nanoseconds here): 64
/// sub-buckets per power of two, so a reported percentile (bucket midpoint)
/// is within 0.8% of the exact one. Constant memory and O(1) record, which
/// matters because the generator shares the CPU with the server it measures.
class histogram {
 public:
  histogram();
  void record(std::uint64_t value);
  std::uint64_t count() const { return count_; }
  std::uint64_t max() const { return max_; }
  std::uint64_t min() const { return count_ ? min_ : 0; }
  double mean() const;
  /// q in [0, 1]; the exact max for q = 1, 0 when empty.
  std::uint64_t percentile(double q) const;

 private:
  std::vector<std::uint64_t> buckets_;
  std::uint64_t count_ = 0;
  std::uint64_t max_ = 0;
  std::uint64_t min_ = UINT64_MAX;
  long double sum_ = 0;
};

/// The fields the bench puts into each published `data`, plus the room's
/// `offset` from the envelope when the server sends one.
struct bench_payload {
  std::uint64_t seq = 0;
  std::uint64_t sent_ns = 0;
  std::string_view room; // points into the scanned frame
  std::optional<std::uint64_t> offset;
};

/// The unsigned number after `"key":` (quoted_key includes the quotes),
/// searching from `from`; nullopt when absent or not a number.
std::optional<std::uint64_t> number_at(std::string_view s,
                                       std::string_view quoted_key,
                                       std::size_t from = 0);

/// The string after `"key":`, up to the next quote (no unescaping: for the
/// bench's own plain tokens); nullopt when absent or not a string.
std::optional<std::string_view> string_at(std::string_view s,
                                          std::string_view quoted_key,
                                          std::size_t from = 0);

/// Finds the bench payload in a text frame by key scanning rather than a
/// JSON parse: a full parse per delivery would cost the generator more CPU
/// than the server spends sending it. Works for any dialect that carries
/// the published object verbatim (native envelope, raw body, Socket.IO
/// array). nullopt when the frame is not a bench event.
std::optional<bench_payload> scan_payload(std::string_view frame);

/// The published `data` object: {"seq":N,"room":"R","sent_ns":T} padded
/// with a "pad" string to about `payload_bytes` when that is larger.
std::string make_payload(std::uint64_t seq, std::string_view room,
                         std::uint64_t sent_ns, std::size_t payload_bytes);

/// What each subscriber saw. Events are numbered 0..events-1 globally;
/// event s goes to room s % rooms, so a subscriber's ledger is indexed by
/// s / rooms and stays small even with many rooms.
class delivery_ledger {
 public:
  struct totals {
    std::uint64_t expected = 0; // acked events x ready subscribers
    std::uint64_t received = 0; // first deliveries of acked events
    std::uint64_t missed = 0;
    std::uint64_t duplicated = 0;
    std::uint64_t misrouted = 0;
    std::uint64_t out_of_order = 0; // offset not above the previous one
    std::uint64_t unacked = 0;      // deliveries of events never acked
  };

  delivery_ledger(std::size_t subscribers, std::size_t rooms,
                  std::uint64_t events);

  std::size_t room_of_subscriber(std::size_t sub) const { return sub % rooms_; }
  std::size_t room_of_event(std::uint64_t seq) const { return seq % rooms_; }

  /// Subscribers count as expected receivers only once ready (subscribed);
  /// call before the first publish.
  void mark_ready(std::size_t sub);
  /// The server acknowledged event `seq`: from now on every ready
  /// subscriber of its room must receive it.
  void mark_acked(std::uint64_t seq);
  /// A delivery to `sub`. `room_index` is the room named in the payload
  /// (npos when it named none of ours). Returns true when it was a first,
  /// correctly routed delivery.
  bool record(std::size_t sub, std::uint64_t seq, std::size_t room_index,
              std::optional<std::uint64_t> offset);

  /// True once every acked event reached every ready subscriber of its room.
  bool complete() const { return received_ == expected_; }
  std::uint64_t expected() const { return expected_; }
  std::uint64_t received() const { return received_; }
  /// Walks every ledger; call once at the end.
  totals summarize() const;

 private:
  struct subscriber {
    std::vector<bool> seen; // by seq / rooms
    std::uint64_t last_offset = 0;
    bool has_offset = false;
    bool ready = false;
  };

  std::size_t rooms_;
  std::uint64_t events_;
  std::vector<subscriber> subs_;
  std::vector<std::uint32_t> ready_per_room_;
  std::vector<std::uint32_t> delivered_; // first deliveries per event
  std::vector<bool> acked_;
  std::uint64_t expected_ = 0;
  std::uint64_t received_ = 0;
  std::uint64_t duplicated_ = 0;
  std::uint64_t misrouted_ = 0;
  std::uint64_t out_of_order_ = 0;
};

} // namespace tidings::app::bench
