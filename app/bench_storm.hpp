// Bookkeeping for `tidings bench --mode storm` (a reconnect storm), kept
// apart from the sockets so it can be tested alone: the resume cursor found
// in a native Tidings frame, and the catch-up tracker that times how long
// the subscribers take to hold every event again after the drop.
//
// Not thread-safe: the bench runs all its I/O on one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace tidings::app::bench {

/// A room position as the native dialect writes it into event frames and
/// `subscribed` confirmations: "epoch" (string) and "offset" (integer).
struct native_cursor {
  std::string_view epoch; // points into the scanned frame
  std::uint64_t offset = 0;
};

/// Both keys must be present; nullopt otherwise. A key scan, not a parse,
/// like scan_payload: the first "offset" and "epoch" keys are the
/// envelope's (the bench payload has neither).
std::optional<native_cursor> scan_cursor(std::string_view frame);

/// Times the catch-up after a storm. Definition (also in --help):
///
///   Let T_drop be the instant the bench closed every subscriber's socket
///   and R_c the instant subscriber c was subscribed again. c has caught up
///   at T_c, the first instant >= R_c at which it holds every event of its
///   room that the bench had sent before R_c: every event published before
///   the drop and while it was away. It counts as caught up only if, at
///   the end of the run, it also holds every later event of its room that
///   was sent and not refused (no hole left), so a lost event is never
///   "caught up".
///
///   storm_catchup = max over the dropped subscribers of T_c - T_drop,
///   defined only when every one of them caught up.
///
/// Arrival order does not matter: concurrent publishers can commit events
/// out of sequence order, which is not a gap in the subscriber's stream.
///
/// Events are numbered like delivery_ledger: event s goes to room
/// s % rooms and is the (s / rooms)-th event of that room.
class catchup_tracker {
 public:
  catchup_tracker(std::size_t subscribers, std::size_t rooms,
                  std::uint64_t events);

  /// A first, correctly routed delivery (before or after the drop).
  void record(std::size_t sub, std::uint64_t seq, std::uint64_t at_ns);
  /// Event `seq` will never be delivered (its publish was refused): it is
  /// no longer required, so it cannot hold a subscriber back.
  void forget(std::uint64_t seq, std::uint64_t at_ns);
  /// Subscriber `sub` is subscribed again after the drop, at `at_ns`;
  /// events [0, sent_before) had been sent by then.
  void resubscribed(std::size_t sub, std::uint64_t at_ns,
                    std::uint64_t sent_before);

  struct result {
    std::uint64_t tracked = 0;   // subscribers that resubscribed
    std::uint64_t caught_up = 0; // of those, caught up with no hole left
    std::optional<std::uint64_t> last_caught_up_ns; // max T_c when all did
  };
  /// `sent` events were sent in total; call once at the end.
  result summarize(std::uint64_t sent) const;

 private:
  struct subscriber {
    std::vector<bool> seen; // by seq / rooms; forgotten events count
    std::size_t held = 0;   // set bits in `seen`
    std::size_t need = 0;   // indexes [0, need) required at R_c
    std::size_t held_below_need = 0;
    std::uint64_t caught_at = 0;
    bool tracking = false;
    bool caught = false;
  };

  std::size_t events_of_room(std::size_t room, std::uint64_t sent) const;
  void mark(std::size_t sub, std::size_t k, std::uint64_t at_ns);

  std::size_t rooms_;
  std::uint64_t events_;
  std::vector<subscriber> subs_;
};

} // namespace tidings::app::bench
