// What a verified token says about its bearer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tidings::protocol {

struct claims {
  std::string sub;                 // user id; grants `user:{sub}`
  std::vector<std::string> rooms;  // exact room ids and `kind:*` patterns
  bool admin = false;              // `role: "admin"` (or "admin" in `roles`)
  std::string plan;                // optional `plan` claim (limits by plan)
  std::optional<std::int64_t> exp; // seconds since the epoch
};

} // namespace tidings::protocol
