#include "protocol/sse.hpp"

#include "protocol/cursor.hpp"
#include "protocol/dialect_s0.hpp"

namespace tidings::protocol {

namespace {

// A field value on one line: CR/LF would end it, NUL poisons an id.
void append_single_line(std::string& out, std::string_view value) {
  for (char c : value)
    if (c != '\r' && c != '\n' && c != '\0')
      out += c;
}

} // namespace

std::string encode_sse_event(std::string_view name, std::string_view id,
                             std::string_view data) {
  std::string out;
  out.reserve(name.size() + id.size() + data.size() + 32);
  if (!name.empty()) {
    out += "event: ";
    append_single_line(out, name);
    out += '\n';
  }
  if (!id.empty()) {
    out += "id: ";
    append_single_line(out, id);
    out += '\n';
  }
  // Every line of the data, including an empty last one, gets its own
  // `data:` field; the client joins them back with LF.
  std::size_t start = 0;
  while (true) {
    auto brk = data.find_first_of("\r\n", start);
    out += "data: ";
    out.append(data.substr(start, brk == std::string_view::npos
                                      ? std::string_view::npos
                                      : brk - start));
    out += '\n';
    if (brk == std::string_view::npos)
      break;
    start = brk + 1;
    if (data[brk] == '\r' && start < data.size() && data[start] == '\n')
      ++start;
  }
  out += '\n';
  return out;
}

std::string encode_sse_comment(std::string_view text) {
  std::string out = ": ";
  for (char c : text)
    out += (c == '\r' || c == '\n' || c == '\0') ? ' ' : c;
  out += "\n\n";
  return out;
}

std::string encode_sse_retry(std::uint32_t ms) {
  return "retry: " + std::to_string(ms) + "\n\n";
}

std::string encode_s0_sse_event(const publication& pub, std::string_view id) {
  return encode_sse_event(s0_event_type(pub),
                          id.empty() ? encode_cursor(pub) : std::string{id},
                          pub.data);
}

} // namespace tidings::protocol
