// The slice of Engine.IO v4 and Socket.IO v5 (the Socket.IO 4.x wire
// protocol) that `tidings bench --protocol socketio` speaks: WebSocket
// transport only, text packets only, default namespace only. Pure: no
// sockets, no clocks, so it is tested alone (tests/app).
//
// What a Socket.IO 4.8 server sends, as checked against its sources
// (socket.io/dist/socket.js, socket.io-adapter's SessionAwareAdapter):
//   0{"sid":…,"upgrades":[],"pingInterval":…,"pingTimeout":…,…}  EIO open
//   2                      EIO ping (the server pings; answer "3")
//   40{"sid":…}            Socket.IO CONNECT ack; with connectionStateRecovery
//   40{"sid":…,"pid":…}    also a private session id, the same pid again
//                          when a resumed session was restored
//   44{"message":…}        CONNECT refused
//   42["name",arg…]        EVENT; with recovery, a broadcast carries its
//   42["name",arg…,"off"]  offset as one more, last, string argument
// On reconnect the client sends 40{"pid":…,"offset":…} (the last offset it
// saw); a restored session replays the missed EVENTs first, then answers
// 40 with the same pid.
#pragma once

#include <string>
#include <string_view>

namespace tidings::app::bench::sio {

enum class packet_kind {
  eio_open,    // "0{…}"
  eio_close,   // "1"
  eio_ping,    // "2"
  eio_noop,    // "6" (and other Engine.IO packets we ignore)
  connect,     // "40…"
  connect_err, // "44…"
  disconnect,  // "41"
  event,       // "42…" or "43…" (ack)
  other,       // other Socket.IO packets, or another namespace
  invalid,     // empty or not Engine.IO
};

struct packet {
  packet_kind kind = packet_kind::invalid;
  /// connect: the Socket.IO sid and, with recovery, the pid (empty when
  /// absent). Both point into the parsed text.
  std::string_view sid;
  std::string_view pid;
};

/// Classifies one text frame. Namespaced packets ("4x/admin,…") are
/// `other`: the bench only joins the default namespace.
packet parse(std::string_view frame);

/// The last argument of an EVENT packet when it is a JSON string: the
/// recovery offset a Socket.IO server appends to broadcasts. Like
/// socket.io-client, call it only once the session has a pid: without
/// recovery a trailing string is just an argument. Empty when the last
/// argument is not a string or is the event name itself.
std::string_view trailing_offset(std::string_view event_frame);

/// The CONNECT packet for the default namespace: "40", or with a pid and
/// an offset from an earlier session 40{"pid":…,"offset":…} (the resume
/// request). Without an offset the server could not resume, so "40".
std::string connect_packet(std::string_view pid, std::string_view offset);

/// Engine.IO pong, the answer to a ping.
inline constexpr std::string_view pong = "3";

} // namespace tidings::app::bench::sio
