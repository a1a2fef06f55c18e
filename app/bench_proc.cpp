#include "app/bench_proc.hpp"

#include <charconv>
#include <fstream>
#include <sstream>

#include <sys/resource.h>
#include <unistd.h>

namespace tidings::app::bench {

namespace {

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<double> cpu_seconds_of(int pid) {
  auto text = read_text("/proc/" + std::to_string(pid) + "/stat");
  if (!text)
    return std::nullopt;
  // The command name (field 2) may hold spaces and ')': fields are counted
  // from the last ')'. utime and stime are fields 14 and 15.
  auto close = text->rfind(')');
  if (close == std::string::npos)
    return std::nullopt;
  std::istringstream fields(text->substr(close + 2));
  std::string skip;
  for (int field = 3; field < 14; ++field)
    fields >> skip;
  unsigned long long utime = 0;
  unsigned long long stime = 0;
  if (!(fields >> utime >> stime))
    return std::nullopt;
  static const long ticks = sysconf(_SC_CLK_TCK);
  return static_cast<double>(utime + stime) / static_cast<double>(ticks);
}

// Value in kB of the line starting with `key` (e.g. "VmRSS:"), in bytes.
std::optional<std::uint64_t> kb_field(const std::string& path,
                                      const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) != 0)
      continue;
    std::istringstream rest(line.substr(key.size()));
    std::uint64_t kb = 0;
    if (rest >> kb)
      return kb * 1024;
    return std::nullopt;
  }
  return std::nullopt;
}

// Sums a per-PID reading; one missing value makes the sum missing.
template <class F>
std::optional<std::uint64_t> sum_over(const std::vector<int>& pids, F read) {
  std::uint64_t total = 0;
  for (int pid : pids) {
    auto v = read("/proc/" + std::to_string(pid));
    if (!v)
      return std::nullopt;
    total += *v;
  }
  return total;
}

} // namespace

std::optional<double> process_cpu_seconds(const std::vector<int>& pids) {
  if (pids.empty())
    return std::nullopt;
  double total = 0;
  for (int pid : pids) {
    auto s = cpu_seconds_of(pid);
    if (!s)
      return std::nullopt;
    total += *s;
  }
  return total;
}

memory_reading process_memory(const std::vector<int>& pids) {
  memory_reading m;
  if (pids.empty())
    return m;
  m.rss = sum_over(pids, [](const std::string& dir) {
    return kb_field(dir + "/status", "VmRSS:");
  });
  m.pss = sum_over(pids, [](const std::string& dir) {
    return kb_field(dir + "/smaps_rollup", "Pss:");
  });
  return m;
}

double self_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) +
           static_cast<double>(tv.tv_usec) / 1e6;
  };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

std::optional<std::uint64_t> self_rss() {
  return kb_field("/proc/self/status", "VmRSS:");
}

std::optional<std::string> parse_pids(const std::vector<std::string>& words,
                                      std::vector<int>* out) {
  for (const auto& w : words) {
    int pid = 0;
    auto [end, ec] = std::from_chars(w.data(), w.data() + w.size(), pid);
    if (ec != std::errc{} || end != w.data() + w.size() || pid <= 0)
      return "--server-pid: expected process ids, got '" + w + "'";
    out->push_back(pid);
  }
  return std::nullopt;
}

} // namespace tidings::app::bench
