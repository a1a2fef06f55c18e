// RFC 6455 framing for the server side of a WebSocket, as pure functions:
// no sockets, no Beast, no allocation except where a result is a string.
//
// Why not Beast's websocket::stream: it writes one message per async_write
// and sends its own control frames (pongs, pings, the close reply) from
// inside its read and timer operations. A session that wants to put many
// queued frames into one gather write must own every byte written to the
// socket, so the session frames them itself with these functions (and keeps
// Beast for HTTP parsing). Server frames are never masked, so a frame's
// header depends only on its opcode and length.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tidings::transport::wsproto {

enum class opcode : std::uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

/// Longest header a server writes (2 + 8 bytes of extended length).
constexpr std::size_t max_server_header = 10;

/// Writes the header of an unmasked final frame carrying `length` bytes into
/// `out` and returns its size (2, 4 or 10).
std::size_t encode_header(std::uint8_t* out, opcode op, std::uint64_t length);

/// A frame header as received from a client.
struct frame_header {
  bool fin = false;
  opcode op = opcode::continuation;
  std::uint64_t length = 0;
  std::array<std::uint8_t, 4> mask{};
  std::size_t size = 0; // bytes of header, payload follows
};

enum class parse_result {
  complete,      // `out` holds the header
  need_more,     // fewer bytes than the header needs
  protocol_error // close with 1002
};

/// Parses a client frame header from the first `n` bytes of `p`. Enforces
/// what RFC 6455 asks of a server with no extensions: RSV bits clear, known
/// opcode, client frames masked, control frames final and at most 125 bytes,
/// the 64-bit length's top bit clear and lengths minimally encoded.
parse_result parse_header(const std::uint8_t* p, std::size_t n,
                          frame_header& out);

/// XORs `n` bytes at `p` with `mask`, starting at mask position `phase`
/// (the number of payload bytes of this frame already unmasked).
void unmask(std::uint8_t* p, std::size_t n,
            const std::array<std::uint8_t, 4>& mask, std::size_t phase = 0);

/// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, nothing
/// above U+10FFFF), as text messages and close reasons must be.
bool valid_utf8(std::string_view s);

/// The payload of a close frame: the code in network order and the reason,
/// cut to fit 125 bytes without splitting a UTF-8 sequence.
std::string close_payload(std::uint16_t code, std::string_view reason);

/// A received close frame's payload.
struct close_frame {
  std::optional<std::uint16_t> code; // absent: the peer sent no code
  std::string reason;
};

/// Parses a close payload; nullopt when it is malformed (one byte, a code
/// that may not be sent on the wire, or a reason that is not UTF-8), which
/// the server answers with 1002.
std::optional<close_frame> parse_close(std::string_view payload);

/// The Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key.
std::string accept_key(std::string_view client_key);

/// Checks the handshake headers an upgrade request must carry beyond what
/// the HTTP layer already checked (GET, HTTP/1.1, Upgrade, Connection).
/// Returns nullopt when acceptable, or the HTTP status to refuse with
/// (400 for a missing or malformed key, 426 for another version).
std::optional<unsigned> check_handshake(std::string_view key,
                                        std::string_view version);

} // namespace tidings::transport::wsproto
