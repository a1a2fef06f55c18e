#include "app/bench_report.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <utility>

namespace tidings::app::bench {

namespace {

using ojson = nlohmann::ordered_json;
using field_list = std::vector<std::pair<std::string, ojson>>;

double ms(std::uint64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

ojson opt_json(const std::optional<std::uint64_t>& v) {
  return v ? ojson(*v) : ojson();
}

ojson opt_double(const std::optional<double>& v) {
  return v ? ojson(*v) : ojson();
}

ojson opt_ms(const std::optional<std::uint64_t>& ns) {
  return ns ? ojson(ms(*ns)) : ojson();
}

std::optional<double> growth_per_conn(const std::optional<std::uint64_t>& a,
                                      const std::optional<std::uint64_t>& b,
                                      std::uint64_t connections) {
  if (!a || !b || connections == 0)
    return std::nullopt;
  // Signed: a server that returned memory to the system shows it.
  return (static_cast<double>(*b) - static_cast<double>(*a)) /
         static_cast<double>(connections);
}

// Without connection state recovery a Socket.IO client loses what was
// sent while it was away: the storm then measures reconnects only.
bool missed_expected(const run_setup& s) {
  return s.mode == "storm" && s.protocol == "socketio" && !s.sio_recovery;
}

// Per-connection growth of the server's RSS during the connect phase.
std::optional<double> bytes_per_connection(const run_results& r) {
  const auto& a = r.server_before_connect.rss;
  const auto& b = r.server_after_connect.rss;
  if (!a || !b || r.connected == 0 || *b < *a)
    return std::nullopt;
  return static_cast<double>(*b - *a) / static_cast<double>(r.connected);
}

std::optional<double> server_core_share(const run_results& r) {
  if (!r.server_cpu_seconds || r.cpu_window_seconds <= 0)
    return std::nullopt;
  return *r.server_cpu_seconds / r.cpu_window_seconds;
}

void add_latency(field_list& f, const std::string& prefix, const histogram& h) {
  f.emplace_back(prefix + "p50_ms", ms(h.percentile(0.50)));
  f.emplace_back(prefix + "p90_ms", ms(h.percentile(0.90)));
  f.emplace_back(prefix + "p99_ms", ms(h.percentile(0.99)));
  f.emplace_back(prefix + "p999_ms", ms(h.percentile(0.999)));
  f.emplace_back(prefix + "max_ms", ms(h.max()));
}

field_list fields(const run_results& r) {
  const auto& s = r.setup;
  const auto& d = r.deliveries;
  field_list f;
  f.emplace_back("host", s.host);
  f.emplace_back("port", s.port);
  f.emplace_back("subscribers", s.subscribers);
  f.emplace_back("rooms", s.rooms);
  f.emplace_back("events", s.events);
  f.emplace_back("rate", s.rate);
  f.emplace_back("publishers", s.publishers);
  f.emplace_back("payload_bytes", s.payload_bytes);
  f.emplace_back("connected", r.connected);
  f.emplace_back("connect_failed", r.connect_failed);
  f.emplace_back("connect_s", r.connect_seconds);
  f.emplace_back("handshake_p50_ms", ms(r.handshake_ns.percentile(0.5)));
  f.emplace_back("handshake_p99_ms", ms(r.handshake_ns.percentile(0.99)));
  f.emplace_back("published", r.published);
  f.emplace_back("acked", r.acked);
  f.emplace_back("publish_errors", r.publish_errors);
  f.emplace_back("ack_p50_ms", ms(r.ack_ns.percentile(0.5)));
  f.emplace_back("ack_p99_ms", ms(r.ack_ns.percentile(0.99)));
  f.emplace_back("max_behind_schedule_ms", ms(r.max_behind_ns));
  f.emplace_back("expected", d.expected);
  f.emplace_back("received", d.received);
  f.emplace_back("window_s", r.window_seconds);
  f.emplace_back("deliveries_per_s", r.deliveries_per_second());
  add_latency(f, "latency_", r.latency_ns);
  f.emplace_back("missed", d.missed);
  f.emplace_back("duplicated", d.duplicated);
  f.emplace_back("misrouted", d.misrouted);
  f.emplace_back("out_of_order", d.out_of_order);
  f.emplace_back("unacked_deliveries", d.unacked);
  f.emplace_back("disconnected", r.disconnected);
  f.emplace_back("error_frames", r.error_frames);
  f.emplace_back("cpu_window_s", r.cpu_window_seconds);
  f.emplace_back("server_cpu_s",
                 r.server_cpu_seconds ? ojson(*r.server_cpu_seconds) : ojson());
  auto share = server_core_share(r);
  f.emplace_back("server_cpu_pct", share ? ojson(*share * 100) : ojson());
  f.emplace_back(
      "deliveries_per_server_cpu_s",
      r.server_cpu_seconds && *r.server_cpu_seconds > 0
          ? ojson(static_cast<double>(d.received) / *r.server_cpu_seconds)
          : ojson());
  f.emplace_back("server_rss_before_connect",
                 opt_json(r.server_before_connect.rss));
  f.emplace_back("server_rss_after_connect",
                 opt_json(r.server_after_connect.rss));
  auto per_conn = bytes_per_connection(r);
  f.emplace_back("server_rss_per_connection",
                 per_conn ? ojson(*per_conn) : ojson());
  f.emplace_back("server_rss_end", opt_json(r.server_end.rss));
  f.emplace_back("server_pss_end", opt_json(r.server_end.pss));
  f.emplace_back("bench_cpu_s", r.self_cpu_seconds);
  f.emplace_back("bench_cpu_pct",
                 r.cpu_window_seconds > 0
                     ? ojson(r.self_cpu_seconds / r.cpu_window_seconds * 100)
                     : ojson());
  f.emplace_back("timed_out", r.timed_out);
  f.emplace_back("ok", r.failures().empty());
  // Added with --mode/--protocol/--publish-method; appended so the columns
  // above keep their positions.
  f.emplace_back("mode", s.mode);
  f.emplace_back("protocol", s.protocol);
  f.emplace_back("publish_method", s.publish_method);
  f.emplace_back("sio_recovery", s.sio_recovery);
  f.emplace_back("source_addresses", r.source_addresses);
  f.emplace_back("idle_hold_s", s.idle_hold_seconds);
  f.emplace_back("server_pss_before_connect",
                 opt_json(r.server_before_connect.pss));
  f.emplace_back("server_rss_after_hold", opt_json(r.server_after_hold.rss));
  f.emplace_back("server_pss_after_hold", opt_json(r.server_after_hold.pss));
  f.emplace_back("rss_per_conn_bytes", opt_double(r.rss_per_conn()));
  f.emplace_back("pss_per_conn_bytes", opt_double(r.pss_per_conn()));
  f.emplace_back("bench_rss_bytes", opt_json(r.bench_rss));
  const auto& st = r.storm;
  f.emplace_back("storm_after_s", s.storm_after_seconds);
  f.emplace_back("storm_sent_before_drop", st.sent_before_drop);
  f.emplace_back("storm_dropped", st.dropped);
  f.emplace_back("storm_reconnected", st.reconnected);
  f.emplace_back("storm_reconnect_failed", st.reconnect_failed);
  f.emplace_back("storm_recovered", st.recovered);
  f.emplace_back("storm_caught_up", st.caught_up);
  f.emplace_back("storm_reconnect_ms", opt_ms(st.reconnect_ns));
  f.emplace_back("storm_catchup_ms", opt_ms(st.catchup_ns));
  return f;
}

std::string mb(std::uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB",
                static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

std::string error_summary(const std::map<std::string, std::uint64_t>& m) {
  std::string out;
  for (const auto& [what, n] : m) {
    if (!out.empty())
      out += "; ";
    out += what + " x" + std::to_string(n);
  }
  return out;
}

void print_memory(std::ostream& out, const run_results& r) {
  const auto& end = r.server_end;
  if (!end.rss && !end.pss)
    return;
  out << "server mem   ";
  if (end.rss)
    out << "RSS " << mb(*end.rss);
  if (end.pss)
    out << ", PSS " << mb(*end.pss);
  if (r.server_before_connect.rss)
    out << " (before connect " << mb(*r.server_before_connect.rss);
  if (auto per = bytes_per_connection(r)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "; +%.1f KB per connection", *per / 1024);
    out << buf;
  }
  if (r.server_before_connect.rss)
    out << ")";
  out << "\n";
}

void print_tail(std::ostream& out, const run_results& r) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "bench cpu    %.2f s = %.0f%% of a core",
                r.self_cpu_seconds,
                r.cpu_window_seconds > 0
                    ? r.self_cpu_seconds / r.cpu_window_seconds * 100
                    : 0.0);
  out << buf;
  if (r.bench_rss)
    out << ", RSS " << mb(*r.bench_rss);
  out << "\n";
  auto why = r.failures();
  out << "result       ";
  if (why.empty()) {
    out << "OK\n";
    return;
  }
  out << "FAILED:";
  for (std::size_t i = 0; i < why.size(); ++i)
    out << (i ? ", " : " ") << why[i];
  out << "\n";
}

// Idle mode: what the server holds per connection, nothing else ran.
void print_idle(std::ostream& out, const run_results& r) {
  char buf[256];
  auto line = [&](const char* what, const std::optional<std::uint64_t>& a,
                  const std::optional<std::uint64_t>& b,
                  const std::optional<double>& per) {
    if (!a || !b)
      return;
    std::snprintf(buf, sizeof buf,
                  "server %s   %s before connect, %s after the hold: %.0f "
                  "bytes per connection\n",
                  what, mb(*a).c_str(), mb(*b).c_str(), per ? *per : 0.0);
    out << buf;
  };
  line("RSS", r.server_before_connect.rss, r.server_after_hold.rss,
       r.rss_per_conn());
  line("PSS", r.server_before_connect.pss, r.server_after_hold.pss,
       r.pss_per_conn());
  if (r.server_cpu_seconds) {
    std::snprintf(buf, sizeof buf, "server cpu   %.2f s over the %.2f s hold\n",
                  *r.server_cpu_seconds, r.cpu_window_seconds);
    out << buf;
  }
  if (r.disconnected)
    out << "disconnected " << r.disconnected
        << " during the hold: " << error_summary(r.disconnect_reasons) << "\n";
}

void print_storm(std::ostream& out, const run_results& r) {
  const auto& st = r.storm;
  if (r.setup.mode != "storm")
    return;
  if (!st.happened) {
    out << "storm        did not happen (the run ended first)\n";
    return;
  }
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "storm        %llu dropped after %llu events sent; %llu "
                "resubscribed (%llu recovered), %llu failed\n",
                static_cast<unsigned long long>(st.dropped),
                static_cast<unsigned long long>(st.sent_before_drop),
                static_cast<unsigned long long>(st.reconnected),
                static_cast<unsigned long long>(st.recovered),
                static_cast<unsigned long long>(st.reconnect_failed));
  out << buf;
  out << "             ";
  if (st.reconnect_ns) {
    std::snprintf(buf, sizeof buf, "all resubscribed %.1f ms",
                  ms(*st.reconnect_ns));
    out << buf;
  } else {
    out << "not all resubscribed";
  }
  out << " after the drop; ";
  if (st.catchup_ns) {
    std::snprintf(buf, sizeof buf, "all caught up %.1f ms", ms(*st.catchup_ns));
    out << buf;
  } else {
    out << st.caught_up << " of " << st.reconnected << " caught up";
    if (missed_expected(r.setup))
      out << " (expected without --sio-recovery)";
  }
  out << "\n";
}

} // namespace

