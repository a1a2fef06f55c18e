// Declarative command-line options shared by every subcommand. One table
// gives flags, environment variables (TIDINGS_ prefix), config-file keys and
// the --help text with defaults, so they cannot disagree.
//
// Precedence, lowest to highest: default, config file (--config FILE),
// environment, command line.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace tidings::app {

class options {
 public:
  /// `name` is the long flag without dashes (`max-queue-bytes`); its env
  /// variable is TIDINGS_MAX_QUEUE_BYTES when `env` is true; its config-file
  /// key is the name itself. Flags (`is_flag`) take no value on the command
  /// line and are "true"/"false" elsewhere.
  void add(std::string name, std::string default_value, std::string help,
           bool is_flag = false, bool env = true);

  /// Parses argv (argv[0] is skipped). Non-option words go to `positional`.
  /// Returns an error text, or nullopt. Sets `help_requested()` on -h/--help.
  std::optional<std::string> parse(int argc, char** argv,
                                   std::vector<std::string>* positional);

  bool help_requested() const { return help_; }
  std::string help(const std::string& usage) const;

  std::string str(const std::string& name) const;
  /// Integer with optional K/M/G (1024-based) suffix; throws
  /// std::invalid_argument naming the option on a bad value.
  std::int64_t integer(const std::string& name) const;
  double number(const std::string& name) const;
  bool flag(const std::string& name) const;
  /// Comma-separated list; empty entries dropped.
  std::vector<std::string> list(const std::string& name) const;

  /// Where the value came from: "default", "file", "env" or "flag".
  std::string source(const std::string& name) const;

 private:
  struct spec {
    std::string name;
    std::string def;
    std::string help;
    bool is_flag;
    bool env;
    std::string value;
    std::string source = "default";
  };
  spec* find(const std::string& name);
  const spec& get(const std::string& name) const;
  std::optional<std::string> load_file(const std::string& path);

  std::vector<spec> specs_;
  bool help_ = false;
};

/// TIDINGS_ + upper-case name with '-' turned into '_'.
std::string env_name(const std::string& option_name);

} // namespace tidings::app
