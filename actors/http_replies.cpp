#include "actors/http_replies.hpp"

#include "protocol/native.hpp"
#include "protocol/publish_request.hpp"

namespace tidings::actors {

transport::http_response json_reply(unsigned status, std::string body) {
  transport::http_response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

transport::http_response error_reply(protocol::error_code code,
                                     std::string_view detail) {
  auto status = protocol::describe(code).http_status;
  auto r = json_reply(status, protocol::encode_http_error(code, detail));
  if (status == 401)
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

bool same_secret(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string json_string_array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i)
      out += ',';
    protocol::append_json_string(out, items[i]);
  }
  out += ']';
  return out;
}

} // namespace tidings::actors
