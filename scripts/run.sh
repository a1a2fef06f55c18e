#!/usr/bin/env bash
# One node on 127.0.0.1:8000 with its SQLite history under ./data, a dev
# token, and a demo publishing a simulated workflow execution.
#   scripts/run.sh            build if needed, serve, run the demo
#   scripts/run.sh --no-demo  serve only
# Extra arguments go to `tidings serve` (see `tidings serve --help`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/deps.sh"
"$root/scripts/build.sh" --target tidings
bin="${TIDINGS_BUILD_DIR:-$root/build}/app/tidings"

demo=1
args=()
for a in "$@"; do
  if [ "$a" = "--no-demo" ]; then demo=0; else args+=("$a"); fi
done

# Dev secrets: made once, kept in ./data/dev.env (never in the repo).
mkdir -p "$root/data"
env_file="$root/data/dev.env"
if [ ! -f "$env_file" ]; then
  umask 077
  {
    echo "TIDINGS_JWT_SECRET=$(openssl rand -hex 32)"
    echo "TIDINGS_API_KEY=$(openssl rand -hex 24)"
  } > "$env_file"
fi
set -a; . "$env_file"; set +a
export TIDINGS_DATA_DIR="${TIDINGS_DATA_DIR:-$root/data}"
port="${TIDINGS_PORT:-8000}"

token="$("$bin" token --sub dev-user --rooms 'execution:*,workflow:*')"
admin="$("$bin" token --sub dev-admin --admin)"

cat <<INFO

  Tidings dev node
  ----------------
  WebSocket  ws://127.0.0.1:$port/api/v1/ws?token=<token>
  Publish    POST http://127.0.0.1:$port/api/v1/publish  (Authorization: Bearer \$TIDINGS_API_KEY)
  Health     http://127.0.0.1:$port/healthz     Metrics  http://127.0.0.1:$port/metrics
  Secrets    $env_file

  Dev token (user dev-user, rooms execution:*, workflow:*):
    $token
  Admin token:
    $admin

  Watch the demo execution in another terminal:
    $bin tail execution:demo --token $token

  Publish your own event (the API key is in $env_file):
    TIDINGS_API_KEY=\$TIDINGS_API_KEY $bin publish execution:demo execution_update '{"status":"running"}'

INFO

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$bin" serve --port "$port" "${args[@]}" &
pids+=($!)
for _ in $(seq 1 100); do
  if curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "${pids[0]}" 2>/dev/null; then echo "run: server exited" >&2; exit 1; fi
  sleep 0.1
done
if [ "$demo" = 1 ]; then
  echo "run: demo publishing to execution:demo every few seconds (Ctrl-C stops all)"
  "$bin" demo --port "$port" --loop >/dev/null &
  pids+=($!)
fi
wait "${pids[0]}"
