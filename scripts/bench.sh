#!/usr/bin/env bash
# Side-by-side benchmark: Tidings and its peers (nginx+nchan, Socket.IO,
# Socket.IO with connection state recovery, plain ws) on loopback, one after
# another, driven by the same generator (`tidings bench`) with the same
# scenarios. Every peer runs fresh for every scenario and repetition: start,
# wait until its port answers, run the generator, stop, check it is gone.
#
#   scripts/bench.sh [scenario...] [--peers LIST] [--reps N] [--quick]
#                    [--out DIR] [--update-docs|--no-update-docs]
#                    [--no-install] [--no-chart] [--list]
#
# Scenarios (default: all): fanout-1room fanout-rooms fanout-1room-half
# fanout-rooms-half idle-10k idle-50k storm history. Groups: fanout (the four
# fanout ones), idle (both idle ones).
# Peers (default: all): tidings,tidings-normal,nchan,socketio,socketio-recovery,ws,floor.
# tidings commits every event to SQLite with an fsync before sending it
# (--durability full, the default); tidings-normal is the same server with
# --durability normal (no fsync per commit), closer to what the in-memory
# peers promise. floor is no server: bench/floor/sendfloor.c makes one send()
# per delivery to the same number of loopback sockets at the same rate and
# reads them back, which measures the kernel's share of a delivery on this
# machine (fan-out scenarios only).
#
# Output: bench/results/<UTC timestamp>/ with raw/ (one CSV per run, as the
# generator printed it), logs/ (servers' and generator's stderr; ignored by
# git), runs.csv (every run, one row), summary.csv (medians per scenario and
# peer), summary.md (tables), chart.png (gnuplot) and meta.json (machine and
# versions). A full run (not --quick) also rewrites the tables in
# docs/bench/README.md between its markers.
#
# Environment: TIDINGS_BIN (server and generator binary; default
# $TIDINGS_BUILD_DIR/app/tidings, built with scripts/build.sh when missing),
# TIDINGS_BUILD_DIR (default ./build).
#
# Runs as root: installs what is missing (apt-get: nginx-light,
# libnginx-mod-nchan, gnuplot-nox, nodejs/npm; npm ci in bench/peers) and
# raises the open-file limit. Only processes this script started are ever
# stopped, by their recorded ids.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
peers_dir="$root/bench/peers"
lib_dir="$root/bench/lib"
py=/usr/bin/python3
[ -x "$py" ] || py=python3

all_scenarios=(fanout-1room fanout-rooms fanout-1room-half fanout-rooms-half
               idle-10k idle-50k storm history)
all_peers=(tidings tidings-normal nchan socketio socketio-recovery ws floor)

# ------------------------------------------------------------------ options

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

scenarios=()
peers_csv=""
reps=3
quick=0
out=""
update_docs=""
install=1
chart=1
while [ $# -gt 0 ]; do
  case "$1" in
    --peers) peers_csv="$2"; shift 2 ;;
    --peers=*) peers_csv="${1#*=}"; shift ;;
    --reps) reps="$2"; shift 2 ;;
    --reps=*) reps="${1#*=}"; shift ;;
    --quick) quick=1; shift ;;
    --out) out="$2"; shift 2 ;;
    --out=*) out="${1#*=}"; shift ;;
    --update-docs) update_docs=1; shift ;;
    --no-update-docs) update_docs=0; shift ;;
    --no-install) install=0; shift ;;
    --no-chart) chart=0; shift ;;
    --list) printf '%s\n' "${all_scenarios[@]}"; exit 0 ;;
    -h|--help) usage; exit 0 ;;
    all) scenarios+=("${all_scenarios[@]}"); shift ;;
    fanout) scenarios+=(fanout-1room fanout-rooms fanout-1room-half fanout-rooms-half); shift ;;
    idle) scenarios+=(idle-10k idle-50k); shift ;;
    -*) echo "bench.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *)
      ok=0
      for s in "${all_scenarios[@]}"; do [ "$s" = "$1" ] && ok=1; done
      [ $ok = 1 ] || { echo "bench.sh: unknown scenario $1 (try --list)" >&2; exit 2; }
      scenarios+=("$1"); shift ;;
  esac
