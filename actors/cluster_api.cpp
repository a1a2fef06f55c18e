#include "actors/cluster_api.hpp"

#include "actors/http_replies.hpp"
#include "actors/room_directory.hpp"
#include "cluster/membership_messages.hpp"
#include "cluster/placement.hpp"
#include "protocol/errors.hpp"
#include "protocol/native.hpp"
#include "protocol/publish_request.hpp"
#include "protocol/room_id.hpp"
#include "protocol/uri.hpp"

#include <caf/all.hpp>

#include <chrono>
#include <map>
#include <optional>
#include <utility>
#include <vector>

namespace tidings::actors {

namespace {

using protocol::error_code;
using transport::http_response;

constexpr auto ask_timeout = std::chrono::seconds(2);

struct room_placement {
  std::string room;
  std::string owner;
  std::string replica;
};

/// The canonical ids of every `room=` in the query; nullopt when one is
/// not a valid room id or there are too many.
std::optional<std::vector<std::string>> queried_rooms(std::string_view query,
                                                      std::size_t max) {
  std::vector<std::string> out;
  while (!query.empty()) {
    auto amp = query.find('&');
    auto part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{}
                                          : query.substr(amp + 1);
    constexpr std::string_view key = "room=";
    if (part.substr(0, key.size()) != key)
      continue;
    auto text = protocol::percent_decode(part.substr(key.size()));
    auto id = text ? protocol::parse_room_id(*text) : std::nullopt;
    if (!id || out.size() == max)
      return std::nullopt;
    out.push_back(id->str());
  }
  return out;
}

std::string json_str(std::string_view s) {
  std::string out;
  protocol::append_json_string(out, s);
  return out;
}

/// What the reply reports when the cluster is off: this node alone.
cluster::membership_view single_node_view(const std::string& node_id) {
  cluster::membership_view v;
  v.live.push_back(node_id);
  cluster::member_status me;
  me.addr.node_id = node_id;
  v.members.push_back(std::move(me));
  return v;
}

std::string render(bool enabled, const std::string& node_id,
                   const cluster::membership_view& mv,
                   const std::vector<std::string>& local_rooms,
                   std::uint64_t placement_version,
                   const std::optional<std::vector<room_placement>>& lookups) {
  std::map<std::string, std::uint64_t> owned;
  for (auto& room : local_rooms)
    ++owned[cluster::owner_of(room, mv.live)];
  std::string out = "{\"enabled\":";
  out += enabled ? "true" : "false";
  out += ",\"node_id\":" + json_str(node_id);
  out += ",\"view_version\":" + std::to_string(mv.version);
  out += ",\"live\":" + json_string_array(mv.live);
  out += ",\"rooms_local\":" + std::to_string(local_rooms.size());
  out += ",\"members\":[";
  for (std::size_t i = 0; i < mv.members.size(); ++i) {
    auto& m = mv.members[i];
    bool is_self = m.addr.node_id == node_id;
    if (i)
      out += ',';
    out += "{\"node_id\":" + json_str(m.addr.node_id);
    out += ",\"state\":" + json_str(cluster::to_string(m.state));
    out += ",\"address\":";
    out += m.addr.port
               ? json_str(m.addr.host + ":" + std::to_string(m.addr.port))
               : std::string{"null"};
    out += ",\"incarnation\":" + std::to_string(m.addr.incarnation);
    out += ",\"last_heard_ms\":" +
           std::to_string(is_self ? 0 : std::max<std::int64_t>(m.silent_ms, 0));
    out += ",\"self\":";
    out += is_self ? "true" : "false";
    auto o = owned.find(m.addr.node_id);
    out +=
        ",\"rooms_owned\":" + std::to_string(o == owned.end() ? 0 : o->second) +
        "}";
  }
  out += "],\"placement_version\":" + std::to_string(placement_version);
  if (lookups) {
    out += ",\"rooms\":[";
    for (std::size_t i = 0; i < lookups->size(); ++i) {
      auto& p = (*lookups)[i];
      if (i)
        out += ',';
      out += "{\"room_id\":" + json_str(p.room) +
             ",\"owner\":" + json_str(p.owner) + ",\"replica\":" +
             (p.replica.empty() ? std::string{"null"} : json_str(p.replica)) +
             "}";
    }
    out += "]";
  }
  return out + "}";
}

} // namespace

cluster_api::cluster_api(caf::actor_system& sys, std::string node_id,
                         caf::actor membership, caf::actor directory,
                         std::shared_ptr<const placement_table> placement)
    : sys_(sys), node_id_(std::move(node_id)),
      membership_(std::move(membership)), directory_(std::move(directory)),
      placement_(std::move(placement)) {}

void cluster_api::handle(std::string_view query,
                         transport::http_responder respond) {
  auto rooms = queried_rooms(query, max_room_queries);
  if (!rooms)
    return respond(
        error_reply(error_code::invalid_room,
                    "room must be a valid room id, at most 200 per request"));
  // Placement answers come from the snapshot routing will use.
  auto view = placement_->current();
  std::optional<std::vector<room_placement>> lookups;
  if (protocol::query_param(query, "room")) {
    lookups.emplace();
    for (auto& r : *rooms)
      lookups->push_back(room_placement{r, view->owner(r), view->replica(r)});
  }
  sys_.spawn([membership = membership_, directory = directory_,
              node_id = node_id_, version = view->version,
              lookups = std::move(lookups),
              respond = std::move(respond)](caf::event_based_actor* self) {
    auto fail = [=](caf::error&) {
      respond(error_reply(error_code::unavailable));
    };
    auto with_view = [=](const cluster::membership_view& mv) {
      self->request(directory, ask_timeout, rooms_atom::value)
          .then(
              [=](const std::vector<std::string>& local) {
                http_response r;
                r.body = render(static_cast<bool>(membership), node_id, mv,
                                local, version, lookups);
                respond(std::move(r));
              },
              fail);
    };
    if (!membership)
      return with_view(single_node_view(node_id));
    self->request(membership, ask_timeout, cluster::cl_members_atom::value)
        .then([=](cluster::membership_view& mv) { with_view(mv); }, fail);
  });
}

} // namespace tidings::actors