std::optional<double> run_results::rss_per_conn() const {
  return growth_per_conn(server_before_connect.rss, server_after_hold.rss,
                         connected);
}

std::optional<double> run_results::pss_per_conn() const {
  return growth_per_conn(server_before_connect.pss, server_after_hold.pss,
                         connected);
}

double run_results::deliveries_per_second() const {
  return window_seconds > 0
             ? static_cast<double>(deliveries.received) / window_seconds
             : 0.0;
}

std::vector<std::string> run_results::failures() const {
  std::vector<std::string> why;
  auto add = [&](std::uint64_t n, const char* what) {
    if (n)
      why.push_back(std::to_string(n) + " " + what);
  };
  if (timed_out)
    why.emplace_back("timed out");
  add(connect_failed, "connect failures");
  add(publish_errors, "publish errors");
  add(storm.reconnect_failed, "storm reconnect failures");
  // Idle figures are per connection held: a lost one skews them.
  if (setup.mode == "idle")
    add(disconnected, "disconnected during the hold");
  if (!missed_expected(setup)) {
    add(deliveries.missed, "missed");
    if (storm.happened)
      add(storm.reconnected > storm.caught_up
              ? storm.reconnected - storm.caught_up
              : 0,
          "not caught up after the storm");
  }
  add(deliveries.duplicated, "duplicated");
  add(deliveries.misrouted, "misrouted");
  // Per-room order is part of the delivery contract, so it fails a run too.
  add(deliveries.out_of_order, "out of order");
  return why;
}