done
[ ${#scenarios[@]} -gt 0 ] || scenarios=("${all_scenarios[@]}")
if [ $quick = 1 ]; then reps=1; fi
[ -n "$update_docs" ] || update_docs=$((1 - quick))
if [ -n "$peers_csv" ]; then
  IFS=, read -r -a peers <<<"$peers_csv"
  for p in "${peers[@]}"; do
    case " ${all_peers[*]} " in *" $p "*) ;; *) echo "bench.sh: unknown peer $p" >&2; exit 2 ;; esac
  done
else
  peers=("${all_peers[@]}")
fi
case "$reps" in ''|*[!0-9]*|0) echo "bench.sh: --reps must be a positive number" >&2; exit 2 ;; esac

has_peer() { case " ${peers[*]} " in *" $1 "*) return 0 ;; esac; return 1; }
log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ------------------------------------------------------ processes we started
#
# One server runs at a time: current_pid (our child, so its id cannot be
# reused before we reap it) and, for nginx, current_children: its workers as
# pid:starttime, so a recycled id is never signalled. gen_pid is the running
# generator. The EXIT trap stops these and nothing else.

gen_pid=""
current_pid=""
current_children=""

alive() { # true while pid runs (a zombie counts as gone)
  local st
  [ -r "/proc/$1/stat" ] || return 1
  st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $1}' || true)"
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

starttime() { # field 22 of /proc/PID/stat: when the process started
  sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'
}

same_process() { # pid:starttime -> true while that very process runs
  local pid="${1%%:*}" t="${1#*:}"
  alive "$pid" && [ "$(starttime "$pid")" = "$t" ]
}

