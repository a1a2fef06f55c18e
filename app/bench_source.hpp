// Source addresses for `tidings bench` when one address cannot hold every
// connection: towards one server address and port, each connection needs a
// local port of its own, and the ephemeral range (net.ipv4.ip_local_port_
// range) holds about 28,000. The whole of 127.0.0.0/8 reaches the loopback
// interface, so connection i binds to 127.0.0.(1 + i / per_address) and the
// range applies per source address. Pure, so it is tested alone.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace tidings::app::bench {

/// Connections per source address when binding; below the default range
/// (28,232 ports) with room for TIME_WAIT leftovers of a reconnect storm
/// and for whatever else uses the range.
inline constexpr std::uint64_t default_per_source_address = 20'000;

/// How connections map to source addresses.
struct source_plan {
  /// 0: do not bind (the kernel picks 127.0.0.1 and a port, as before).
  std::uint64_t per_address = 0;
  std::uint64_t addresses = 1;

  /// IPv4 address (host byte order) for connection `index`, or nullopt
  /// when not binding.
  std::optional<std::uint32_t> address_for(std::uint64_t index) const;
};

/// Plans `connections` to one IPv4 loopback server. `port_range` is the
/// size of the ephemeral range. Binding starts once the connections exceed
/// min(per_address_max, port_range). An error text when even 127.0.0.0/8
/// (minus 127.0.0.0 and broadcast) is too small, or the range is empty.
std::optional<std::string> plan_sources(std::uint64_t connections,
                                        std::uint64_t port_range,
                                        std::uint64_t per_address_max,
                                        source_plan* out);

/// Dotted text of an IPv4 address in host byte order.
std::string ipv4_text(std::uint32_t address);

} // namespace tidings::app::bench
