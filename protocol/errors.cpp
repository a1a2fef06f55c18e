#include "protocol/errors.hpp"
#include <iterator>

namespace tidings::protocol {

namespace {

using ec = error_code;

constexpr error_entry errors[] = {
    {ec::invalid_json, "INVALID_JSON", "Message is not valid JSON", 400},
    {ec::invalid_message, "INVALID_MESSAGE",
     "Message must be a JSON object with a string \"type\"", 400},
    {ec::unknown_type, "UNKNOWN_TYPE", "Unknown message type", 400},
    {ec::missing_field, "MISSING_FIELD",
     "A required field is missing or has "
     "the wrong type",
     400},
    {ec::invalid_room, "INVALID_ROOM", "Room id must be kind:id", 400},
    {ec::access_denied, "ACCESS_DENIED", "Access denied to room", 403},
    {ec::not_subscribed, "NOT_SUBSCRIBED", "Not subscribed to room", 400},
    {ec::operation_not_found, "OPERATION_NOT_FOUND", "No such operation", 404},
    {ec::operation_exists, "OPERATION_EXISTS",
     "An operation with this id exists with other fields", 409},
    {ec::unknown_command, "UNKNOWN_COMMAND",
     "This room kind has no such command", 400},
    {ec::too_many_subscriptions, "TOO_MANY_SUBSCRIPTIONS",
     "Subscription limit reached for this connection", 429},
    {ec::rate_limited, "RATE_LIMITED", "Rate limit exceeded", 429},
    {ec::already_authenticated, "ALREADY_AUTHENTICATED",
     "Connection is already authenticated", 400},
    {ec::not_authenticated, "NOT_AUTHENTICATED",
     "Authenticate first with {\"type\":\"auth\",\"token\":...}", 401},
    {ec::unauthorized, "UNAUTHORIZED", "Missing or invalid credentials", 401},
    {ec::forbidden, "FORBIDDEN", "Not allowed for this token", 403},
    {ec::not_found, "NOT_FOUND", "No such endpoint", 404},
    {ec::method_not_allowed, "METHOD_NOT_ALLOWED",
     "Method not allowed on this endpoint", 405},
    {ec::payload_too_large, "PAYLOAD_TOO_LARGE", "Request body too large", 413},
    {ec::unavailable, "UNAVAILABLE", "Service temporarily unavailable", 503},
    {ec::internal, "INTERNAL", "Internal error", 500},
    {ec::subscription_failed, "SUBSCRIPTION_FAILED", "Subscription failed",
     400},
    {ec::connection_failed, "CONNECTION_FAILED", "WebSocket connection failed",
     503},
    {ec::invalid_channel, "INVALID_CHANNEL",
     "Unknown channel or subscription type", 400},
    {ec::invalid_filter, "INVALID_FILTER",
     "Filters must be an object of dot paths to values or arrays of values",
     400},
    {ec::subscription_not_found, "SUBSCRIPTION_NOT_FOUND",
     "Subscription not found", 404},
    {ec::invalid_credentials, "INVALID_CREDENTIALS", "Invalid credentials",
     401},
    {ec::auth_required, "AUTH_REQUIRED", "Authentication required", 401},
    {ec::invalid_cursor, "INVALID_CURSOR", "Cursor is malformed", 400},
    {ec::invalid_query, "INVALID_QUERY", "A query parameter is malformed", 400},
};

using cc = close_code;
using cr = close_reason;

constexpr close_entry closes[] = {
    {cc::normal, "normal", "Normal closure"},
    {cc::going_away, "shutting_down", "Server shutting down"},
    {cc::policy_violation, "invalid_token", "Invalid token"},
    {cc::policy_violation, "auth_timeout", "Authentication timeout"},
    {cc::policy_violation, "auth_required", "Authentication required"},
    {cc::policy_violation, "origin_not_allowed", "Origin not allowed"},
    {cc::message_too_big, "message_too_big", "Message too big"},
    {cc::internal_error, "internal_error", "Internal error"},
    {cc::try_again_later, "too_many_connections", "Too many connections"},
    {cc::slow_consumer, "slow_consumer", "Slow consumer"},
    {cc::rate_limited, "rate_limited", "Rate limit exceeded"},
    {cc::protocol_error, "protocol_error", "Protocol error"},
    {cc::invalid_payload, "invalid_payload", "Invalid UTF-8"},
    {cc::policy_violation, "auth_failed", "Authentication failed"},
    {cc::policy_violation, "operation_not_found", "Operation not found"},
    {cc::policy_violation, "operation_forbidden",
     "You don't have access to this operation"},
    {cc::policy_violation, "user_connection_limit",
     "User connection limit exceeded"},
    {cc::policy_violation, "operation_connection_limit",
     "Operation connection limit exceeded"},
    {cc::normal, "operation_completed", "Operation completed"},
    {cc::policy_violation, "scan_disabled", "Directory scans are disabled"},
    {cc::service_restart, "room_moved",
     "Room moved to another node: reconnect and resume"},
};

static_assert(sizeof(errors) / sizeof(errors[0]) ==
                  static_cast<std::size_t>(ec::invalid_query) + 1,
              "one error entry per error_code");
static_assert(sizeof(closes) / sizeof(closes[0]) ==
                  static_cast<std::size_t>(cr::room_moved) + 1,
              "one close entry per close_reason");

} // namespace

const error_entry& describe(error_code code) {
  return errors[static_cast<std::size_t>(code)];
}

const error_entry* error_table_begin() {
  return std::begin(errors);
}

const error_entry* error_table_end() {
  return std::end(errors);
}

const close_entry& describe(close_reason reason) {
  return closes[static_cast<std::size_t>(reason)];
}

const close_entry* close_table_begin() {
  return std::begin(closes);
}

const close_entry* close_table_end() {
  return std::end(closes);
}

} // namespace tidings::protocol
