// RFC 6455 framing (transport/ws_frame): golden bytes, every truncation,
// every malformed header a client can send, and UTF-8 validation against an
// independent decoder. Pure functions: no sockets, no clocks.
#include "transport/ws_frame.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

using namespace tidings::transport::wsproto;

namespace {

using bytes = std::vector<std::uint8_t>;

bytes encode(opcode op, std::uint64_t length) {
  std::array<std::uint8_t, max_server_header> buf{};
  const auto n = encode_header(buf.data(), op, length);
  return bytes(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
}

constexpr std::array<std::uint8_t, 4> test_mask{0xA1, 0xB2, 0xC3, 0xD4};

// A client frame header: `b0` as given, the mask bit set unless `masked` is
// false, `length` in the encoding `form` (7, 16 or 64 bits; 0 picks the
// minimal one), then the mask key.
bytes client_header(std::uint8_t b0, std::uint64_t length, int form = 0,
                    bool masked = true) {
  if (form == 0)
    form = length < 126 ? 7 : length <= 0xFFFF ? 16 : 64;
  const std::uint8_t m = masked ? 0x80 : 0x00;
  bytes h{b0};
  if (form == 7) {
    h.push_back(static_cast<std::uint8_t>(m | length));
  } else if (form == 16) {
    h.push_back(m | 126);
    h.push_back(static_cast<std::uint8_t>(length >> 8));
    h.push_back(static_cast<std::uint8_t>(length));
  } else {
    h.push_back(m | 127);
    for (int i = 0; i < 8; ++i)
      h.push_back(static_cast<std::uint8_t>(length >> (56 - 8 * i)));
  }
  if (masked)
    h.insert(h.end(), test_mask.begin(), test_mask.end());
  return h;
}

parse_result parse(const bytes& b, frame_header& out, std::size_t n) {
  return parse_header(b.data(), n, out);
}

parse_result parse(const bytes& b) {
  frame_header h;
  return parse_header(b.data(), b.size(), h);
}

// An independent UTF-8 check (RFC 3629): decode a code point from its lead
// byte's length, then reject overlongs, surrogates and values past U+10FFFF.
bool reference_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i < len)
      return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80)
        return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    const std::uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

std::uint16_t code_of(const std::string& payload) {
  return static_cast<std::uint16_t>(
      (static_cast<unsigned char>(payload.at(0)) << 8) |
      static_cast<unsigned char>(payload.at(1)));
}

std::string with_code(std::uint16_t code, std::string_view reason = {}) {
  std::string s;
  s += static_cast<char>(code >> 8);
  s += static_cast<char>(code & 0xFF);
  s += reason;
  return s;
}

} // namespace

TEST_CASE("encode_header writes golden bytes", "[transport][ws_frame]") {
  SECTION("7-bit lengths") {
    CHECK(encode(opcode::text, 0) == bytes{0x81, 0x00});
    CHECK(encode(opcode::text, 1) == bytes{0x81, 0x01});
    CHECK(encode(opcode::text, 125) == bytes{0x81, 0x7D});
  }
  SECTION("16-bit lengths") {
    CHECK(encode(opcode::text, 126) == bytes{0x81, 0x7E, 0x00, 0x7E});
    CHECK(encode(opcode::text, 256) == bytes{0x81, 0x7E, 0x01, 0x00});
    CHECK(encode(opcode::text, 65535) == bytes{0x81, 0x7E, 0xFF, 0xFF});
  }
  SECTION("64-bit lengths") {
    CHECK(encode(opcode::text, 65536) ==
          bytes{0x81, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00});
    CHECK(encode(opcode::text, std::uint64_t{1} << 32) ==
          bytes{0x81, 0x7F, 0, 0, 0, 0x01, 0, 0, 0, 0});
    CHECK(encode(opcode::text, 0x0102030405060708ULL) ==
          bytes{0x81, 0x7F, 1, 2, 3, 4, 5, 6, 7, 8});
  }
  SECTION("every opcode is final and unmasked") {
    CHECK(encode(opcode::binary, 3) == bytes{0x82, 0x03});
    CHECK(encode(opcode::close, 2) == bytes{0x88, 0x02});
    CHECK(encode(opcode::ping, 0) == bytes{0x89, 0x00});
    CHECK(encode(opcode::pong, 125) == bytes{0x8A, 0x7D});
  }
  SECTION("what it writes parses back once masked, at every boundary") {
    for (std::uint64_t len :
         {0ULL, 1ULL, 124ULL, 125ULL, 126ULL, 127ULL, 65534ULL, 65535ULL,
          65536ULL, 65537ULL, (1ULL << 32) - 1, 1ULL << 32, (1ULL << 63) - 1}) {
      INFO("length " << len);
      auto b = encode(opcode::binary, len);
      b[1] |= 0x80; // as a client would send it
      b.insert(b.end(), test_mask.begin(), test_mask.end());
      frame_header h;
      REQUIRE(parse(b, h, b.size()) == parse_result::complete);
      CHECK(h.length == len);
      CHECK(h.size == b.size());
      CHECK(h.fin);
      CHECK(h.op == opcode::binary);
    }
  }
}

