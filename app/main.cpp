// `tidings <subcommand> …`: dispatch only.
#include "app/commands.hpp"

#include <cstdio>
#include <cstring>

namespace {

const char* usage =
    "usage: tidings <command> [options]\n\n"
    "commands:\n"
    "  serve    run a node (HTTP + WebSocket)\n"
    "  token    mint a dev token for a user and rooms\n"
    "  publish  publish an event through the HTTP API\n"
    "  tail     subscribe to a room and print its events\n"
    "  demo     publish a simulated workflow execution\n"
    "  bench    load generator: subscribers, publish rate, latency\n"
    "  codes    print the error and close code table\n\n"
    "`tidings <command> --help` lists a command's options.\n";

} // namespace

int main(int argc, char** argv) {
  using namespace tidings::app;
  if (argc < 2 || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "--help")) {
    std::fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  struct entry {
    const char* name;
    int (*fn)(int, char**);
  };
  static const entry commands[] = {
      {"serve", cmd_serve}, {"token", cmd_token}, {"publish", cmd_publish},
      {"tail", cmd_tail},   {"demo", cmd_demo},   {"bench", cmd_bench},
      {"codes", cmd_codes},
  };
  for (auto& c : commands)
    if (!std::strcmp(argv[1], c.name))
      return c.fn(argc - 1, argv + 1);
  std::fprintf(stderr, "tidings: unknown command '%s'\n\n%s", argv[1], usage);
  return 2;
}
