// Wall-clock time for frames, tokens and history rows. The pure layers take
// time as a parameter; the actors read it here, in one place.
#pragma once

#include <chrono>
#include <cstdint>

namespace tidings::actors {

/// Seconds since the Unix epoch (token checks).
inline std::int64_t unix_now() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

/// Milliseconds since the Unix epoch (frame and event timestamps).
inline std::int64_t unix_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
      .count();
}

} // namespace tidings::actors