TEST_CASE("parse_header reads complete client headers",
          "[transport][ws_frame]") {
  struct example {
    std::uint8_t b0;
    std::uint64_t length;
    std::size_t size;
    bool fin;
    opcode op;
  };
  const example examples[] = {
      {0x81, 0, 6, true, opcode::text},
      {0x01, 5, 6, false, opcode::text},
      {0x82, 125, 6, true, opcode::binary},
      {0x00, 126, 8, false, opcode::continuation},
      {0x80, 65535, 8, true, opcode::continuation},
      {0x82, 65536, 14, true, opcode::binary},
      {0x81, 1ULL << 32, 14, true, opcode::text},
      {0x81, (1ULL << 63) - 1, 14, true, opcode::text},
      {0x88, 125, 6, true, opcode::close},
      {0x89, 0, 6, true, opcode::ping},
      {0x8A, 7, 6, true, opcode::pong},
  };
  SECTION("complete, with size, length and mask") {
    for (const auto& e : examples) {
      INFO("b0 " << int{e.b0} << " length " << e.length);
      const auto b = client_header(e.b0, e.length);
      REQUIRE(b.size() == e.size);
      frame_header h;
      REQUIRE(parse(b, h, b.size()) == parse_result::complete);
      CHECK(h.size == e.size);
      CHECK(h.length == e.length);
      CHECK(h.fin == e.fin);
      CHECK(h.op == e.op);
      CHECK(h.mask == test_mask);
    }
  }
  SECTION("payload bytes after the header are not read as header") {
    for (const auto& e : examples) {
      INFO("b0 " << int{e.b0} << " length " << e.length);
      auto b = client_header(e.b0, e.length);
      b.insert(b.end(), {0xFF, 0xFF, 0xFF, 0xFF});
      frame_header h;
      REQUIRE(parse(b, h, b.size()) == parse_result::complete);
      CHECK(h.size == e.size);
      CHECK(h.length == e.length);
    }
  }
  SECTION("need_more at every truncation point") {
    for (const auto& e : examples) {
      const auto b = client_header(e.b0, e.length);
      for (std::size_t n = 0; n < b.size(); ++n) {
        INFO("b0 " << int{e.b0} << " length " << e.length << ", first " << n
                   << " bytes");
        frame_header h;
        CHECK(parse(b, h, n) == parse_result::need_more);
      }
    }
  }
}

