#include "transport/ws_frame.hpp"

#include "protocol/text.hpp"

#include <openssl/evp.h>

#include <cstring>

namespace tidings::transport::wsproto {

std::size_t encode_header(std::uint8_t* out, opcode op, std::uint64_t length) {
  out[0] = static_cast<std::uint8_t>(0x80 | static_cast<std::uint8_t>(op));
  if (length < 126) {
    out[1] = static_cast<std::uint8_t>(length);
    return 2;
  }
  if (length <= 0xFFFF) {
    out[1] = 126;
    out[2] = static_cast<std::uint8_t>(length >> 8);
    out[3] = static_cast<std::uint8_t>(length);
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; ++i)
    out[2 + i] = static_cast<std::uint8_t>(length >> (56 - 8 * i));
  return 10;
}

namespace {

bool is_control(opcode op) {
  return (static_cast<std::uint8_t>(op) & 0x8) != 0;
}

bool known(std::uint8_t op) {
  return op <= 0x2 || (op >= 0x8 && op <= 0xA);
}

} // namespace

parse_result parse_header(const std::uint8_t* p, std::size_t n,
                          frame_header& out) {
  if (n < 2)
    return parse_result::need_more;
  const std::uint8_t b0 = p[0];
  const std::uint8_t b1 = p[1];
  if ((b0 & 0x70) != 0) // RSV1-3: no extension was negotiated
    return parse_result::protocol_error;
  if (!known(b0 & 0x0F))
    return parse_result::protocol_error;
  if ((b1 & 0x80) == 0) // clients must mask
    return parse_result::protocol_error;
  frame_header h;
  h.fin = (b0 & 0x80) != 0;
  h.op = static_cast<opcode>(b0 & 0x0F);
  std::uint64_t len = b1 & 0x7F;
  std::size_t pos = 2;
  if (len == 126) {
    if (n < 4)
      return parse_result::need_more;
    len = (std::uint64_t{p[2]} << 8) | p[3];
    if (len < 126)
      return parse_result::protocol_error;
    pos = 4;
  } else if (len == 127) {
    if (n < 10)
      return parse_result::need_more;
    len = 0;
    for (int i = 0; i < 8; ++i)
      len = (len << 8) | p[2 + i];
    if ((len >> 63) != 0 || len <= 0xFFFF)
      return parse_result::protocol_error;
    pos = 10;
  }
  if (is_control(h.op) && (!h.fin || len > 125))
    return parse_result::protocol_error;
  if (n < pos + 4)
    return parse_result::need_more;
  std::memcpy(h.mask.data(), p + pos, 4);
  h.length = len;
  h.size = pos + 4;
  out = h;
  return parse_result::complete;
}

void unmask(std::uint8_t* p, std::size_t n,
            const std::array<std::uint8_t, 4>& mask, std::size_t phase) {
  std::size_t i = 0;
  // Byte by byte until the mask is aligned to `phase` 0, then 8 at a time.
  for (; i < n && ((phase + i) & 3) != 0; ++i)
    p[i] ^= mask[(phase + i) & 3];
  std::uint32_t m32;
  std::memcpy(&m32, mask.data(), 4);
  const std::uint64_t m64 = (std::uint64_t{m32} << 32) | m32;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t v;
    std::memcpy(&v, p + i, 8);
    v ^= m64;
    std::memcpy(p + i, &v, 8);
  }
  for (; i < n; ++i)
    p[i] ^= mask[(phase + i) & 3];
}

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    // ASCII runs, 8 bytes at a time.
    while (end - p >= 8) {
      std::uint64_t v;
      std::memcpy(&v, p, 8);
      if ((v & 0x8080808080808080ULL) != 0)
        break;
      p += 8;
    }
    if (p >= end)
      break;
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    std::size_t need;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0)
        lo = 0xA0; // overlong
      else if (c == 0xED)
        hi = 0x9F; // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0)
        lo = 0x90; // overlong
      else if (c == 0xF4)
        hi = 0x8F; // above U+10FFFF
    } else {
      return false;
    }
    if (static_cast<std::size_t>(end - p) < need + 1)
      return false;
    if (p[1] < lo || p[1] > hi)
      return false;
    for (std::size_t k = 2; k <= need; ++k)
      if ((p[k] & 0xC0) != 0x80)
        return false;
    p += need + 1;
  }
  return true;
}

std::string close_payload(std::uint16_t code, std::string_view reason) {
  // 125 bytes of payload, 2 of them the code. Cut before a continuation
  // byte so the reason stays UTF-8.
  std::size_t n = reason.size() > 123 ? 123 : reason.size();
  while (n > 0 && n < reason.size() &&
         (static_cast<unsigned char>(reason[n]) & 0xC0) == 0x80)
    --n;
  std::string out;
  out.reserve(2 + n);
  out += static_cast<char>(code >> 8);
  out += static_cast<char>(code & 0xFF);
  out.append(reason.data(), n);
  return out;
}

std::optional<close_frame> parse_close(std::string_view payload) {
  close_frame f;
  if (payload.empty())
    return f;
  if (payload.size() == 1)
    return std::nullopt;
  const auto code =
      static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                 static_cast<unsigned char>(payload[1]));
  // Codes a peer may send (RFC 6455 7.4): 1000-1003, 1007-1011 and the
  // registered 1012-1014, 3000-4999.
  const bool ok = (code >= 1000 && code <= 1003) ||
                  (code >= 1007 && code <= 1014) ||
                  (code >= 3000 && code <= 4999);
  if (!ok)
    return std::nullopt;
  auto reason = payload.substr(2);
  if (!valid_utf8(reason))
    return std::nullopt;
  f.code = code;
  f.reason = std::string(reason);
  return f;
}

std::string accept_key(std::string_view client_key) {
  static constexpr char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string input(client_key);
  input += guid;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  EVP_Digest(input.data(), input.size(), md, &md_len, EVP_sha1(), nullptr);
  unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(b64, md, static_cast<int>(md_len));
  return std::string(reinterpret_cast<const char*>(b64),
                     static_cast<std::size_t>(n));
}

namespace {

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

} // namespace

std::optional<unsigned> check_handshake(std::string_view key,
                                        std::string_view version) {
  if (protocol::trim_ows(version) != "13")
    return 426u;
  // A base64 encoding of 16 bytes: 22 significant characters and "==".
  key = protocol::trim_ows(key);
  if (key.size() != 24 || key[22] != '=' || key[23] != '=')
    return 400u;
  for (std::size_t i = 0; i < 22; ++i)
    if (b64_value(key[i]) < 0)
      return 400u;
  // The last significant character carries 2 bits; the other 4 must be 0.
  if ((b64_value(key[21]) & 0x0F) != 0)
    return 400u;
  return std::nullopt;
}

} // namespace tidings::transport::wsproto
