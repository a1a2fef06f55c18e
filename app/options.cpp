#include "app/options.hpp"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace tidings::app {

namespace {

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos)
    return {};
  auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

} // namespace

std::string env_name(const std::string& option_name) {
  std::string out = "TIDINGS_";
  for (char c : option_name)
    out += c == '-'
               ? '_'
               : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

void options::add(std::string name, std::string default_value, std::string help,
                  bool is_flag, bool env) {
  spec s{std::move(name), default_value, std::move(help),
         is_flag,         env,           default_value};
  specs_.push_back(std::move(s));
}

options::spec* options::find(const std::string& name) {
  for (auto& s : specs_)
    if (s.name == name)
      return &s;
  return nullptr;
}

const options::spec& options::get(const std::string& name) const {
  for (auto& s : specs_)
    if (s.name == name)
      return s;
  throw std::logic_error("undeclared option: " + name);
}

std::optional<std::string> options::load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return "cannot read config file " + path;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    auto t = trim(line);
    if (t.empty() || t[0] == '#')
      continue;
    auto eq = t.find('=');
    if (eq == std::string::npos)
      return path + ":" + std::to_string(lineno) + ": expected key = value";
    auto key = trim(t.substr(0, eq));
    auto val = trim(t.substr(eq + 1));
    if (val.size() >= 2 && val.front() == '"' && val.back() == '"')
      val = val.substr(1, val.size() - 2);
    auto* s = find(key);
    if (!s)
      return path + ":" + std::to_string(lineno) + ": unknown key '" + key +
             "'";
    s->value = val;
    s->source = "file";
  }
  return std::nullopt;
}

std::optional<std::string>
options::parse(int argc, char** argv, std::vector<std::string>* positional) {
  // Pass 1: find --config so the file sits below env and flags.
  std::string config_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc)
      config_path = argv[i + 1];
    else if (a.rfind("--config=", 0) == 0)
      config_path = a.substr(9);
  }
  if (config_path.empty() && find("config") != nullptr) {
    if (auto* e = std::getenv(env_name("config").c_str()))
      config_path = e;
  }
  if (!config_path.empty())
    if (auto err = load_file(config_path))
      return err;
  for (auto& s : specs_) {
    if (!s.env)
      continue;
    if (auto* e = std::getenv(env_name(s.name).c_str())) {
      s.value = e;
      s.source = "env";
    }
  }
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      help_ = true;
      continue;
    }
    if (a == "--") {
      for (++i; i < argc; ++i)
        if (positional)
          positional->emplace_back(argv[i]);
      break;
    }
    if (a.size() < 3 || a.compare(0, 2, "--") != 0) {
      if (!positional)
        return "unexpected argument '" + a + "'";
      positional->push_back(a);
      continue;
    }
    auto name = a.substr(2);
    std::optional<std::string> inline_value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (name == "config") {
      if (!inline_value)
        ++i;
      continue;
    }
    auto* s = find(name);
    bool negated = false;
    if (!s && name.rfind("no-", 0) == 0) {
      s = find(name.substr(3));
      negated = s && s->is_flag;
      if (!negated)
        s = nullptr;
    }
    if (!s)
      return "unknown option --" + name;
    if (s->is_flag) {
      s->value = inline_value ? *inline_value : (negated ? "false" : "true");
    } else if (inline_value) {
      s->value = *inline_value;
    } else {
      if (i + 1 >= argc)
        return "option --" + name + " needs a value";
      s->value = argv[++i];
    }
    s->source = "flag";
  }
  return std::nullopt;
}

std::string options::help(const std::string& usage) const {
  std::ostringstream out;
  out << "usage: " << usage << "\n\noptions (flag / environment / default):\n";
  for (auto& s : specs_) {
    out << "  --" << s.name;
    if (!s.is_flag)
      out << " <value>";
    out << "\n      " << s.help << "\n      ";
    if (s.env)
      out << "env " << env_name(s.name) << ", ";
    out << "default: " << (s.def.empty() ? "(empty)" : s.def) << "\n";
  }
  out << "  --config <file>\n      key = value lines with the option names "
         "above; # starts a comment\n  -h, --help\n";
  return out.str();
}

std::string options::str(const std::string& name) const {
  return get(name).value;
}

std::int64_t options::integer(const std::string& name) const {
  auto v = trim(get(name).value);
  if (v.empty())
    throw std::invalid_argument("--" + name + ": expected an integer");
  std::int64_t mult = 1;
  switch (v.back()) {
  case 'k':
  case 'K':
    mult = 1024;
    v.pop_back();
    break;
  case 'm':
  case 'M':
    mult = 1024 * 1024;
    v.pop_back();
    break;
  case 'g':
  case 'G':
    mult = 1024LL * 1024 * 1024;
    v.pop_back();
    break;
  default:
    break;
  }
  std::size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(v, &used);
  } catch (const std::exception&) {
    throw std::invalid_argument("--" + name + ": expected an integer, got '" +
                                get(name).value + "'");
  }
  if (used != v.size())
    throw std::invalid_argument("--" + name + ": expected an integer, got '" +
                                get(name).value + "'");
  return n * mult;
}

double options::number(const std::string& name) const {
  const auto& v = get(name).value;
  std::size_t used = 0;
  double d = 0;
  try {
    d = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size())
    throw std::invalid_argument("--" + name + ": expected a number, got '" + v +
                                "'");
  return d;
}

bool options::flag(const std::string& name) const {
  const auto& v = get(name).value;
  if (v == "true" || v == "1" || v == "yes" || v == "on")
    return true;
  if (v == "false" || v == "0" || v == "no" || v == "off" || v.empty())
    return false;
  throw std::invalid_argument("--" + name + ": expected true or false, got '" +
                              v + "'");
}

std::vector<std::string> options::list(const std::string& name) const {
  std::vector<std::string> out;
  std::stringstream ss(get(name).value);
  std::string item;
  while (std::getline(ss, item, ','))
    if (auto t = trim(item); !t.empty())
      out.push_back(t);
  return out;
}

std::string options::source(const std::string& name) const {
  return get(name).source;
}

} // namespace tidings::app
