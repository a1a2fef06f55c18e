// The `tidings` subcommands. Each takes argv starting at the subcommand
// (argv[0] is e.g. "tidings serve") and returns the process exit code.
#pragma once

namespace tidings::app {

int cmd_serve(int argc, char** argv);
int cmd_token(int argc, char** argv);
int cmd_publish(int argc, char** argv);
int cmd_tail(int argc, char** argv);
int cmd_demo(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_codes(int argc, char** argv);

} // namespace tidings::app
