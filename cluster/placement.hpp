// Room placement: rendezvous (highest-random-weight) hashing of a room id
// over the live members. Pure and deterministic: every node that sees the
// same member set computes the same owner and replica without talking.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tidings::cluster {

/// The weight of `node` for `room`; higher wins. Stable across processes,
/// platforms and releases (it is part of the cluster's wire contract).
std::uint64_t placement_weight(std::string_view node, std::string_view room);

/// Members ordered by weight for `room`, best first: [0] owns the room,
/// [1] holds its replica. Ties (practically impossible) break by node name.
std::vector<std::string> rank_members(std::string_view room,
                                      const std::vector<std::string>& members);

/// The owner of `room`, or an empty string when there are no members.
std::string owner_of(std::string_view room,
                     const std::vector<std::string>& members);

} // namespace tidings::cluster
