// `tidings token`: mint a dev HS256 token for a user and rooms.
#include "app/cli_common.hpp"
#include "app/commands.hpp"

#include <cstdio>
#include <stdexcept>

namespace tidings::app {

int cmd_token(int argc, char** argv) {
  options o;
  add_token_options(o);
  if (auto err = o.parse(argc, argv, nullptr)) {
    std::fprintf(stderr, "tidings token: %s\n", err->c_str());
    return 2;
  }
  if (o.help_requested()) {
    std::fputs(
        o.help("tidings token --jwt-secret S [--sub U] [--rooms R,…]").c_str(),
        stdout);
    return 0;
  }
  try {
    auto tok = client_token(o);
    if (!tok) {
      std::fprintf(stderr, "tidings token: %s\n", tok.error().message.c_str());
      return 2;
    }
    std::printf("%s\n", tok->c_str());
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "tidings token: %s\n", e.what());
    return 2;
  }
  return 0;
}

} // namespace tidings::app
