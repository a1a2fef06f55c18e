// Operation state: a reducer folds an operation's events into its current
// state, a JSON object. Pure: the event's own timestamp is the only clock.
//
// `reducer` is the extension point for operation kinds with their own state
// (see docs/extending.md); `default_reducer` covers the seeds' shapes.
#pragma once

#include "protocol/errors.hpp"
#include "protocol/publication.hpp"

#include <optional>

#include <cstdint>
#include <string>
#include <string_view>

namespace tidings::protocol {

struct operation_info {
  std::string id;
  std::string kind;
  std::string owner;
  std::string meta_json = "{}"; // any JSON value
  std::int64_t created_ms = 0;
};

class reducer {
 public:
  virtual ~reducer() = default;
  /// The state before any event (compact JSON text).
  virtual std::string initial(const operation_info& op) const = 0;
  /// The state after `ev` (compact JSON text). Must not throw for any
  /// valid JSON `state` and event data.
  virtual std::string apply(const std::string& state,
                            const publication& ev) const = 0;
};

/// What a kind's command produced: one event to publish into the room
/// (folded and fanned out like any publish), or an error for the client.
struct command_outcome {
  std::string type; // event type; empty together with `error` unset: no-op
  std::string data = "{}"; // compact JSON
  std::optional<error_code> error;
};

/// Client commands of a kind: `{"type":"command","room_id",
/// "command":<name>,"args":{…}}`. Pure like a reducer: it sees the current
/// state, the caller and the arguments, and returns what to publish.
class command_handler {
 public:
  virtual ~command_handler() = default;
  virtual command_outcome handle(const std::string& state,
                                 const std::string& command,
                                 const std::string& args_json,
                                 const std::string& caller) const = 0;
};

/// Tracks `status` (sticky once terminal), `terminal`, `progress`
/// ({percent, completed, total}), `current_step`, `message`, `error`,
/// `result`, `events`, `last_event` and `updated_at`, reading the field
/// names the seeds use (status, progress_percentage, progress_percent,
/// progress, completed_nodes/total_nodes, processed_files/total_files,
/// processed/total, current_node, current_file, current_path, step, message,
/// error, result).
class default_reducer : public reducer {
 public:
  std::string initial(const operation_info& op) const override;
  std::string apply(const std::string& state,
                    const publication& ev) const override;
};

/// completed, failed, cancelled/canceled, and the seeds' DELIVERED,
/// BLOCKED, ABORTED (any letter case).
bool terminal_status(std::string_view status);

/// {"type":"current_state","room_id","offset","epoch","data":<state>,
///  "timestamp"}: sent first on every subscribe to an operation; events
/// with larger offsets follow.
std::string encode_current_state(const room_id& room,
                                 const stream_position& pos,
                                 std::string_view state_json,
                                 std::int64_t now_ms);

} // namespace tidings::protocol
