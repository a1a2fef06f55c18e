// Wall-clock formatting for frames. Pure: callers pass the time in.
#pragma once

#include <cstdint>
#include <string>

namespace tidings::protocol {

/// UTC ISO 8601 with milliseconds: "2024-01-01T00:00:00.123Z".
std::string iso8601_ms(std::int64_t unix_ms);

} // namespace tidings::protocol
