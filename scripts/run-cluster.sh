#!/usr/bin/env bash
# N nodes of one cluster on loopback, each with its own history under
# ./data/cluster/nodeK, sharing the dev secrets of scripts/run.sh
# (./data/dev.env, made on first use, never in the repo).
#
#   scripts/run-cluster.sh [N] [--http-base P] [--cluster-base P] [-- serve args]
#
# N defaults to 3. Node K (1..N) is `nodeK`, serves HTTP/WebSocket on
# 127.0.0.1:(http-base + K - 1) (default 8001...) and its cluster port on
# 127.0.0.1:(cluster-base + K - 1) (default 9001...); every node gets the
# whole list of cluster ports as --join. Arguments after `--` go to every
# `tidings serve` (e.g. --cluster-failure-timeout-ms 1000).
#
# Ctrl-C or SIGTERM stops the nodes this script started (their PIDs are
# recorded; nothing else is signalled) and waits for them. If one node
# exits by itself, the others are stopped too.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

n=3
http_base=8001
cluster_base=9001
serve_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --http-base) http_base="$2"; shift 2 ;;
    --cluster-base) cluster_base="$2"; shift 2 ;;
    --) shift; serve_args=("$@"); break ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *)
      if [[ "$1" =~ ^[0-9]+$ ]]; then n="$1"; shift
      else echo "run-cluster: unknown argument '$1' (see --help)" >&2; exit 2
      fi ;;
  esac
done
if [ "$n" -lt 1 ] || [ "$n" -gt 64 ]; then
  echo "run-cluster: N must be 1..64" >&2; exit 2
fi

"$root/scripts/deps.sh"
"$root/scripts/build.sh" --target tidings
bin="${TIDINGS_BUILD_DIR:-$root/build}/app/tidings"

# Dev secrets, as scripts/run.sh makes them.
mkdir -p "$root/data"
env_file="$root/data/dev.env"
if [ ! -f "$env_file" ]; then
  (
    umask 077
    {
      echo "TIDINGS_JWT_SECRET=$(openssl rand -hex 32)"
      echo "TIDINGS_API_KEY=$(openssl rand -hex 24)"
    } > "$env_file"
  )
fi
set -a; . "$env_file"; set +a

join=""
for k in $(seq 1 "$n"); do
  join+="${join:+,}127.0.0.1:$((cluster_base + k - 1))"
done

pids=()
cleanup() {
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    # SIGCONT too: a node paused with SIGSTOP handles SIGTERM only then.
    for p in "${pids[@]}"; do
      kill -TERM "$p" 2>/dev/null || true
      kill -CONT "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for k in $(seq 1 "$n"); do
  dir="$root/data/cluster/node$k"
  mkdir -p "$dir"
  "$bin" serve --node-id "node$k" --data-dir "$dir" \
    --port "$((http_base + k - 1))" \
    --cluster-listen "127.0.0.1:$((cluster_base + k - 1))" \
    --join "$join" ${serve_args[@]+"${serve_args[@]}"} &
  pids+=($!)
done

# Wait until every node answers (bounded), so the URLs below work.
for k in $(seq 1 "$n"); do
  port=$((http_base + k - 1))
  for _ in $(seq 1 100); do
    if curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
    if ! kill -0 "${pids[$((k - 1))]}" 2>/dev/null; then
      echo "run-cluster: node$k exited during start" >&2; exit 1
    fi
    sleep 0.1
  done
done

token="$("$bin" token --sub dev-user --rooms 'execution:*,workflow:*')"
admin="$("$bin" token --sub dev-admin --admin)"

echo
echo "  Tidings dev cluster: $n nodes (secrets in $env_file)"
echo "  ------------------------------------------------------------"
for k in $(seq 1 "$n"); do
  printf '  node%-3s http://127.0.0.1:%s  ws://127.0.0.1:%s/api/v1/ws  cluster 127.0.0.1:%s  pid %s\n' \
    "$k" "$((http_base + k - 1))" "$((http_base + k - 1))" \
    "$((cluster_base + k - 1))" "${pids[$((k - 1))]}"
done
cat <<INFO

  Dev token (user dev-user, rooms execution:*, workflow:*):
    $token
  Admin token:
    $admin

  Members as node1 sees them, and who owns a room:
    curl -s -H "Authorization: Bearer $token" http://127.0.0.1:$http_base/api/v1/cluster
    curl -s -H "Authorization: Bearer $token" 'http://127.0.0.1:$http_base/api/v1/cluster?room=execution:demo'

  Ctrl-C stops the $n nodes.
INFO

# Until one node exits or we are signalled; then cleanup stops the rest.
wait -n "${pids[@]}" || true
echo "run-cluster: a node exited; stopping the others" >&2
