#!/usr/bin/env bash
# Cross-node fan-out against a single node, side by side in one run.
#
#   scripts/bench-cluster.sh [--reps N] [--subscribers N] [--events N] [--rate R]
#
# Two set-ups, alternating, each run --reps times (default 3) with the same
# `tidings bench` load (default 1,000 subscribers in one room, 1,000 events at
# 100/s, HTTP publishes):
#   single   one node, no cluster;
#   cluster  three nodes on loopback; the room is owned by node 3, its replica
#            is node 2 or 1, and every subscriber and every publish goes to
#            node 1. Each event therefore crosses nodes three times: the
#            publish is forwarded to the owner, replicated, and sent back once
#            to node 1's mirror, which fans it out to its sessions.
# Server CPU is summed over every node of the set-up. Results (CSV per run and
# a summary of medians with cluster/single ratios) go to
# bench/results/cluster-<UTC time>/. Uses TIDINGS_BIN or build/app/tidings.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

reps=3; subs=1000; events=1000; rate=100
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="$2"; shift 2 ;;
    --subscribers) subs="$2"; shift 2 ;;
    --events) events="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-cluster: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

tidings="${TIDINGS_BIN:-$root/build/app/tidings}"
if [ ! -x "$tidings" ]; then
  "$root/scripts/build.sh"
fi
out="$root/bench/results/cluster-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
work="$(mktemp -d)"
secret="bench-secret-$(date +%s%N)"
api_key="bench-key-$(date +%s%N)"
pids=()

stop_all() {
  local p
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # port pid
  local i
  for i in $(seq 1 200); do
    if ! kill -0 "$2" 2>/dev/null; then echo "bench-cluster: a node exited; see $work" >&2; return 1; fi
    if curl -fsS -o /dev/null "http://127.0.0.1:$1/healthz" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "bench-cluster: node on port $1 not ready" >&2; return 1
}

# Starts node $1 (1-based) of a set-up; $2: extra serve args. Appends to
# pids and ports.
start_node() {
  local k="$1"; shift
  local port; port="$(free_port)"
  mkdir -p "$work/n$k"
  "$tidings" serve --host 127.0.0.1 --port "$port" --node-id "node$k" \
    --data-dir "$work/n$k" --jwt-secret "$secret" --api-key "$api_key" \
    "$@" >"$work/n$k.log" 2>&1 &
  pids+=("$!")
  ports+=("$port")
  wait_http "$port" "$!"
}

run_bench() { # label rep port prefix
  local csv="$out/$1-$2.csv"
  local spids; spids="$(IFS=,; echo "${pids[*]}")"
  timeout -k 10 600 "$tidings" bench --host 127.0.0.1 --port "$3" \
    --subscribers "$subs" --rooms 1 --events "$events" --rate "$rate" \
    --publishers 4 --drain 30 --timeout 300 \
    --secret "$secret" --api-key "$api_key" --room-prefix "$4" \
    --server-pid "$spids" --format csv --csv-header >"$csv" 2>"$work/bench.log" || {
      echo "bench-cluster: bench failed:" >&2; tail -5 "$work/bench.log" >&2; tail -5 "$work"/n*.log >&2; return 1; }
  echo "$1 rep $2: $(tail -1 "$csv" | cut -c1-200)"
}

token_for_admin() {
  "$tidings" token --jwt-secret "$secret" --sub bench-admin --admin 2>/dev/null | tail -1
}

for rep in $(seq 1 "$reps"); do
  # single
  ports=()
  start_node 1
  run_bench single "$rep" "${ports[0]}" "bench:"
  stop_all; rm -rf "$work"/n*

  # cluster of three
  ports=()
  c1="$(free_port)"; c2="$(free_port)"; c3="$(free_port)"
  join="127.0.0.1:$c1,127.0.0.1:$c2,127.0.0.1:$c3"
  copts=(--cluster-heartbeat-ms 200 --cluster-failure-timeout-ms 2000 --join "$join")
  start_node 1 --cluster-listen "127.0.0.1:$c1" "${copts[@]}"
  start_node 2 --cluster-listen "127.0.0.1:$c2" "${copts[@]}"
  start_node 3 --cluster-listen "127.0.0.1:$c3" "${copts[@]}"
  tok="$(token_for_admin)"
  # Wait for three live members, then find a room prefix whose room 0 is
  # owned by node 3.
  prefix=""
  for i in $(seq 1 200); do
    live="$(curl -fsS -H "Authorization: Bearer $tok" "http://127.0.0.1:${ports[0]}/api/v1/cluster" | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)["live"]))')"
    [ "$live" = 3 ] && break
    sleep 0.05
  done
  for i in $(seq 0 200); do
    owner="$(curl -fsS -H "Authorization: Bearer $tok" "http://127.0.0.1:${ports[0]}/api/v1/cluster?room=bc${i}:0" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["rooms"][0]["owner"])')"
    if [ "$owner" = node3 ]; then prefix="bc${i}:"; break; fi
  done
  [ -n "$prefix" ] || { echo "bench-cluster: no room owned by node3" >&2; exit 1; }
  run_bench cluster "$rep" "${ports[0]}" "$prefix"
  curl -fsS -H "Authorization: Bearer $tok" "http://127.0.0.1:${ports[2]}/metrics" |
    grep -E '^tidings_cluster_(forwarded|replication_sent|mirrored)' >"$out/cluster-$rep.node3-metrics.txt" || true
  curl -fsS -H "Authorization: Bearer $tok" "http://127.0.0.1:${ports[0]}/metrics" |
    grep -E '^tidings_cluster_(forwarded|replication_sent|mirrored)' >"$out/cluster-$rep.node1-metrics.txt" || true
  stop_all; rm -rf "$work"/n*
done

/usr/bin/python3 - "$out" <<'EOF'
import csv, glob, os, statistics, sys
out = sys.argv[1]
cols = ["deliveries_per_s", "deliveries_per_server_cpu_s", "latency_p50_ms",
        "latency_p99_ms", "server_cpu_pct", "missed", "duplicated"]
rows = {}
for f in sorted(glob.glob(os.path.join(out, "*.csv"))):
    label = os.path.basename(f).split("-")[0]
    with open(f) as fh:
        for r in csv.DictReader(fh):
            rows.setdefault(label, []).append(r)
lines = ["setup " + " ".join(cols)]
med = {}
for label, rs in sorted(rows.items()):
    vals = []
    for c in cols:
        xs = [float(r[c]) for r in rs if r.get(c) not in (None, "")]
        m = statistics.median(xs) if xs else float("nan")
        med[(label, c)] = m
        vals.append("%.4g" % m)
    lines.append(label + " " + " ".join(vals) + "  (n=%d)" % len(rs))
for c in cols[:5]:
    s, k = med.get(("single", c)), med.get(("cluster", c))
    if s and k:
        lines.append("ratio cluster/single %s = %.2f" % (c, k / s))
text = "\n".join(lines) + "\n"
open(os.path.join(out, "summary.txt"), "w").write(text)
print(text)
EOF
echo "results in $out"
