// `tidings codes`: the error and close code table, as Markdown. The README's
// table is this output, so code and docs come from the same entries.
#include "app/commands.hpp"
#include "protocol/errors.hpp"

#include <cstdio>

namespace tidings::app {

int cmd_codes(int, char**) {
  using namespace tidings::protocol;
  std::printf("| error_code | HTTP | message |\n|---|---|---|\n");
  for (auto* e = error_table_begin(); e != error_table_end(); ++e)
    std::printf("| `%.*s` | %u | %.*s |\n", static_cast<int>(e->name.size()),
                e->name.data(), e->http_status,
                static_cast<int>(e->message.size()), e->message.data());
  std::printf("\n| close code | name | reason |\n|---|---|---|\n");
  for (auto* c = close_table_begin(); c != close_table_end(); ++c)
    std::printf("| %u | `%.*s` | %.*s |\n", static_cast<unsigned>(c->code),
                static_cast<int>(c->name.size()), c->name.data(),
                static_cast<int>(c->reason.size()), c->reason.data());
  return 0;
}

} // namespace tidings::app
