// Seed S3's faces: `/ws/operations/{operation_id}?token=` (operation
// progress) and `/ws/scan/{scan_id}` (directory scan commands). Pure:
// decoding never throws, callers pass the time in, no file system access.
//
// Operations socket. The server:
//  1. checks the token (close 1008 `invalid_token` / `auth_required`), the
//     operation (1008 `operation_not_found`) and access (1008
//     `operation_forbidden`), then the limits (`s3_admit`: 1008
//     `user_connection_limit` / `operation_connection_limit`);
//  2. sends `current_state` first (encode_s3_current_state), then every
//     event after the state's offset (encode_s3_event);
//  3. after an event with a terminal status (s3_terminal_status), sends a
//     `status_update` unless the event was one (S3's test client waits for
//     `status_update` with status completed/failed), then may close 1000
//     `operation_completed` as S3's server does;
//  4. answers `{"type":"ping"}` with encode_s3_pong and ignores any other
//     client frame (S3: "Unknown message types should be logged, not cause
//     errors").
// Frames are `{"type","timestamp","data"}`, as S3's server sends them and
// its test and browser clients read them (`data['timestamp']`,
// `data["data"]["status"]`); S3's "Message Formats" section and its React
// and TypeScript clients instead read payload fields at the top level
// (`data.total_files`, `data.current_file`). Both work: with
// `s3_shape::enveloped_and_flat` (the default) the payload's top-level
// fields are repeated beside the envelope, except `type`, `timestamp` and
// `data`, which the envelope keeps (the seed server's `{"type": t, **data}`
// let a payload `type` overwrite the event type).
//
// Scan socket: client `{"action":"scan","path":P,"recursive":B}` and
// `{"action":"cancel"}` (decode_s3_scan); server `progress`, `completed`
// and `error` frames (encode_s3_scan_*). The path is checked with
// resolve_scan_path before any file system access.
#pragma once

#include "protocol/errors.hpp"
#include "protocol/publication.hpp"
#include "protocol/room_id.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tidings::protocol {

// -- operations socket -----------------------------------------------------

/// The room of `/ws/operations/{operation_id}`: `<kind>:<operation_id>`
/// (`kind` is the operation kind S3 operations are created with; Tidings'
/// default kind list starts with `operation`). Nullopt when the id is not
/// a valid room id part (answer: close 1008 `operation_not_found`).
std::optional<room_id> s3_operation_room(std::string_view operation_id,
                                         std::string_view kind = "operation");

/// S3's documented connection limits (MAX_USER_CONNECTIONS,
/// MAX_OPERATION_CONNECTIONS).
struct s3_limits {
  std::uint32_t per_user = 10;
  std::uint32_t per_operation = 100;
};

/// Whether one more connection may open, given the caller's and the
/// operation's current counts: nullopt admits; otherwise the close reason
/// (1008, as S3's server closes on its limits).
std::optional<close_reason> s3_admit(std::uint32_t user_connections,
                                     std::uint32_t operation_connections,
                                     const s3_limits& limits = {});

enum class s3_client_frame : std::uint8_t { ping, ignored };

/// `{"type":"ping"}` → ping; anything else, valid or not → ignored.
s3_client_frame decode_s3_operation_message(std::string_view text);

enum class s3_shape : std::uint8_t { enveloped, enveloped_and_flat };

/// {"type":<type[.event]>,"timestamp":"….mmmZ","data":<payload>[,flat]}
/// where flat = the payload object's other top-level fields (see above).
std::string encode_s3_event(const publication& pub,
                            s3_shape shape = s3_shape::enveloped_and_flat);

/// {"type":"current_state","timestamp","data":<state>,"operation_id",
///  "offset","epoch"}: `state` is the reducer's state object; S3's own
/// server names two of its fields differently, so `operation_type` (from
/// `kind`) and `error_message` (from `error`, when a string, else null) are
/// added to `data` when absent.
std::string encode_s3_current_state(const room_id& room,
                                    const stream_position& pos,
                                    std::string_view state_json,
                                    std::int64_t now_ms);