TEST_CASE("parse_header refuses what a server must not accept",
          "[transport][ws_frame]") {
  SECTION("RSV bits: no extension was negotiated") {
    for (std::uint8_t rsv : {0x40, 0x20, 0x10, 0x70}) {
      INFO("rsv " << int{rsv});
      CHECK(parse(client_header(0x81 | rsv, 3)) ==
            parse_result::protocol_error);
      CHECK(parse(client_header(0x89 | rsv, 0)) ==
            parse_result::protocol_error);
      // Known from the first two bytes: no need to wait for the rest.
      frame_header h;
      CHECK(parse(client_header(0x81 | rsv, 3), h, 2) ==
            parse_result::protocol_error);
    }
  }
  SECTION("reserved opcodes 3-7 and 11-15") {
    for (std::uint8_t op : {3, 4, 5, 6, 7, 11, 12, 13, 14, 15}) {
      INFO("opcode " << int{op});
      CHECK(parse(client_header(0x80 | op, 0)) == parse_result::protocol_error);
      CHECK(parse(client_header(op, 0)) == parse_result::protocol_error);
    }
  }
  SECTION("unmasked client frames") {
    for (std::uint8_t b0 : {0x81, 0x82, 0x01, 0x00, 0x88, 0x89, 0x8A}) {
      INFO("b0 " << int{b0});
      CHECK(parse(client_header(b0, 5, 0, false)) ==
            parse_result::protocol_error);
    }
    CHECK(parse(client_header(0x81, 300, 0, false)) ==
          parse_result::protocol_error);
    CHECK(parse(client_header(0x81, 70000, 0, false)) ==
          parse_result::protocol_error);
  }
  SECTION("fragmented control frames") {
    for (std::uint8_t op : {0x8, 0x9, 0xA}) {
      INFO("opcode " << int{op});
      CHECK(parse(client_header(op, 0)) == parse_result::protocol_error);
      CHECK(parse(client_header(op, 2)) == parse_result::protocol_error);
    }
  }
  SECTION("control payloads over 125 bytes") {
    for (std::uint8_t b0 : {0x88, 0x89, 0x8A}) {
      INFO("b0 " << int{b0});
      CHECK(parse(client_header(b0, 125)) == parse_result::complete);
      CHECK(parse(client_header(b0, 126)) == parse_result::protocol_error);
      CHECK(parse(client_header(b0, 65535)) == parse_result::protocol_error);
      CHECK(parse(client_header(b0, 65536)) == parse_result::protocol_error);
    }
  }
  SECTION("non-minimal 16-bit lengths") {
    for (std::uint64_t len : {0ULL, 1ULL, 125ULL}) {
      INFO("length " << len);
      CHECK(parse(client_header(0x81, len, 16)) ==
            parse_result::protocol_error);
    }
    CHECK(parse(client_header(0x81, 126, 16)) == parse_result::complete);
  }
  SECTION("non-minimal 64-bit lengths") {
    for (std::uint64_t len : {0ULL, 125ULL, 126ULL, 65535ULL}) {
      INFO("length " << len);
      CHECK(parse(client_header(0x81, len, 64)) ==
            parse_result::protocol_error);
    }
    CHECK(parse(client_header(0x81, 65536, 64)) == parse_result::complete);
  }
  SECTION("a 64-bit length with its top bit set") {
    for (std::uint64_t len : {1ULL << 63, ~0ULL, (1ULL << 63) | 65536}) {
      INFO("length " << len);
      CHECK(parse(client_header(0x82, len, 64)) ==
            parse_result::protocol_error);
    }
  }
}

TEST_CASE("unmask matches a byte-by-byte reference", "[transport][ws_frame]") {
  std::mt19937 rng(6455);
  std::uniform_int_distribution<int> byte(0, 255);
  const std::array<std::uint8_t, 4> mask{0x37, 0xFA, 0x21, 0x3D};
  constexpr std::size_t guard = 8;

  SECTION("every phase, lengths 0 to 40, every alignment") {
    for (std::size_t phase = 0; phase < 4; ++phase) {
      for (std::size_t n = 0; n <= 40; ++n) {
        for (std::size_t offset = 0; offset < 8; ++offset) {
          INFO("phase " << phase << " length " << n << " offset " << offset);
          bytes original(guard + offset + n + guard);
          for (auto& b : original)
            b = static_cast<std::uint8_t>(byte(rng));
          auto expected = original;
          for (std::size_t i = 0; i < n; ++i)
            expected[guard + offset + i] ^= mask[(phase + i) % 4];
          auto actual = original;
          unmask(actual.data() + guard + offset, n, mask, phase);
          REQUIRE(actual == expected); // guard bytes untouched too
          unmask(actual.data() + guard + offset, n, mask, phase);
          REQUIRE(actual == original);
        }
      }
    }
  }
  SECTION("a payload unmasked in pieces equals one unmask") {
    bytes original(100);
    for (auto& b : original)
      b = static_cast<std::uint8_t>(byte(rng));
    auto whole = original;
    unmask(whole.data(), whole.size(), mask);
    for (std::size_t cut = 0; cut <= original.size(); ++cut) {
      INFO("cut at " << cut);
      auto pieces = original;
      unmask(pieces.data(), cut, mask, 0);
      unmask(pieces.data() + cut, pieces.size() - cut, mask, cut);
      REQUIRE(pieces == whole);
    }
  }
  SECTION("the RFC 6455 example: a masked \"Hello\"") {
    bytes frame{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                0x7f, 0x9f, 0x4d, 0x51, 0x58};
    frame_header h;
    REQUIRE(parse(frame, h, frame.size()) == parse_result::complete);
    CHECK(h.mask == mask);
    unmask(frame.data() + h.size, h.length, h.mask);
    CHECK(std::string(frame.begin() + 6, frame.end()) == "Hello");
  }
}