void print_human(std::ostream& out, const run_results& r) {
  const auto& s = r.setup;
  const auto& d = r.deliveries;
  char buf[512];
  char rate[32] = "unpaced";
  if (s.rate > 0)
    std::snprintf(rate, sizeof rate, "at %g/s", s.rate);
  std::snprintf(buf, sizeof buf,
                "tidings bench  %s:%u  %s, %s%s  %llu subscribers / %llu "
                "room(s)",
                s.host.c_str(), s.port, s.mode.c_str(), s.protocol.c_str(),
                s.sio_recovery ? " (recovery)" : "",
                static_cast<unsigned long long>(s.subscribers),
                static_cast<unsigned long long>(s.rooms));
  out << buf;
  if (s.mode == "idle") {
    std::snprintf(buf, sizeof buf, ", held %g s\n", s.idle_hold_seconds);
  } else {
    std::snprintf(buf, sizeof buf, ", %llu events %s over %llu %s publishers\n",
                  static_cast<unsigned long long>(s.events), rate,
                  static_cast<unsigned long long>(s.publishers),
                  s.publish_method.c_str());
  }
  out << buf;
  if (r.source_addresses > 1)
    out << "             from " << r.source_addresses
        << " source addresses (127.0.0.1 and up)\n";
  std::snprintf(buf, sizeof buf,
                "connect      %llu ok, %llu failed in %.2f s (handshake p50 "
                "%.2f ms, p99 %.2f ms, max %.2f ms)\n",
                static_cast<unsigned long long>(r.connected),
                static_cast<unsigned long long>(r.connect_failed),
                r.connect_seconds, ms(r.handshake_ns.percentile(0.5)),
                ms(r.handshake_ns.percentile(0.99)), ms(r.handshake_ns.max()));
  out << buf;
  if (!r.connect_errors.empty())
    out << "             errors: " << error_summary(r.connect_errors) << "\n";
  if (s.mode == "idle") {
    print_idle(out, r);
    print_tail(out, r);
    return;
  }
  std::snprintf(buf, sizeof buf,
                "publish      %llu sent, %llu acked, %llu errors (ack p50 "
                "%.2f ms, p99 %.2f ms; worst %.1f ms behind schedule)\n",
                static_cast<unsigned long long>(r.published),
                static_cast<unsigned long long>(r.acked),
                static_cast<unsigned long long>(r.publish_errors),
                ms(r.ack_ns.percentile(0.5)), ms(r.ack_ns.percentile(0.99)),
                ms(r.max_behind_ns));
  out << buf;
  if (!r.publish_error_kinds.empty())
    out << "             errors: " << error_summary(r.publish_error_kinds)
        << "\n";
  std::snprintf(buf, sizeof buf,
                "deliveries   %llu of %llu expected in %.2f s = %.0f/s\n",
                static_cast<unsigned long long>(d.received),
                static_cast<unsigned long long>(d.expected), r.window_seconds,
                r.deliveries_per_second());
  out << buf;
  const auto& l = r.latency_ns;
  std::snprintf(buf, sizeof buf,
                "latency ms   p50 %.3f  p90 %.3f  p99 %.3f  p999 %.3f  max "
                "%.3f\n",
                ms(l.percentile(0.5)), ms(l.percentile(0.9)),
                ms(l.percentile(0.99)), ms(l.percentile(0.999)), ms(l.max()));
  out << buf;
  std::snprintf(buf, sizeof buf,
                "integrity    missed %llu  duplicated %llu  misrouted %llu  "
                "out-of-order %llu  disconnected %llu  error frames %llu\n",
                static_cast<unsigned long long>(d.missed),
                static_cast<unsigned long long>(d.duplicated),
                static_cast<unsigned long long>(d.misrouted),
                static_cast<unsigned long long>(d.out_of_order),
                static_cast<unsigned long long>(r.disconnected),
                static_cast<unsigned long long>(r.error_frames));
  out << buf;
  if (!r.disconnect_reasons.empty())
    out << "             disconnects: " << error_summary(r.disconnect_reasons)
        << "\n";
  if (auto share = server_core_share(r)) {
    std::snprintf(buf, sizeof buf,
                  "server cpu   %.2f s over %.2f s = %.0f%% of a core, %.0f "
                  "deliveries per CPU-second\n",
                  *r.server_cpu_seconds, r.cpu_window_seconds, *share * 100,
                  *r.server_cpu_seconds > 0
                      ? static_cast<double>(d.received) / *r.server_cpu_seconds
                      : 0.0);
    out << buf;
  } else if (!r.server_pids.empty()) {
    out << "server cpu   unavailable (process gone or unreadable)\n";
  }
  print_storm(out, r);
  print_memory(out, r);
  print_tail(out, r);
}

void print_json(std::ostream& out, const run_results& r) {
  // ordered_json keeps the field order of the CSV columns.
  ojson j = ojson::object();
  for (auto& [k, v] : fields(r))
    j[k] = v;
  ojson errors = ojson::object();
  for (const auto& [what, n] : r.connect_errors)
    errors["connect"][what] = n;
  for (const auto& [what, n] : r.publish_error_kinds)
    errors["publish"][what] = n;
  for (const auto& [what, n] : r.disconnect_reasons)
    errors["disconnect"][what] = n;
  j["errors"] = errors;
  j["failures"] = r.failures();
  out << j.dump() << "\n";
}

void print_csv(std::ostream& out, const run_results& r, bool header) {
  auto f = fields(r);
  if (header) {
    for (std::size_t i = 0; i < f.size(); ++i)
      out << (i ? "," : "") << f[i].first;
    out << "\n";
  }
  for (std::size_t i = 0; i < f.size(); ++i) {
    out << (i ? "," : "");
    const auto& v = f[i].second;
    if (v.is_null())
      continue;
    // Strings here are host names and such: no commas or quotes to escape.
    out << (v.is_string() ? v.get<std::string>() : v.dump());
  }
  out << "\n";
}

} // namespace tidings::app::bench