/// The terminal status an event announces: its payload's `status` when
/// that is a string that `terminal_status` accepts (operation_completed's
/// "completed", a status_update's "failed", …). Type names alone never
/// count (`file_completed` ends one file, not the operation).
std::optional<std::string> s3_terminal_status(const publication& pub);

/// {"type":"status_update","timestamp","data":{"status":…}}
std::string encode_s3_status_update(std::string_view status,
                                    std::int64_t now_ms);

/// {"type":"pong","timestamp"}
std::string encode_s3_pong(std::int64_t now_ms);

/// {"type":"error","timestamp","data":{"message":…},"message":…}: the
/// table's fixed text for `code`, both where S3's envelope readers and its
/// flat readers (`data.message`) look.
std::string encode_s3_error(error_code code, std::int64_t now_ms);

// -- scan socket -----------------------------------------------------------

/// Longest scan path accepted, in bytes (Linux PATH_MAX).
constexpr std::size_t max_scan_path_size = 4096;

/// Why a scan could not start or went wrong. Each has one fixed message
/// (describe), sent as `{"type":"error","message":…}`; they are S3 scan
/// frames only, so they live here rather than in the error-code table.
enum class scan_error : std::uint8_t {
  invalid_message,  // not JSON, no/unknown `action`, wrong field types
  path_required,    // scan without a non-empty `path`
  path_not_allowed, // outside the configured root (or `..` escapes it)
  not_found,        // S3's "Failed to scan directory: Directory not found"
  not_a_directory,
  permission_denied, // the root of the scan itself
  already_running,
  not_running,    // cancel with no scan running
  too_many_files, // the server's bound on one scan's result
  cancelled,
  internal,
};

std::string_view describe(scan_error err);

struct s3_scan_start {
  std::string path;
  bool recursive = true; // S3: `recursive: Optional[bool] = True`
};
struct s3_scan_cancel {};

using s3_scan_command = std::variant<s3_scan_start, s3_scan_cancel, scan_error>;

s3_scan_command decode_s3_scan(std::string_view text);

/// `path` relative to `root`, or absolute, normalised lexically ("." and
/// empty components dropped, ".." taken back) and checked to stay inside
/// `root`: the canonical absolute path, or `path_not_allowed` (also for a
/// relative `root`, NUL bytes or more than max_scan_path_size bytes).
/// A ".." that would climb above `root` is refused even if later
/// components come back in.
/// Lexical only: the caller must then resolve symlinks (realpath) and run
/// the result through this check again (with the realpath of the root),
/// or a link inside the root can point outside it.
std::variant<std::string, scan_error> resolve_scan_path(std::string_view root,
                                                        std::string_view path);

/// ".pdf" for "/documents/file1.pdf"; empty when the last component has
/// no dot after its first character.
std::string scan_extension(std::string_view path);

struct scan_file {
  std::string path;
  std::uint64_t size = 0;
  std::int64_t modified_ms = 0; // written as "2024-01-15T10:00:00Z"
  std::string extension;        // scan_extension(path)
};

/// {"type":"progress","scanned":N,"total":N,"current_path":…}
std::string encode_s3_scan_progress(std::uint64_t scanned, std::uint64_t total,
                                    std::string_view current_path);

/// {"type":"completed","files":[{"path","size","modified","extension"}…],
///  "count":N,"total_size":N,"warnings":[…]}; `count` and `total_size`
/// cover the whole scan even when `files` is cut short.
std::string encode_s3_scan_completed(const std::vector<scan_file>& files,
                                     std::uint64_t count,
                                     std::uint64_t total_size,
                                     const std::vector<std::string>& warnings);

/// {"type":"error","message":<describe(err)>}
std::string encode_s3_scan_error(scan_error err);

/// "Permission denied: <path>", the warning S3 shows for an unreadable
/// directory below the scan's root.
std::string scan_permission_warning(std::string_view path);

} // namespace tidings::protocol
