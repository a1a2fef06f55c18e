#!/usr/bin/python3
"""Operation events through the HTTP API: server CPU per event (not a test).

For each binary and each run, against a fresh single-node `tidings serve`
with a fresh --data-dir: creates one operation per connection, then posts
--events operation events (`POST /api/v1/operations/{id}/events`) spread
over --connections keep-alive connections, each waiting for its answer
before sending the next. Figures per run: events/s, the server's CPU per
event (utime+stime from /proc/PID/stat over the run) and the wake-ups of
CAF's timer thread (`caf.clock`, voluntary context switches).

Several binaries run in turn, run by run, so a busy machine affects them
alike: compare them side by side in one invocation.

usage:
  /usr/bin/python3 bench/op_events.py BINARY [BINARY...] [--events 8000]
      [--connections 8] [--runs 2] [--port 8751]
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

API_KEY = "op-events-bench-key"
HEADERS = {"Authorization": "Bearer " + API_KEY,
           "Content-Type": "application/json"}


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def clock_wakeups(pid):
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        base = "/proc/%d/task/%s/" % (pid, tid)
        try:
            with open(base + "comm") as f:
                if f.read().strip() != "caf.clock":
                    continue
            with open(base + "status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def post(conn, path, body):
    conn.request("POST", path, json.dumps(body), HEADERS)
    r = conn.getresponse()
    text = r.read()
    if r.status not in (200, 201):
        raise RuntimeError("%s answered %d: %s" % (path, r.status, text))


def one_run(binary, port, events, connections):
    data = tempfile.mkdtemp(prefix="tidings-opbench-")
    srv = subprocess.Popen(
        [binary, "serve", "--host", "127.0.0.1", "--port", str(port),
         "--node-id", "opbench", "--data-dir", data, "--jwt-secret",
         "op-events-bench-secret", "--api-key", API_KEY],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/healthz")
                c.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline or srv.poll() is not None:
                    raise RuntimeError("%s did not start" % binary)
                time.sleep(0.05)
        for t in range(connections):
            post(c, "/api/v1/operations",
                 {"id": "op%d" % t, "kind": "job", "owner": "bench"})
        per = events // connections
        errors = []

        def work(t):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                for i in range(per):
                    post(conn, "/api/v1/operations/op%d/events" % t,
                         {"type": "progress",
                          "data": {"done": i, "total": per}})
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(str(e))

        threads = [threading.Thread(target=work, args=(t,))
                   for t in range(connections)]
        c0, k0, t0 = cpu_ticks(srv.pid), clock_wakeups(srv.pid), time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.monotonic() - t0
        c1, k1 = cpu_ticks(srv.pid), clock_wakeups(srv.pid)
        if errors:
            raise RuntimeError(errors[0])
        hz = os.sysconf("SC_CLK_TCK")
        n = per * connections
        return {"events": n, "per_s": n / wall,
                "cpu_us": (c1 - c0) / hz * 1e6 / n, "wakeups": k1 - k0}
    finally:
        srv.send_signal(signal.SIGTERM)
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--events", type=int, default=8000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--port", type=int, default=8751)
    a = ap.parse_args()
    for run in range(a.runs):
        for b in a.binaries:
            r = one_run(os.path.abspath(b), a.port, a.events, a.connections)
            print("run %d  %-40s %6d events  %7.0f events/s  %6.1f us server "
                  "CPU per event  %6d timer-thread wake-ups"
                  % (run + 1, b, r["events"], r["per_s"], r["cpu_us"],
                     r["wakeups"]), flush=True)


if __name__ == "__main__":
    main()
