// Helpers shared by the seed dialects (dialect_s0/s2/s3, sse, longpoll):
// bounded JSON parsing, the seeds' second-precision timestamps and a
// publication's full event name. Pure; nothing here throws.
#pragma once

#include "protocol/publication.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace tidings::protocol {

/// Largest client message a dialect decoder looks at (the transport's
/// default `max-message-size` is the same; this is the codec's own bound).
constexpr std::size_t max_dialect_message_size = 64 * 1024;

/// Deepest array/object nesting a dialect decoder accepts. Client frames of
/// every seed are at most 3 deep; 32 leaves room for S2 filter values.
constexpr std::size_t max_dialect_json_depth = 32;

enum class json_failure : std::uint8_t { too_large, too_deep, invalid };

/// The `token` of an `{"type":"auth","token":…}` message: a non-empty
/// string of at most max_token_size bytes; nullopt otherwise.
std::optional<std::string> auth_token_of(const nlohmann::json& msg);

/// The nesting depth of `text` (brackets inside strings are skipped),
/// counting stops at `limit + 1`. Does not validate.
std::size_t json_depth(std::string_view text, std::size_t limit);

/// Parses `text` when it is at most `max_size` bytes and `max_depth` deep.
/// Invalid JSON and invalid UTF-8 give `invalid`.
std::variant<nlohmann::json, json_failure>
parse_bounded_json(std::string_view text,
                   std::size_t max_size = max_dialect_message_size,
                   std::size_t max_depth = max_dialect_json_depth);

/// "2024-01-26T10:00:00Z": UTC, whole seconds, as S0's and S3's examples
/// write `timestamp` (S0's `server_time` keeps milliseconds).
std::string iso8601_s(std::int64_t unix_ms);

/// `type`, or `type.event` when the publication has a sub-event.
std::string event_name(const publication& pub);

/// Appends `s` as a JSON string literal like append_json_string, but with
/// every invalid UTF-8 sequence replaced by U+FFFD: for text that did not
/// come through a JSON parser (file names), which a browser would
/// otherwise refuse as a text frame (close 1007).
void append_json_string_utf8(std::string& out, std::string_view s);

/// Compact JSON text of `j`; invalid UTF-8 is replaced, never thrown.
std::string dump_json(const nlohmann::json& j);

} // namespace tidings::protocol
