// The body of `POST /api/v1/publish`, validated once at the edge.
#pragma once

#include "protocol/errors.hpp"
#include "protocol/room_id.hpp"

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>

namespace tidings::protocol {

constexpr std::size_t max_event_type_size = 64;
constexpr std::size_t max_publish_id_size = 128;

struct publish_request {
  room_id room;
  std::string type;
  std::string event;      // empty when absent
  std::string data;       // compact JSON text (any JSON value)
  std::string publish_id; // empty when absent
};

/// Why a body was refused: the table's code plus a short fixed detail that
/// names the offending field (never echoes input).
struct request_error {
  error_code code;
  std::string_view detail;
};

/// Frame types the server itself sends; publishing them would let a
/// publisher impersonate server frames.
bool reserved_event_type(std::string_view type);

std::variant<publish_request, request_error>
parse_publish_request(std::string_view body);

/// The body of `POST /api/v1/operations/{id}/events`: a publish body
/// without `room_id` (the operation's room is used).
std::variant<publish_request, request_error>
parse_operation_event(std::string_view body, const room_id& room);

/// The body of `POST /api/v1/operations`.
struct operation_create {
  room_id room; // `<kind>:<id>`
  std::string id;
  std::string kind;
  std::string owner;
  std::string meta; // compact JSON, `{}` when absent
};

std::variant<operation_create, request_error>
parse_operation_create(std::string_view body);

/// {"error_code":…,"message":…,"detail"?:…}, for HTTP error bodies.
std::string encode_http_error(error_code code, std::string_view detail = {});

} // namespace tidings::protocol
