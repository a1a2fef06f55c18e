// Every error code and close code Tidings sends, with its fixed reason, in
// one table. The README's "Errors and close codes" section is generated from
// the same entries (see `tidings codes`), so the two cannot drift.
#pragma once

#include <cstdint>
#include <string_view>

namespace tidings::protocol {

/// Error codes sent in `{"type":"error","error_code":…}` frames and in HTTP
/// JSON error bodies.
enum class error_code : std::uint8_t {
  invalid_json,
  invalid_message,
  unknown_type,
  missing_field,
  invalid_room,
  access_denied,
  not_subscribed,
  operation_not_found,
  operation_exists,
  unknown_command,
  too_many_subscriptions,
  rate_limited,
  already_authenticated,
  not_authenticated,
  unauthorized,
  forbidden,
  not_found,
  method_not_allowed,
  payload_too_large,
  unavailable,
  internal,
  // Seed dialects (S0, S2, S3, SSE, long-poll):
  subscription_failed, // S0's category for every failed (un)subscribe
  connection_failed,   // S0's category for server-side failures
  invalid_channel,     // S0 channel / S2 subscription type not known
  invalid_filter,      // S2 filters malformed or beyond their bounds
  subscription_not_found,
  invalid_credentials, // S2 `auth_failed`
  auth_required,       // S2: a frame other than `auth` before auth
  invalid_cursor,      // SSE Last-Event-ID / long-poll `cursor`
  invalid_query,       // a query parameter is malformed
};

struct error_entry {
  error_code code;
  std::string_view name;    // wire value of `error_code`
  std::string_view message; // fixed human text
  unsigned http_status;     // status when the error ends an HTTP request
};

/// The entry for `code`; every enumerator has exactly one.
const error_entry& describe(error_code code);

/// All entries, in enumerator order.
const error_entry* error_table_begin();
const error_entry* error_table_end();

/// WebSocket close codes, with fixed reasons (never built from input).
enum class close_code : std::uint16_t {
  normal = 1000,
  going_away = 1001,
  protocol_error = 1002,   // malformed WebSocket framing
  invalid_payload = 1007,  // a text message or close reason is not UTF-8
  policy_violation = 1008, // bad or missing token, auth timeout, origin
  message_too_big = 1009,
  internal_error = 1011,
  service_restart = 1012, // the room moved to another node: resubscribe
  try_again_later = 1013, // connection limits
  slow_consumer = 4001,   // send queue exceeded its byte bound
  rate_limited = 4029,    // kept sending commands far above the limit
};

struct close_entry {
  close_code code;
  std::string_view name;
  std::string_view reason; // sent as the close reason (at most 123 bytes)
};

/// Close reasons used with 1008; each is its own entry so clients can tell
/// them apart while the code stays the one S1/S3 clients expect.
enum class close_reason : std::uint8_t {
  normal,
  shutting_down,
  invalid_token,
  auth_timeout,
  auth_required,
  origin_not_allowed,
  message_too_big,
  internal_error,
  too_many_connections,
  slow_consumer,
  rate_limited,
  protocol_error,
  invalid_payload,
  // Seed dialects (S2, S3):
  auth_failed,                // S2: the first message was not a valid auth
  operation_not_found,        // S3 /ws/operations/{id}: no such operation
  operation_forbidden,        // S3: the caller may not see the operation
  user_connection_limit,      // S3: per-user connection limit
  operation_connection_limit, // S3: per-operation connection limit
  operation_completed,        // S3: closed after the terminal status
  scan_disabled,              // S3 /ws/scan/{id}: no --scan-root configured
  // Cluster:
  room_moved, // the room's history moved on without this node's copy
};

const close_entry& describe(close_reason reason);
const close_entry* close_table_begin();
const close_entry* close_table_end();

} // namespace tidings::protocol
