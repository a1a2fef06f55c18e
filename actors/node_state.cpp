#include "actors/node_state.hpp"

#include <sstream>

namespace tidings::actors {

void node_state::connection_opened(const std::string& user) {
  std::lock_guard<std::mutex> guard{mtx_};
  ++connections_;
  ++users_[user].connections;
}

void node_state::connection_closed(const std::string& user) {
  std::lock_guard<std::mutex> guard{mtx_};
  --connections_;
  auto i = users_.find(user);
  if (i == users_.end())
    return;
  if (--i->second.connections == 0 && i->second.rooms.empty())
    users_.erase(i);
}

void node_state::joined(const std::string& user, const std::string& room) {
  std::lock_guard<std::mutex> guard{mtx_};
  ++users_[user].rooms[room];
}

void node_state::left(const std::string& user, const std::string& room) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto u = users_.find(user);
  if (u == users_.end())
    return;
  auto r = u->second.rooms.find(room);
  if (r != u->second.rooms.end() && --r->second == 0)
    u->second.rooms.erase(r);
  if (u->second.connections == 0 && u->second.rooms.empty())
    users_.erase(u);
}

void node_state::room_active(const std::string& room, bool active) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (active)
    active_rooms_[room] = true;
  else
    active_rooms_.erase(room);
}

std::uint64_t node_state::total_connections() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return connections_;
}

std::uint64_t node_state::user_connections(const std::string& user) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = users_.find(user);
  return i == users_.end() ? 0 : i->second.connections;
}

std::vector<std::string> node_state::user_rooms(const std::string& user) const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<std::string> out;
  auto i = users_.find(user);
  if (i != users_.end())
    for (auto& [room, n] : i->second.rooms)
      out.push_back(room);
  return out;
}

std::vector<std::string> node_state::active_rooms() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<std::string> out;
  out.reserve(active_rooms_.size());
  for (auto& [room, on] : active_rooms_)
    out.push_back(room);
  return out;
}

std::size_t node_state::active_room_count() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return active_rooms_.size();
}

std::string node_state::render_metrics() const {
  std::ostringstream out;
  auto metric = [&](const char* name, const char* type, const char* help,
                    auto value) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' '
        << type << '\n'
        << name << ' ' << value << '\n';
  };
  const auto& c = counters;
  metric("tidings_connections", "gauge", "Authenticated WebSocket connections.",
         total_connections());
  metric("tidings_connections_total", "counter",
         "Authenticated connections since start.", c.connections_total.load());
  metric("tidings_auth_failures_total", "counter",
         "Connections refused for a bad, missing or late token.",
         c.auth_failures.load());
  metric("tidings_rooms_active", "gauge", "Rooms with at least one subscriber.",
         active_room_count());
  metric("tidings_room_actors", "gauge", "Room actors alive on this node.",
         c.rooms_alive.load());
  metric("tidings_messages_in_total", "counter", "Client commands received.",
         c.messages_in.load());
  metric("tidings_publications_total", "counter",
         "Publications committed to history and fanned out.",
         c.publications.load());
  metric("tidings_publish_errors_total", "counter",
         "Publications refused or failed after validation.",
         c.publish_errors.load());
  metric("tidings_messages_out_total", "counter",
         "Event frames handed to sessions (one per subscriber per event).",
         c.deliveries.load());
  metric("tidings_message_bytes_out_total", "counter",
         "Bytes of event frames handed to sessions.", c.delivery_bytes.load());
  metric("tidings_deliveries_dropped_total", "counter",
         "Event frames a closing or slow session refused.",
         c.dropped_deliveries.load());
  metric("tidings_errors_total", "counter", "Error frames sent to clients.",
         c.errors_sent.load());
  metric("tidings_rate_limited_total", "counter",
         "Client commands dropped by the per-connection rate limit.",
         c.rate_limited.load());
  metric("tidings_history_commits_total", "counter",
         "History transactions committed (group commits).",
         c.history_commits.load());
  metric("tidings_history_rows_total", "counter", "History rows committed.",
         c.history_rows.load());
  metric("tidings_cluster_forwarded_publishes_total", "counter",
         "Publishes this node forwarded to the room's owner.",
         c.forwarded_publishes.load());
  metric("tidings_cluster_forwarded_events_total", "counter",
         "Events owners here sent to other nodes' fan-out (one per node).",
         c.forwarded_events.load());
  metric("tidings_cluster_mirrored_events_total", "counter",
         "Events received from other nodes' owners for local subscribers.",
         c.mirrored_events.load());
  metric("tidings_cluster_replicated_rows_total", "counter",
         "History rows stored here as a replica.", c.replicated_rows.load());
  metric("tidings_cluster_replication_sent_total", "counter",
         "History rows owners here sent to their replica.",
         c.replication_sent.load());
  metric("tidings_cluster_replication_failures_total", "counter",
         "Replica appends that failed or found a gap.",
         c.replication_failures.load());
  metric("tidings_cluster_takeovers_total", "counter",
         "Rooms this node began to own after the view changed.",
         c.takeovers.load());
  metric("tidings_cluster_owned_rooms", "gauge",
         "Room actors owning their room here.", c.owned_rooms.load());
  metric("tidings_cluster_mirror_rooms", "gauge",
         "Room actors serving local subscribers of a room owned elsewhere.",
         c.mirror_rooms.load());
  metric("tidings_cluster_replication_lag_events", "gauge",
         "Most events an owner here had unacknowledged by its replica.",
         c.replication_lag.load());
  return out.str();
}

} // namespace tidings::actors
