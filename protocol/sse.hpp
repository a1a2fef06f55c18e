// Server-Sent Events framing (text/event-stream). Pure.
//
// S0's SSE endpoint `GET /api/v1/sse/pipeline/{id}` (token in `?token=` or
// `Authorization: Bearer`) streams room `pipeline:{id}`; its clients do
//   eventSource.addEventListener('pipeline.progress', e => {
//     const data = JSON.parse(e.data); console.log(data.progress) })
// so the event name is S0's event type (`s0_event_type`) and `data` is the
// publication's payload alone, not S0's WebSocket envelope. `id:` is the
// cursor (cursor.hpp): the browser sends it back as `Last-Event-ID` when it
// reconnects, and the server resumes after it.
//
// Response headers the server sends with a stream:
//   Content-Type: text/event-stream; Cache-Control: no-cache;
//   X-Accel-Buffering: no (proxies must not buffer).
#pragma once

#include "protocol/publication.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace tidings::protocol {

constexpr std::string_view sse_content_type = "text/event-stream";

/// One event block:
///   event: <name>\n  (omitted when name is empty: the client's "message")
///   id: <id>\n       (omitted when id is empty)
///   data: <line>\n   (one per line of `data`; CRLF, CR and LF all split)
///   \n
/// CR, LF and NUL are dropped from `name` and `id`, so neither can start a
/// field or an event of its own; NUL in an id would make browsers ignore it.
std::string encode_sse_event(std::string_view name, std::string_view id,
                             std::string_view data);

/// `: <text>\n\n`: a comment, ignored by clients; keeps proxies and idle
/// timers from closing a quiet stream. Line breaks in `text` become spaces.
std::string encode_sse_comment(std::string_view text);

/// `retry: <ms>\n\n`: how long the browser waits before reconnecting.
std::string encode_sse_retry(std::uint32_t ms);

/// S0's SSE event for a publication: name `s0_event_type(pub)`, id its
/// cursor `<epoch>:<offset>` (or `id` when given: a composite stream's
/// cursor set), data the payload JSON.
std::string encode_s0_sse_event(const publication& pub,
                                std::string_view id = {});

} // namespace tidings::protocol
