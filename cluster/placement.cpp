#include "cluster/placement.hpp"

#include <algorithm>
#include <utility>

namespace tidings::cluster {

namespace {

// 64-bit FNV-1a, then a splitmix64 finaliser: FNV alone clusters badly on
// short keys that differ only at the end ("node-1", "node-2").
std::uint64_t fnv1a(std::uint64_t h, std::string_view s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::uint64_t mix(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

} // namespace

std::uint64_t placement_weight(std::string_view node, std::string_view room) {
  auto h = fnv1a(0xcbf29ce484222325ULL, node);
  h = fnv1a(h ^ 0xff, room); // separator: ("ab","c") != ("a","bc")
  return mix(h);
}

std::vector<std::string> rank_members(std::string_view room,
                                      const std::vector<std::string>& members) {
  std::vector<std::pair<std::uint64_t, const std::string*>> w;
  w.reserve(members.size());
  for (const auto& m : members)
    w.emplace_back(placement_weight(m, room), &m);
  std::sort(w.begin(), w.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : *a.second < *b.second;
  });
  std::vector<std::string> out;
  out.reserve(w.size());
  for (auto& [weight, name] : w)
    out.push_back(*name);
  return out;
}

std::string owner_of(std::string_view room,
                     const std::vector<std::string>& members) {
  const std::string* best = nullptr;
  std::uint64_t best_w = 0;
  for (const auto& m : members) {
    auto w = placement_weight(m, room);
    if (!best || w > best_w || (w == best_w && m < *best)) {
      best = &m;
      best_w = w;
    }
  }
  return best ? *best : std::string{};
}

} // namespace tidings::cluster
