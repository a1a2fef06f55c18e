#include "app/bench_source.hpp"

#include <algorithm>

namespace tidings::app::bench {

namespace {

constexpr std::uint32_t first_source = 0x7f000001; // 127.0.0.1
constexpr std::uint64_t max_addresses = 0xfffffe;  // up to 127.255.255.254

} // namespace

std::optional<std::uint32_t>
source_plan::address_for(std::uint64_t index) const {
  if (per_address == 0)
    return std::nullopt;
  return static_cast<std::uint32_t>(first_source + index / per_address);
}

std::optional<std::string> plan_sources(std::uint64_t connections,
                                        std::uint64_t port_range,
                                        std::uint64_t per_address_max,
                                        source_plan* out) {
  *out = {};
  if (port_range == 0 || per_address_max == 0)
    return "no local ports to connect from (empty ip_local_port_range)";
  auto per = std::min(per_address_max, port_range);
  if (connections <= per)
    return std::nullopt;
  auto addresses = (connections + per - 1) / per;
  if (addresses > max_addresses)
    return std::to_string(connections) +
           " connections do not fit in 127.0.0.0/8";
  out->per_address = per;
  out->addresses = addresses;
  return std::nullopt;
}

std::string ipv4_text(std::uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 0xff) +
         "." + std::to_string((a >> 8) & 0xff) + "." + std::to_string(a & 0xff);
}

} // namespace tidings::app::bench
