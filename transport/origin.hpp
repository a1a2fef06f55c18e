// The WebSocket Origin rule, as a pure function so it can be tested without
// sockets. Runs on whatever thread calls it; no state.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tidings::transport {

/// Whether a browser page at `origin` may open a WebSocket on a server
/// reached as `host` (the Host header). `allowed` empty: only the same host
/// (the origin's host[:port] equals `host`, ignoring ASCII case); an entry
/// "*": any origin; otherwise the origin must equal one entry exactly.
/// Callers skip the check when the request has no Origin header.
bool origin_allowed(const std::vector<std::string>& allowed,
                    std::string_view origin, std::string_view host);

} // namespace tidings::transport
