// One published event, as the room's owner stores and fans it out.
#pragma once

#include "protocol/room_id.hpp"

#include <cstdint>
#include <string>

namespace tidings::protocol {

struct publication {
  room_id room;
  std::string type;       // the publisher's event type, e.g. "node_update"
  std::string event;      // optional sub-event, e.g. "status_changed"
  std::string data;       // compact JSON text, validated at the edge
  std::string publish_id; // optional idempotency key
  std::uint64_t offset = 0;
  std::string epoch;
  std::int64_t timestamp_ms = 0;
};

/// Where a client's view of a room stands.
struct stream_position {
  std::string epoch;
  std::uint64_t offset = 0;
};

} // namespace tidings::protocol
