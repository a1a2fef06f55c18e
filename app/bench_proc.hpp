// CPU and memory readings for `tidings bench`: the server's (one or more
// PIDs, from /proc) and the bench's own (getrusage). A pair of readings
// taken at the start and end of the publish window gives CPU seconds spent
// in it; the generator shares the cores with the server, so both matter.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tidings::app::bench {

/// utime + stime of the processes, in seconds; nullopt when there are none
/// or any of them is gone or unreadable (a partial sum would understate the
/// cost).
std::optional<double> process_cpu_seconds(const std::vector<int>& pids);

/// Summed over the processes, in bytes; nullopt when a file is unreadable.
/// PSS matters for servers whose workers share memory (nginx's shm zone):
/// summed RSS counts a shared page once per process, summed PSS once.
struct memory_reading {
  std::optional<std::uint64_t> rss; // /proc/PID/status VmRSS
  std::optional<std::uint64_t> pss; // /proc/PID/smaps_rollup Pss
};
memory_reading process_memory(const std::vector<int>& pids);

/// This process's utime + stime (RUSAGE_SELF), in seconds.
double self_cpu_seconds();

/// This process's resident set now (/proc/self/status VmRSS), in bytes.
std::optional<std::uint64_t> self_rss();

/// Parses "1234,5678" into PIDs; an error text on anything else.
std::optional<std::string> parse_pids(const std::vector<std::string>& words,
                                      std::vector<int>* out);

} // namespace tidings::app::bench
