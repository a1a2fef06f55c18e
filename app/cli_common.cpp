#include "app/cli_common.hpp"

#include "actors/connection.hpp"
#include "protocol/jwt.hpp"

#include <arpa/inet.h>
#include <stdexcept>

namespace tidings::app {

void add_server_options(options& o) {
  o.add("host", "127.0.0.1", "Server address.");
  o.add("port", "8000", "Server port.");
}

void add_token_options(options& o) {
  o.add("token", "", "JWT to present (else one is minted from --jwt-secret).",
        false, false);
  o.add("jwt-secret", "", "HS256 secret to mint a token with.");
  o.add("sub", "dev-user", "Token subject (user id).", false, false);
  o.add("rooms", "execution:*,workflow:*",
        "Comma-separated rooms or kind:* patterns the token grants.", false,
        false);
  o.add("admin", "false", "Mint an admin token (role: admin).", true, false);
  o.add("plan", "",
        "Plan claim for per-plan limits (e.g. free, pro, enterprise; see "
        "serve --plan-limits); empty: none.",
        false, false);
  o.add("ttl", "86400", "Token lifetime in seconds.", false, false);
}

result<std::string> client_token(const options& o) {
  if (auto t = o.str("token"); !t.empty())
    return t;
  auto secret = o.str("jwt-secret");
  if (secret.empty())
    return error_info{"CONFIG", "give --token, or --jwt-secret (or "
                                "TIDINGS_JWT_SECRET) to mint one"};
  protocol::token_request req;
  req.sub = o.str("sub");
  req.rooms = o.list("rooms");
  req.admin = o.flag("admin");
  req.plan = o.str("plan");
  req.iat = actors::unix_now();
  req.ttl_seconds = o.integer("ttl");
  return protocol::sign_hs256(req, secret);
}

std::uint16_t port_of(const options& o) {
  auto p = o.integer("port");
  if (p <= 0 || p > 65535)
    throw std::invalid_argument("--port must be 1..65535");
  return static_cast<std::uint16_t>(p);
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host == "::1")
    return true;
  in_addr a{};
  if (inet_pton(AF_INET, host.c_str(), &a) != 1)
    return false;
  return (ntohl(a.s_addr) >> 24) == 127;
}

} // namespace tidings::app