# Stops one server we started: TERM, up to 15 s, then KILL; waits for the
# recorded children (nginx workers) as well. Returns 1 if anything survived.
stop_pid() {
  local pid="$1" children="${2:-}" i c
  [ -n "$pid" ] || return 0
  if alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
  for i in $(seq 1 150); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "pid $pid ignored SIGTERM; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  wait "$pid" 2>/dev/null || true
  for c in ${children//,/ }; do
    for i in $(seq 1 50); do same_process "$c" || break; sleep 0.1; done
    if same_process "$c"; then
      log "child ${c%%:*} of $pid still running; SIGKILL"
      kill -KILL "${c%%:*}" 2>/dev/null || true
    fi
  done
  sleep 0.1
  alive "$pid" && return 1
  for c in ${children//,/ }; do same_process "$c" && return 1; done
  return 0
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$gen_pid" ] && alive "$gen_pid"; then
    # `timeout` passes SIGTERM on to the generator; history_bench.py's
    # servers die with it (its harness sets their parent-death signal).
    # Background jobs ignore SIGINT, so SIGTERM it is.
    kill -TERM "$gen_pid" 2>/dev/null || true
    wait "$gen_pid" 2>/dev/null || true
  fi
  if [ -n "$current_pid" ]; then
    stop_pid "$current_pid" "$current_children" || true
  fi
  [ -n "${tmp_root:-}" ] && [ -d "$tmp_root" ] && rm -rf "$tmp_root"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ install

apt_updated=0
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $install = 0 ]; then
    log "missing packages (--no-install): ${missing[*]}"; return 1
  fi
  log "apt-get install ${missing[*]}"
  if [ $apt_updated = 0 ]; then apt-get update -qq >&2; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# Tools the script itself uses.
for tool in curl:curl ss:iproute2 pgrep:procps timeout:coreutils; do
  command -v "${tool%%:*}" >/dev/null || apt_install "${tool#*:}" || exit 1
done

needs_nginx=0; needs_node=0
has_peer nchan && needs_nginx=1
{ has_peer socketio || has_peer socketio-recovery || has_peer ws; } && needs_node=1
[ $needs_nginx = 1 ] && { apt_install nginx-light libnginx-mod-nchan || exit 1; }
if has_peer floor && ! command -v cc >/dev/null; then apt_install gcc libc6-dev || exit 1; fi
[ $chart = 1 ] && { command -v gnuplot >/dev/null || apt_install gnuplot-nox || chart=0; }
if [ $needs_node = 1 ]; then
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then apt_install nodejs npm || exit 1; fi
  if [ ! -d "$peers_dir/node_modules/socket.io" ] || [ ! -d "$peers_dir/node_modules/ws" ] ||
     [ "$peers_dir/package-lock.json" -nt "$peers_dir/node_modules/.package-lock.json" ]; then
    [ $install = 1 ] || { log "bench/peers/node_modules missing (--no-install)"; exit 1; }
    log "npm ci in bench/peers"
    (cd "$peers_dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
fi

nchan_module=""
if [ $needs_nginx = 1 ]; then
  for d in /usr/lib/nginx/modules /usr/share/nginx/modules; do
    [ -z "$nchan_module" ] && [ -f "$d/ngx_nchan_module.so" ] && nchan_module="$d/ngx_nchan_module.so"
  done
  if [ -z "$nchan_module" ]; then # the path Debian's modules-available file names
    nchan_module="$(sed -n 's/^load_module \(.*nchan.*\.so\);/\1/p' /usr/share/nginx/modules-available/mod-nchan.conf 2>/dev/null | head -1)"
    case "$nchan_module" in /*) ;; ?*) nchan_module="/usr/share/nginx/$nchan_module" ;; esac
  fi
  [ -f "$nchan_module" ] || { log "ngx_nchan_module.so not found"; exit 1; }
fi

# ------------------------------------------------------------------ tidings

build_dir="${TIDINGS_BUILD_DIR:-$root/build}"
tidings="${TIDINGS_BIN:-$build_dir/app/tidings}"
if [ ! -x "$tidings" ]; then
  log "building tidings into $build_dir"
  TIDINGS_BUILD_DIR="$build_dir" "$root/scripts/build.sh" --target tidings >&2
fi
[ -x "$tidings" ] || { log "no tidings binary at $tidings"; exit 1; }
tidings="$(cd "$(dirname "$tidings")" && pwd)/$(basename "$tidings")"

bench_help="$("$tidings" bench --help 2>&1 || true)"
gen_has() { grep -q -- "--$1 " <<<"$bench_help"; }
gen_modes=0; gen_sio=0; gen_pubws=0
gen_has mode && gen_modes=1
gen_has protocol && gen_sio=1
gen_has publish-method && gen_pubws=1

# ------------------------------------------------------------ open files

# Each server and the generator hold one descriptor per connection; the
# limit set here is inherited by every process this script starts.
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile="$(ulimit -n)"
[ "$nofile" = unlimited ] && nofile=1048576

# ------------------------------------------------------------------ results

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
[ $quick = 1 ] && stamp="$stamp-quick"
out="${out:-$root/bench/results/$stamp}"
mkdir -p "$out/raw" "$out/logs"
out="$(cd "$out" && pwd)"
tmp_root="$(mktemp -d /tmp/tidings-bench.XXXXXX)"
runs_tsv="$out/runs.tsv"
printf 'scenario\tpeer\trep\tstatus\tfile\tnote\n' >"$runs_tsv"

secret="bench-secret-$(date +%s%N)"
api_key="bench-key-$(date +%s%N)"

log "tidings $tidings (generator: modes=$gen_modes socketio=$gen_sio publish-method=$gen_pubws)"
log "scenarios: ${scenarios[*]}; peers: ${peers[*]}; reps: $reps; quick: $quick; open files: $nofile"
log "results: $out"

# ------------------------------------------------------------------ machine

write_meta() {
  local commit dirty nginx_v nchan_v node_v sio_v ws_v
  commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  dirty=""
  [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | head -1)" ] && dirty="+dirty"
  nginx_v="$( { nginx -v 2>&1 || true; } | sed 's/.*nginx\///')"
  nchan_v="$(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || true)"
  node_v="$(node --version 2>/dev/null || true)"
  sio_v="$(node -p 'require("'"$peers_dir"'/node_modules/socket.io/package.json").version' 2>/dev/null || true)"
  ws_v="$(node -p 'require("'"$peers_dir"'/node_modules/ws/package.json").version' 2>/dev/null || true)"
  "$py" - "$out/meta.json" <<EOF
import json, os, platform, sys
def read(p):
    try:
        return open(p).read()
    except OSError:
        return ""
mem = [l.split()[1] for l in read("/proc/meminfo").splitlines() if l.startswith("MemTotal:")]
model = [l.split(":", 1)[1].strip() for l in read("/proc/cpuinfo").splitlines() if l.startswith("model name")]
meta = {
    "started_utc": "$stamp",
    "quick": $quick == 1,
    "reps": $reps,
    "scenarios": "${scenarios[*]}".split(),
    "peers": "${peers[*]}".split(),
    "nproc": os.cpu_count(),
    "cpu_model": model[0] if model else "",
    "kernel": platform.release(),
    "mem_total_mib": int(mem[0]) // 1024 if mem else None,
    "loadavg_start": read("/proc/loadavg").split()[:3],
    "open_files_limit": "$nofile",
    "tidings_binary": "$tidings",
    "tidings_binary_mtime_utc": __import__("time").strftime("%Y-%m-%dT%H:%M:%SZ", __import__("time").gmtime(os.path.getmtime("$tidings"))),
    "versions": {
        "tidings": "$commit$dirty",
        "nginx": "$nginx_v",
        "nchan": "$nchan_v",
        "node": "$node_v",
        "socket.io": "$sio_v",
        "ws": "$ws_v",
    },
    "generator": {"modes": $gen_modes == 1, "socketio": $gen_sio == 1,
                  "publish_method": $gen_pubws == 1},
}
json.dump(meta, open(sys.argv[1], "w"), indent=2)
EOF
}
write_meta

# ------------------------------------------------------------------ servers

free_port() {
  "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_ready() { # port pid log: until GET /healthz answers 200, or fail
  local port="$1" pid="$2" logf="$3" i code
  for i in $(seq 1 600); do
    if ! alive "$pid"; then log "server exited during start-up; see $logf"; tail -5 "$logf" >&2 || true; return 1; fi
    code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$port/healthz" || true)"
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  log "port $port did not answer within 60 s; see $logf"
  return 1
}

# start_peer peer scenario subscribers logbase: sets srv_port, srv_pid,
# srv_pids (comma-separated, for --server-pid) and current_pid/children.
start_peer() {
  local peer="$1" scen="$2" subs="$3" logbase="$4" dir
  srv_port="$(free_port)"
  dir="$(mktemp -d "$tmp_root/$peer.XXXX")"
  case "$peer" in
    tidings|tidings-normal)
      local durability=full
      [ "$peer" = tidings-normal ] && durability=normal
      "$tidings" serve --host 127.0.0.1 --port "$srv_port" --node-id bench \
        --data-dir "$dir/data" --jwt-secret "$secret" --api-key "$api_key" \
        --durability "$durability" \
        --max-connections $((2 * subs + 1000)) \
        >"$logbase.server.log" 2>&1 &
      ;;
    nchan)
      mkdir -p "$dir/tmp"
      sed -e "s#@PREFIX@#$dir#g" -e "s#@PORT@#$srv_port#g" \
          -e "s#@NCHAN_MODULE@#$nchan_module#g" \
          -e "s#@WORKERS@#$(nproc)#g" -e "s#@NOFILE@#$nofile#g" \
          -e "s#@WORKER_CONNECTIONS@#$nofile#g" \
          "$peers_dir/nchan/nginx.conf.in" >"$dir/nginx.conf"
      nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
        >"$logbase.server.log" 2>&1 &
      ;;
    socketio|socketio-recovery)
      local rec=0
      [ "$peer" = socketio-recovery ] && rec=1
      PORT="$srv_port" HOST=127.0.0.1 SIO_RECOVERY=$rec NODE_ENV=production \
        node "$peers_dir/socketio/server.js" >"$logbase.server.log" 2>&1 &
      ;;
    ws)
      PORT="$srv_port" HOST=127.0.0.1 NODE_ENV=production \
        node "$peers_dir/ws/server.js" >"$logbase.server.log" 2>&1 &
      ;;
  esac
  srv_pid=$!
  srv_dir="$dir"
  current_pid="$srv_pid"
  current_children=""
  wait_ready "$srv_port" "$srv_pid" "$logbase.server.log" || return 1
  srv_pids="$srv_pid"
  if [ "$peer" = nchan ]; then
    local pidfile_pid workers w
    pidfile_pid="$(cat "$dir/nginx.pid" 2>/dev/null || true)"
    if [ "$pidfile_pid" != "$srv_pid" ]; then
      log "nginx.pid says '$pidfile_pid', started $srv_pid"; return 1
    fi
    for _ in $(seq 1 50); do
      workers="$(pgrep -P "$srv_pid" | paste -sd, -)"
      [ "$(tr ',' '\n' <<<"$workers" | grep -c .)" -ge "$(nproc)" ] && break
      sleep 0.1
    done
    current_children=""
    for w in ${workers//,/ }; do current_children+="${current_children:+,}$w:$(starttime "$w")"; done
    srv_pids="$srv_pid,$workers"
  fi
}

stop_peer() { # logs whether everything we started for this run is gone
  local ok=0
  stop_pid "$current_pid" "$current_children" || ok=1
  if [ $ok = 0 ] && [ -n "${srv_port:-}" ]; then
    # Nothing may still listen on the run's port.
    if ss -Hltn "sport = :$srv_port" 2>/dev/null | grep -q .; then ok=1; fi
  fi
  if [ $ok = 1 ]; then log "WARNING: $1 (pid $current_pid) not fully stopped"; fi
  current_pid=""; current_children=""
  [ -n "${srv_dir:-}" ] && rm -rf "$srv_dir"
  srv_dir=""
  return $ok
}

# ------------------------------------------------------------ generator args

# Per-peer protocol options for `tidings bench`: how to subscribe and
# publish. Sets peer_args (array). Returns 1 with skip_reason when the
# current generator cannot drive the peer.
peer_args() {
  local peer="$1"
  skip_reason=""
  case "$peer" in
    tidings|tidings-normal)
      peer_args=(--secret "$secret" --api-key "$api_key" --room-prefix "bench:")
      ;;
    nchan)
      peer_args=(--token none --room-prefix "bench-" --url-template "/sub/{room}"
                 --subscribe-frame "" --ready-match "")
      peer_args+=(--publish-path "/pub/{room}" --publish-body "{data}")
      ;;
    ws)
      peer_args=(--token none --room-prefix "bench-" --url-template "/"
                 --subscribe-frame '{"type":"subscribe","room":"{room}"}'
                 --ready-match '"subscribed"|"{room}"'
                 --publish-path "/publish/{room}" --publish-body "{data}")
      ;;
    socketio|socketio-recovery)
      if [ $gen_sio = 0 ]; then
        skip_reason="generator has no --protocol socketio yet"; return 1
      fi
      peer_args=(--protocol socketio --token none --room-prefix "bench-"
                 --url-template "/socket.io/?EIO=4&transport=websocket"
                 --subscribe-frame '42["join","{room}"]' --ready-match 'joined'
                 --publish-path "/publish/{room}" --publish-body "{data}")
      ;;
  esac
  if [ $gen_pubws = 1 ]; then peer_args+=(--publish-method http); fi
  return 0
}

# Scenario sizes. Sets scen_args (array), scen_subs, scen_peers (which peers
# take part) and skip_reason.
scenario_args() {
  local s="$1" q=$quick subs rooms events rate pubs
  skip_reason=""
  scen_peers="tidings tidings-normal nchan socketio socketio-recovery ws floor"
  scen_floor=()
  case "$s" in
    fanout-1room|fanout-1room-half)
      # 1,000 subscribers in one room; 100 events/s for 10 s = 100k
      # deliveries/s offered (half: 50/s).
      subs=1000; rate=100; events=1000
      [ $q = 1 ] && { subs=200; events=300; }
      if [ "$s" = fanout-1room-half ]; then rate=$((rate / 2)); events=$((events / 2)); fi
      scen_subs=$subs
      scen_args=(--subscribers "$subs" --rooms 1 --events "$events" --rate "$rate"
                 --publishers 4)
      scen_floor=("$subs" "$events" "$rate" "$floor_bytes" 1)
      if [ $q = 1 ]; then scen_args+=(--drain 20 --timeout 120); else scen_args+=(--drain 60 --timeout 300); fi
      ;;
    fanout-rooms|fanout-rooms-half)
      # 10,000 connections over 1,000 rooms; 10 events/s per room for 10 s
      # = 10,000 events/s, each to 10 subscribers: 100k deliveries/s offered
      # (half: 5/s per room).
      subs=10000; rooms=1000; rate=10000; events=100000; pubs=64
      [ $q = 1 ] && { subs=2000; rooms=200; rate=2000; events=6000; pubs=32; }
      if [ "$s" = fanout-rooms-half ]; then rate=$((rate / 2)); events=$((events / 2)); fi
      scen_subs=$subs
      scen_args=(--subscribers "$subs" --rooms "$rooms" --events "$events" --rate "$rate"
                 --publishers "$pubs")
      scen_floor=("$subs" "$events" "$rate" "$floor_bytes" "$rooms")
      if [ $q = 1 ]; then scen_args+=(--drain 20 --timeout 180); else scen_args+=(--drain 60 --timeout 400); fi
      ;;
    idle-10k|idle-50k)
      subs=10000; [ "$s" = idle-50k ] && subs=50000
      [ $q = 1 ] && subs=$((subs / 5))
      rooms=$((subs / 10))
      scen_subs=$subs
      scen_peers="tidings tidings-normal nchan socketio socketio-recovery ws"
      if [ $gen_modes = 1 ]; then
        local hold=10; [ $q = 1 ] && hold=3
        scen_args=(--mode idle --subscribers "$subs" --rooms "$rooms" --idle-hold "$hold"
                   --timeout 600)
      else
        # No idle mode yet: one event per room after connecting; the
        # generator's connect-phase RSS growth is the per-connection figure.
        scen_args=(--subscribers "$subs" --rooms "$rooms" --events "$rooms" --rate 1000
                   --publishers 4 --drain 10 --timeout 600)
      fi
      # The generator and the server each hold one descriptor per connection.
      if [ "$nofile" -lt $((subs + 2000)) ]; then
        skip_reason="needs ulimit -n >= $((subs + 2000)); this machine allows $nofile"
      fi
      ;;
    storm)
      # 10,000 clients over 1,000 rooms; all drop 5 s into 1,000 events/s
      # and resume with their cursor while events keep flowing.
      subs=10000; rooms=1000; rate=1000; events=20000
      [ $q = 1 ] && { subs=1000; rooms=100; rate=200; events=2000; }
      scen_subs=$subs
      scen_peers="tidings tidings-normal socketio-recovery"
      scen_args=(--mode storm --subscribers "$subs" --rooms "$rooms" --events "$events"
                 --rate "$rate" --publishers 16 --storm-after "$([ $q = 1 ] && echo 3 || echo 5)"
                 --drain 60 --timeout 600)
      [ $gen_modes = 1 ] || skip_reason="generator has no --mode storm yet"
      ;;
    history)
      scen_peers="tidings"
      scen_subs=0
      scen_args=()
      ;;
  esac
}

# ------------------------------------------------------------------ running

record() { # scenario peer rep status file note
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6:-}" >>"$runs_tsv"
}

# About the size of a Tidings event frame in these scenarios (the
# generator's payload in the native envelope). The cost of a send hardly
# depends on it: 5.8, 6.6 and 6.6 us per send at 60, 200 and 400 bytes.
floor_bytes=200

run_floor() { # scenario rep
  local scen="$1" rep="$2" base file rc=0
  base="$out/logs/$scen.floor.rep$rep"
  file="raw/$scen.floor.rep$rep.csv"
  if [ -z "${floor_bin:-}" ]; then
    floor_bin="$tmp_root/sendfloor"
    if ! cc -O2 -o "$floor_bin" "$root/bench/floor/sendfloor.c" 2>"$out/logs/sendfloor.cc.log"; then
      log "floor: cc failed; see $out/logs/sendfloor.cc.log"
      floor_bin=none
    fi
  fi
  if [ "$floor_bin" = none ]; then
    record "$scen" floor "$rep" skipped "" "sendfloor.c did not compile"; return 0
  fi
  log "$scen / floor / rep $rep: sendfloor ${scen_floor[*]}"
  timeout -k 10 300 "$floor_bin" "${scen_floor[@]}" --csv \
    >"$out/$file" 2>"$base.bench.log" &
  gen_pid=$!
  wait "$gen_pid" || rc=$?
  gen_pid=""
  if [ $rc = 0 ] && [ "$(grep -c . "$out/$file" 2>/dev/null || echo 0)" -ge 2 ]; then
    record "$scen" floor "$rep" ok "$file" "sendfloor"
    "$py" "$lib_dir/aggregate.py" line "$out/$file" "$scen" floor "$rep" >&2 || true
  else
    log "$scen / floor / rep $rep: sendfloor exit $rc; see $base.bench.log"
    record "$scen" floor "$rep" failed "$file" "sendfloor exit $rc"
  fi
}

run_one() { # scenario peer rep
  local scen="$1" peer="$2" rep="$3" base file rc=0
  [ "$peer" = floor ] && { run_floor "$scen" "$rep"; return 0; }
  base="$out/logs/$scen.$peer.rep$rep"
  file="raw/$scen.$peer.rep$rep.csv"
  if ! peer_args "$peer"; then
    log "$scen / $peer: skipped ($skip_reason)"
    record "$scen" "$peer" "$rep" skipped "" "$skip_reason"; return 0
  fi
  local extra=()
  if [ "$scen" = storm ] && [ "$peer" = socketio-recovery ]; then extra+=(--sio-recovery); fi
  log "$scen / $peer / rep $rep: starting"
  if ! start_peer "$peer" "$scen" "$scen_subs" "$base"; then
    stop_peer "$peer" || true
    record "$scen" "$peer" "$rep" failed "" "server did not start"; return 0
  fi
  log "$scen / $peer / rep $rep: port $srv_port, pids $srv_pids"
  # The generator bounds itself with --timeout; `timeout` is the backstop.
  # It runs in the background so that a signal to this script is handled at
  # once (bash runs traps only between commands, and `wait` is one).
  timeout -k 10 900 "$tidings" bench --host 127.0.0.1 --port "$srv_port" \
    "${scen_args[@]}" "${peer_args[@]}" "${extra[@]}" \
    --server-pid "$srv_pids" --format csv --csv-header \
    >"$out/$file" 2>"$base.bench.log" &
  gen_pid=$!
  wait "$gen_pid" || rc=$?
  gen_pid=""
  local stopped=ok
  stop_peer "$peer" || stopped="not stopped"
  local lines; lines="$(grep -c . "$out/$file" 2>/dev/null || echo 0)"
  if [ "$lines" -lt 2 ]; then
    log "$scen / $peer / rep $rep: generator failed (exit $rc); see $base.bench.log"
    tail -3 "$base.bench.log" >&2 || true
    record "$scen" "$peer" "$rep" failed "$file" "generator exit $rc; server $stopped"
    return 0
  fi
  local status=ok
  [ $rc = 0 ] || status="completed-with-failures"
  record "$scen" "$peer" "$rep" "$status" "$file" "generator exit $rc; server $stopped"
  "$py" "$lib_dir/aggregate.py" line "$out/$file" "$scen" "$peer" "$rep" >&2 || true
}

run_history() {
  local base="$out/logs/history.tidings" file="raw/history.tidings.txt" args rc=0
  if [ $quick = 1 ]; then
    args=(--runs 1 --durability full --events 2000 --missed 1000)
  else
    args=(--runs "$reps")
  fi
  log "history / tidings: bench/history_bench.py ${args[*]}"
  (cd "$root" && exec "$py" bench/history_bench.py "$tidings" "${args[@]}" --data-root "$tmp_root") \
    >"$out/$file" 2>"$base.log" &
  gen_pid=$!
  wait "$gen_pid" || rc=$?
  gen_pid=""
  if [ $rc = 0 ]; then
    record history tidings all ok "$file" "history_bench.py"
  else
    log "history_bench.py exited $rc; see $base.log"; tail -3 "$base.log" >&2 || true
    record history tidings all failed "$file" "history_bench.py exit $rc"
  fi
}

for scen in "${scenarios[@]}"; do
  scenario_args "$scen"
  scen_skip="$skip_reason"
  if [ "$scen" = history ]; then
    if has_peer tidings; then run_history; fi
    continue
  fi
  # Peers alternate within each repetition, so slow drifts of the shared
  # machine's load spread over all of them instead of hitting one.
  for rep in $(seq 1 "$reps"); do
    for peer in "${peers[@]}"; do
      case " $scen_peers " in *" $peer "*) ;; *) continue ;; esac
      if [ -n "$scen_skip" ]; then
        [ "$rep" = 1 ] && log "$scen / $peer: skipped ($scen_skip)"
        record "$scen" "$peer" "$rep" skipped "" "$scen_skip"
        continue
      fi
      run_one "$scen" "$peer" "$rep"
    done
  done
done

# ------------------------------------------------------------------ report

"$py" - "$out/meta.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
m["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
json.dump(m, open(sys.argv[1], "w"), indent=2)
EOF
"$py" "$lib_dir/aggregate.py" summarize "$out"
if [ $chart = 1 ]; then
  if ! (cd "$out" && gnuplot -e "outdir='$out'" "$lib_dir/chart.gp") 2>"$out/logs/gnuplot.log"; then
    log "gnuplot failed; see $out/logs/gnuplot.log"
  fi
fi
report_args=("$out")
[ "$update_docs" = 1 ] && report_args+=(--docs "$root/docs/bench/README.md")
"$py" "$lib_dir/report.py" "${report_args[@]}"
cat "$out/summary.md"
log "results in $out"
