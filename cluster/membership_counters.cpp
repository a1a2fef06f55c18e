#include "cluster/membership_counters.hpp"

#include <sstream>

namespace tidings::cluster {

std::string render_membership_metrics(const membership_counters& c) {
  std::ostringstream out;
  auto metric = [&](const char* name, const char* type, const char* help,
                    auto value) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' '
        << type << '\n'
        << name << ' ' << value << '\n';
  };
  metric("tidings_cluster_members_alive", "gauge",
         "Live cluster members as this node sees them, itself included.",
         c.members_alive.load());
  metric("tidings_cluster_view_version", "gauge",
         "Changes of this node's live member set since start.",
         c.view_version.load());
  metric("tidings_cluster_joins_total", "counter",
         "Members that joined or rejoined (new incarnation).", c.joins.load());
  metric("tidings_cluster_deaths_total", "counter",
         "Live members declared dead (silence or lost connection).",
         c.deaths.load());
  metric("tidings_cluster_leaves_total", "counter",
         "Members that left the cluster gracefully.", c.leaves.load());
  metric("tidings_cluster_heartbeats_sent_total", "counter",
         "Membership heartbeats sent.", c.heartbeats_sent.load());
  metric("tidings_cluster_heartbeats_received_total", "counter",
         "Membership heartbeats received.", c.heartbeats_received.load());
  metric("tidings_cluster_self_rejoins_total", "counter",
         "Times this node learned it had been declared dead and rejoined.",
         c.self_rejoins.load());
  metric("tidings_cluster_connect_failures_total", "counter",
         "Failed connection attempts to seeds or members.",
         c.connect_failures.load());
  metric("tidings_cluster_rejected_total", "counter",
         "Joins refused because the member table was full.", c.rejected.load());
  return out.str();
}

} // namespace tidings::cluster
