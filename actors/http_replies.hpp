// What the node's HTTP handlers (gateway, streams, cluster API, S2) share:
// JSON replies, error replies from the error table, and a constant-time
// comparison for API keys. No CAF, no Beast.
#pragma once

#include "protocol/errors.hpp"
#include "transport/seam.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace tidings::actors {

/// A JSON reply with `status`.
transport::http_response json_reply(unsigned status, std::string body);

/// The error table's status and body for `code`; 401 also names the Bearer
/// scheme (WWW-Authenticate).
transport::http_response error_reply(protocol::error_code code,
                                     std::string_view detail = {});

/// Compares without an early exit, so the time taken does not reveal how
/// much of a guessed key was right (the length may show; keys are long).
bool same_secret(std::string_view a, std::string_view b);

/// `["a","b",…]` with each item escaped.
std::string json_string_array(const std::vector<std::string>& items);

} // namespace tidings::actors
