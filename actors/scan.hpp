// Seed S3's directory scan socket, `/ws/scan/{scan_id}`, as a socket kind
// registered through the extension API (kind_registry::add_socket_kind).
// One actor per socket; it walks a directory below the configured root and
// streams `progress`, then `completed` or `error` frames
// (protocol/dialect_s3.hpp).
//
// Runs on the CAF scheduler. It never blocks a worker for long: the walk
// goes in steps of at most `entries_per_step` directory entries, each step
// a message the actor sends itself, so `cancel` and the session's end are
// handled between steps. No timers: nothing is left pending at shutdown.
//
// Protocol (from the session's handler):
//   (text_atom, std::string)  {"action":"scan","path","recursive"} starts a
//                             scan (one at a time); {"action":"cancel"}
//                             stops it (answer: error "cancelled")
//   (closed_atom)             the session ended: stop, quit
// Self-sent:
//   (scan_step_atom, uint64 run)  one more step of scan number `run`
//
// Paths: resolve_scan_path keeps the request lexically inside the root,
// then realpath resolves links and the result is checked again, so a link
// cannot lead out. Below that, links are never followed (lstat), so a link
// inside the tree cannot either.
#pragma once

#include "actors/extension.hpp"

#include <cstddef>
#include <string>

namespace tidings::actors {

struct scan_config {
  /// The directory scans may cover (made canonical with realpath by
  /// `make_scan_socket`); empty: scans are disabled and every socket is
  /// closed 1008 `scan_disabled`.
  std::string root;
  std::size_t max_files = 10000;      // beyond: error "too many files"
  std::size_t max_listed = 1000;      // `files` entries in `completed`
  std::size_t max_warnings = 100;     // `warnings` entries in `completed`
  std::size_t entries_per_step = 256; // directory entries per step
};

/// The path prefix S3 clients use.
constexpr const char* scan_socket_prefix = "/ws/scan/";

/// The socket kind's factory. The root is resolved here, once; a root that
/// does not resolve to a directory disables scans.
socket_factory make_scan_socket(scan_config cfg);

} // namespace tidings::actors