TEST_CASE("valid_utf8", "[transport][ws_frame]") {
  struct example {
    std::string_view text;
    bool valid;
    const char* what;
  };
  using namespace std::string_view_literals;
  const example table[] = {
      {""sv, true, "empty"},
      {"a"sv, true, "ASCII"},
      {"\0"sv, true, "NUL"},
      {"\x7F"sv, true, "DEL"},
      {"\xC2\x80"sv, true, "U+0080"},
      {"\xDF\xBF"sv, true, "U+07FF"},
      {"\xE0\xA0\x80"sv, true, "U+0800"},
      {"\xE2\x82\xAC"sv, true, "euro sign"},
      {"\xED\x9F\xBF"sv, true, "U+D7FF"},
      {"\xEE\x80\x80"sv, true, "U+E000"},
      {"\xEF\xBF\xBF"sv, true, "U+FFFF"},
      {"\xF0\x90\x80\x80"sv, true, "U+10000"},
      {"\xF0\x9F\x98\x80"sv, true, "emoji"},
      {"\xF4\x8F\xBF\xBF"sv, true, "U+10FFFF"},
      {"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5"sv, true, "kosme"},
      {"\xC0\x80"sv, false, "overlong NUL, 2 bytes"},
      {"\xC1\xBF"sv, false, "overlong U+007F"},
      {"\xE0\x80\x80"sv, false, "overlong NUL, 3 bytes"},
      {"\xE0\x9F\xBF"sv, false, "overlong U+07FF"},
      {"\xF0\x80\x80\x80"sv, false, "overlong NUL, 4 bytes"},
      {"\xF0\x8F\xBF\xBF"sv, false, "overlong U+FFFF"},
      {"\xED\xA0\x80"sv, false, "surrogate U+D800"},
      {"\xED\xAF\xBF"sv, false, "surrogate U+DBFF"},
      {"\xED\xBF\xBF"sv, false, "surrogate U+DFFF"},
      {"\xED\xA0\x80\xED\xB0\x80"sv, false, "surrogate pair"},
      {"\xF4\x90\x80\x80"sv, false, "U+110000"},
      {"\xF5\x80\x80\x80"sv, false, "lead F5"},
      {"\xF7\xBF\xBF\xBF"sv, false, "lead F7"},
      {"\xF8\x88\x80\x80\x80"sv, false, "5-byte form"},
      {"\xFC\x84\x80\x80\x80\x80"sv, false, "6-byte form"},
      {"\xFE"sv, false, "0xFE"},
      {"\xFF"sv, false, "0xFF"},
      {"\x80"sv, false, "stray continuation 80"},
      {"\xBF"sv, false, "stray continuation BF"},
      {"\xC2\x80\x80"sv, false, "one continuation too many"},
      {"\xC2"sv, false, "2-byte sequence cut after 1"},
      {"\xE2\x82"sv, false, "3-byte sequence cut after 2"},
      {"\xE2"sv, false, "3-byte sequence cut after 1"},
      {"\xF0\x9F\x98"sv, false, "4-byte sequence cut after 3"},
      {"\xF0\x9F"sv, false, "4-byte sequence cut after 2"},
      {"\xF0"sv, false, "4-byte sequence cut after 1"},
      {"\xC2\x41"sv, false, "ASCII where a continuation belongs"},
      {"\xE2\x28\xA1"sv, false, "bad second byte"},
      {"\xE2\x82\x28"sv, false, "bad third byte"},
      {"\xF0\x90\x28\xBC"sv, false, "bad third of four"},
      {"\xF0\x9F\x98\x28"sv, false, "bad fourth of four"},
      {"\xC2\xC2\x80"sv, false, "a lead byte where a continuation belongs"},
  };
  SECTION("the table, alone") {
    for (const auto& e : table) {
      INFO(e.what);
      CHECK(valid_utf8(e.text) == e.valid);
      CHECK(reference_utf8(e.text) == e.valid); // the reference agrees
    }
  }
  SECTION("the table at every offset around the 8-byte fast path") {
    for (const auto& e : table) {
      for (std::size_t before = 0; before <= 17; ++before) {
        for (std::size_t after = 0; after <= 17; ++after) {
          INFO(e.what << " after " << before << " ASCII bytes, before "
                      << after);
          const std::string s = std::string(before, 'x') + std::string(e.text) +
                                std::string(after, 'y');
          REQUIRE(valid_utf8(s) == e.valid);
        }
      }
    }
  }
  SECTION("a sequence cut by the end of the view is not completed from "
          "bytes beyond it") {
    const std::string buffer = "abcdefgh\xF0\x9F\x98\x80";
    const std::string_view all(buffer);
    CHECK(valid_utf8(all));
    for (std::size_t cut = 9; cut < buffer.size(); ++cut) {
      INFO("first " << cut << " bytes");
      CHECK_FALSE(valid_utf8(all.substr(0, cut)));
      CHECK_FALSE(valid_utf8(all.substr(8, cut - 8)));
    }
  }
  SECTION("all short sequences of interesting bytes agree with a reference") {
    const std::uint8_t alphabet[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F,
                                     0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
                                     0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1,
                                     0xF3, 0xF4, 0xF5, 0xF8, 0xFE, 0xFF};
    constexpr std::size_t k = sizeof(alphabet);
    std::size_t checked = 0;
    for (std::size_t len = 1; len <= 4; ++len) {
      std::size_t total = 1;
      for (std::size_t i = 0; i < len; ++i)
        total *= k;
      for (std::size_t index = 0; index < total; ++index) {
        std::string seq;
        for (std::size_t i = 0, v = index; i < len; ++i, v /= k)
          seq += static_cast<char>(alphabet[v % k]);
        // 6 ASCII bytes first: the sequence straddles the 8-byte boundary.
        for (const auto& s : {seq, "abcdef" + seq}) {
          if (valid_utf8(s) != reference_utf8(s)) {
            INFO("bytes of length " << s.size() << ", index " << index);
            FAIL("valid_utf8 disagrees with the reference");
          }
          ++checked;
        }
      }
    }
    CHECK(checked == 2 * (27 + 27 * 27 + 27 * 27 * 27 + 27 * 27 * 27 * 27));
  }
}

TEST_CASE("close_payload", "[transport][ws_frame]") {
  SECTION("the code in network order, then the reason") {
    CHECK(close_payload(1000, "") == std::string("\x03\xE8", 2));
    CHECK(close_payload(4001, "Slow consumer") ==
          std::string("\x0F\xA1", 2) + "Slow consumer");
    CHECK(close_payload(1002, "Protocol error").size() == 16);
  }
  SECTION("ASCII is cut at 123 bytes") {
    CHECK(close_payload(1000, std::string(123, 'r')) ==
          with_code(1000, std::string(123, 'r')));
    CHECK(close_payload(1000, std::string(124, 'r')) ==
          with_code(1000, std::string(123, 'r')));
    CHECK(close_payload(1000, std::string(1000, 'r')).size() == 125);
  }
  SECTION("the cut never splits a UTF-8 sequence") {
    for (std::string_view ch :
         {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"}) {
      for (std::size_t lead = 0; lead < 4; ++lead) {
        std::string reason(lead, 'a');
        while (reason.size() < 200)
          reason += ch;
        INFO(ch.size() << "-byte characters after " << lead << " ASCII");
        const auto p = close_payload(1001, reason);
        REQUIRE(p.size() <= 125);
        CHECK(code_of(p) == 1001);
        const auto kept = p.substr(2);
        CHECK(reason.compare(0, kept.size(), kept) == 0); // a prefix
        CHECK(valid_utf8(kept));
        // The longest such prefix: the next character would not fit.
        CHECK(kept.size() + ch.size() > 123);
        CHECK(kept.size() >= lead);
      }
    }
  }
  SECTION("a multi-byte reason that fits is kept whole") {
    std::string reason;
    while (reason.size() + 3 <= 123)
      reason += "\xE2\x82\xAC";
    CHECK(close_payload(1000, reason) == with_code(1000, reason));
  }
}

TEST_CASE("parse_close", "[transport][ws_frame]") {
  SECTION("an empty payload: no code") {
    auto f = parse_close("");
    REQUIRE(f);
    CHECK_FALSE(f->code);
    CHECK(f->reason.empty());
  }
  SECTION("one byte is malformed") {
    CHECK_FALSE(parse_close(std::string_view("\x03", 1)));
  }
  SECTION("codes a peer may send (RFC 6455 7.4)") {
    // The RFC's list plus 1012-1014, registered with IANA since (Tidings
    // itself closes with 1013).
    struct example {
      std::uint16_t code;
      bool ok;
    };
    const example codes[] = {
        {0, false},     {999, false},  {1000, true},  {1001, true},
        {1002, true},   {1003, true},  {1004, false}, {1005, false},
        {1006, false},  {1007, true},  {1008, true},  {1009, true},
        {1010, true},   {1011, true},  {1012, true},  {1013, true},
        {1014, true},   {1015, false},
        {1016, false},  {2000, false}, {2999, false}, {3000, true},
        {3999, true},   {4000, true},  {4999, true},  {5000, false},
        {65535, false},
    };
    for (const auto& e : codes) {
      INFO("code " << e.code);
      auto f = parse_close(with_code(e.code));
      REQUIRE(f.has_value() == e.ok);
      if (e.ok) {
        CHECK(f->code == e.code);
        CHECK(f->reason.empty());
      }
    }
  }
  SECTION("the reason follows the code") {
    auto f = parse_close(with_code(1000, "bye"));
    REQUIRE(f);
    CHECK(f->code == 1000);
    CHECK(f->reason == "bye");
    auto g = parse_close(with_code(4000, "\xE2\x82\xAC"));
    REQUIRE(g);
    CHECK(g->reason == "\xE2\x82\xAC");
  }
  SECTION("a reason that is not UTF-8 is malformed") {
    CHECK_FALSE(parse_close(with_code(1000, "\xFF")));
    CHECK_FALSE(parse_close(with_code(1000, "ok\xED\xA0\x80")));
    CHECK_FALSE(parse_close(with_code(1000, "cut \xE2\x82")));
  }
}

TEST_CASE("accept_key", "[transport][ws_frame]") {
  // RFC 6455 section 1.3, and a second well-known pair.
  CHECK(accept_key("dGhlIHNhbXBsZSBub25jZQ==") ==
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  CHECK(accept_key("x3JJHMbDL1EzLkh9GBhXDw==") ==
        "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

TEST_CASE("check_handshake", "[transport][ws_frame]") {
  const std::string good = "dGhlIHNhbXBsZSBub25jZQ==";
  SECTION("a good key and version 13") {
    CHECK_FALSE(check_handshake(good, "13"));
    CHECK_FALSE(check_handshake("x3JJHMbDL1EzLkh9GBhXDw==", "13"));
    CHECK_FALSE(check_handshake("AAAAAAAAAAAAAAAAAAAAAA==", "13"));
    CHECK_FALSE(check_handshake("/////////////////////w==", "13"));
    CHECK_FALSE(check_handshake(" " + good + "\t", " 13 "));
  }
  SECTION("a missing key") {
    CHECK(check_handshake("", "13") == 400u);
    CHECK(check_handshake("  ", "13") == 400u);
  }
  SECTION("a key of the wrong length") {
    CHECK(check_handshake("dGhlIHNhbXBsZSBub25jZQ=", "13") == 400u);
    CHECK(check_handshake("dGhlIHNhbXBsZSBub25jZQ", "13") == 400u);
    CHECK(check_handshake("dGhlIHNhbXBsZSBub25jZQ===", "13") == 400u);
    CHECK(check_handshake("AAAAAAAAAAAAAAAAAAAAAAA=", "13") == 400u); // 17 B
    CHECK(check_handshake("AAAAAAAAAAAAAAAAAAAA", "13") == 400u);     // 15 B
    CHECK(check_handshake("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "13") == 400u);
  }
  SECTION("characters outside base64") {
    for (char c : {'-', '_', '!', ' ', '.', '=', '\0', '\x80'}) {
      INFO("character " << int{static_cast<unsigned char>(c)});
      auto key = good;
      key[5] = c;
      CHECK(check_handshake(key, "13") == 400u);
    }
  }
  SECTION("non-zero padding bits in the last character") {
    // 'Q' is 010000: the 2 bits that count, then 4 zero bits.
    for (char c : {'R', 'S', 'B', 'E', 'I', 'M', 'U', 'P', 'f', '/', '+'}) {
      INFO("last character " << c);
      auto key = good;
      key[21] = c;
      CHECK(check_handshake(key, "13") == 400u);
    }
    for (char c : {'A', 'Q', 'g', 'w'}) {
      auto key = good;
      key[21] = c;
      CHECK_FALSE(check_handshake(key, "13"));
    }
  }
  SECTION("another version: 426") {
    CHECK(check_handshake(good, "8") == 426u);
    CHECK(check_handshake(good, "") == 426u);
    CHECK(check_handshake(good, "12") == 426u);
    CHECK(check_handshake(good, "130") == 426u);
  }
}
