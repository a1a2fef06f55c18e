#!/usr/bin/python3
"""History benchmark for issue 3's figures (not a test; nothing is asserted
beyond the replay being complete and in order).

For each durability mode and each run, against a FRESH `tidings serve` with
a fresh `--data-dir` (SQLite on the disk that holds --data-root):

  append   `tidings bench` (the C++ load generator in this tree) publishes
           --events events into one room over --publishers keep-alive HTTP
           connections, each waiting for its acknowledgement before sending
           the next (so every event counted was committed: group commit).
           Figure: acknowledged events/s = acked / publish window; ack p50 and
           p99; rows per SQLite commit (from /metrics history counters).
  history  GET /api/v1/rooms/{room}/history in pages of 1000 (the API's
           maximum) over one keep-alive connection, for the last --missed
           events. Figure: events/s (time to receive the bodies; JSON parsing
           is done after the clock stops).
  resume   one WebSocket client subscribes with since = position - --missed
           (a raw socket client: frames are only collected while the clock
           runs, and parsed and checked afterwards). Figures: time from
           sending the subscribe to the `subscription` reply, to the first
           replayed event and to the last one (= resume latency), and the
           replay rate --missed / latency. Before the resume the server's
           peak RSS counter is reset (/proc/PID/clear_refs "5"), so VmHWM
           afterwards is the peak during the resume; VmHWM over the whole run
           (append included) is read before the reset.

The history data is in the OS page cache (just written), so "replay from
SQLite" is SQLite reads without disk I/O. The server runs with
--max-queue-bytes large enough for the whole replay (see --max-queue-bytes);
with the default 1M a 10,000-event resume is closed as a slow consumer, which
--check-default-queue reports once at the end.

usage:
  /usr/bin/python3 bench/history_bench.py build-res/app/tidings \\
      [--runs 3] [--durability full,normal] [--events 20000] \\
      [--publishers 64] [--missed 10000] [--payload-bytes 200] \\
      [--data-root /tmp] [--max-queue-bytes 64M] [--check-default-queue]
"""

import argparse
import asyncio
import base64
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
# The harness reads the binary from argv[1]; parse our own flags first.
from harness import SECRET, Server, mint_token  # noqa: E402
from resume_tools import AsyncHttp  # noqa: E402


def vm(pid, field):
    """VmHWM / VmRSS of a process in kB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def cpu_seconds(pid):
    """utime + stime of a process, seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_peak_rss(pid):
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                timeout=10) as r:
        out = {}
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                p = line.split()
                if len(p) >= 2:
                    try:
                        out[p[0]] = float(p[1])
                    except ValueError:
                        pass
        return out


# -- a raw WebSocket resume client --------------------------------------------

async def ws_resume(port, token, room, epoch, since, last, timeout=60.0):
    """Subscribes with `since` and collects text frames until the event with
    offset `last` (or a close). Returns a dict of timings and the frames."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(("GET /api/v1/ws?token=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                  % (token, port, key)).encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    if b" 101 " not in head.split(b"\r\n")[0] + b" ":
        raise RuntimeError("handshake: %r" % head[:200])

    def frame(payload, opcode=1):
        mask = os.urandom(4)
        n = len(payload)
        h = bytes([0x80 | opcode])
        if n < 126:
            h += bytes([0x80 | n])
        elif n < 65536:
            h += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            h += bytes([0x80 | 127]) + struct.pack("!Q", n)
        return h + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    buf = bytearray()

    async def fill():
        chunk = await reader.read(1 << 20)
        if not chunk:
            raise asyncio.IncompleteReadError(bytes(buf), None)
        buf.extend(chunk)

    def next_frame():
        """(opcode, payload) of the next whole frame in `buf`, or None."""
        if len(buf) < 2:
            return None
        n = buf[1] & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n = struct.unpack_from("!H", buf, 2)[0]
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n = struct.unpack_from("!Q", buf, 2)[0]
            pos = 10
        if len(buf) < pos + n:
            return None
        op = buf[0] & 0x0F
        payload = bytes(buf[pos:pos + n])
        del buf[:pos + n]
        return op, payload

    sub = json.dumps({"type": "subscribe", "room_id": room,
                      "since": {"epoch": epoch, "offset": since}}).encode()
    room_tag = ('"room_id":"%s"' % room).encode()
    last_tag = ('"offset":%d,' % last).encode()
    frames = []
    out = {"close": None, "t_reply": None, "t_first": None, "t_last": None}
    t0 = time.monotonic()
    cpu0 = time.process_time()
    writer.write(frame(sub))
    deadline = t0 + timeout
    done = False
    try:
        while not done:
            f = next_frame()
            if f is None:
                await asyncio.wait_for(
                    fill(), max(0.01, deadline - time.monotonic()))
                continue
            op, payload = f
            now = time.monotonic()
            if op == 8:
                code = struct.unpack("!H", payload[:2])[0] \
                    if len(payload) >= 2 else None
                out["close"] = (code, payload[2:].decode("utf-8", "replace"))
                break
            if op == 9:
                writer.write(frame(payload, 10))
                continue
            if op != 1 or room_tag not in payload:
                continue
            if payload.startswith(b'{"type":"subscription"'):
                out["t_reply"] = now - t0
            else:
                if out["t_first"] is None:
                    out["t_first"] = now - t0
                if last_tag in payload:
                    out["t_last"] = now - t0
                    done = True
            frames.append(payload)
    except asyncio.TimeoutError:
        out["close"] = ("timeout", "")
    except asyncio.IncompleteReadError:
        out["close"] = ("eof", "")
    finally:
        writer.transport.abort()
        out["client_cpu_s"] = time.process_time() - cpu0
    # Checked after the clock stopped.
    parsed = [json.loads(f) for f in frames]
    reply = parsed[0] if parsed and parsed[0].get("type") == "subscription" \
        else None
    offsets = [f["offset"] for f in parsed[1:]] if reply else []
    out["reply"] = reply
    out["events"] = len(offsets)
    out["complete"] = offsets == list(range(since + 1, last + 1))
    out["first_offsets"] = offsets[:3]
    out["last_offsets"] = offsets[-3:]
    out["frame_bytes"] = (sum(len(f) for f in frames[1:]) / len(offsets)
                          if offsets else 0)
    return out


# -- one run ------------------------------------------------------------------

def start_server(binary, data_dir, durability, queue, extra=()):
    return Server(binary, memory=False, data_dir=data_dir,
                  extra=["--durability", durability,
                         "--max-queue-bytes", queue] + list(extra))


def run_append(binary, srv, args, publishers=None, events=None,
               prefix="bench:"):
    publishers = publishers or args.publishers
    events = events or args.events
    m0 = metrics(srv.port)
    cmd = [binary, "bench", "--port", str(srv.port), "--subscribers", "1",
           "--rooms", "1", "--events", str(events), "--rate", "0",
           "--room-prefix", prefix,
           "--publishers", str(publishers), "--api-key", srv.api_key,
           "--secret", SECRET, "--payload-bytes", str(args.payload_bytes),
           "--server-pid", str(srv.proc.pid), "--timeout", "120",
           "--format", "json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if r.returncode != 0 and not r.stdout.strip():
        raise RuntimeError("tidings bench failed: %s" % r.stderr[-1000:])
    j = json.loads(r.stdout.strip().splitlines()[-1])
    m1 = metrics(srv.port)
    commits = m1.get("tidings_history_commits_total", 0) - \
        m0.get("tidings_history_commits_total", 0)
    rows = m1.get("tidings_history_rows_total", 0) - \
        m0.get("tidings_history_rows_total", 0)
    if j.get("acked") != events or j.get("publish_errors"):
        raise RuntimeError("append: acked %s of %d, errors %s"
                           % (j.get("acked"), events,
                              j.get("publish_errors")))
    return {
        "append_eps": j["acked"] / j["window_s"],
        "ack_p50_ms": j["ack_p50_ms"],
        "ack_p99_ms": j["ack_p99_ms"],
        "rows_per_commit": rows / commits if commits else float("nan"),
        "commits_per_s": commits / j["window_s"],
        "append_server_cpu_pct": j.get("server_cpu_pct") or float("nan"),
    }


async def run_history(srv, token, room, since, count):
    h = AsyncHttp(srv.port, timeout=30)
    bodies = []
    try:
        t0 = time.monotonic()
        pos = since
        got = 0
        while got < count:
            status, text = await h.request(
                "GET", "/api/v1/rooms/%s/history?since=%d&limit=1000"
                % (room, pos), None, {"Authorization": "Bearer " + token})
            if status != 200:
                raise RuntimeError("history: HTTP %d %r" % (status,
                                                             text[:200]))
            bodies.append(text)
            # Find the page's last offset cheaply: parse only after timing.
            k = text.rfind('"offset":')
            if k < 0 or '"events":[]' in text:
                break
            last = int(text[k + 9:text.index(",", k)])
            got += last - pos
            pos = last
        dt = time.monotonic() - t0
    finally:
        h.close()
    events = [e for b in bodies for e in json.loads(b)["events"]]
    offs = [e["offset"] for e in events]
    if offs != list(range(since + 1, since + 1 + len(offs))) \
            or len(offs) < count:
        raise RuntimeError("history pages are not %d..%d: got %d events"
                           % (since + 1, since + count, len(offs)))
    return {"history_eps": len(offs) / dt, "history_s": dt}


async def run_resume(srv, token, room, epoch, position, missed):
    pid = srv.proc.pid
    hwm_run = vm(pid, "VmHWM")
    rss_before = vm(pid, "VmRSS")
    reset = reset_peak_rss(pid)
    cpu0 = cpu_seconds(pid)
    r = await ws_resume(srv.port, token, room, epoch, position - missed,
                        position)
    server_cpu = cpu_seconds(pid) - cpu0
    hwm = vm(pid, "VmHWM")
    if not r["complete"] or not r["reply"] or \
            r["reply"].get("recovered") is not True:
        raise RuntimeError(
            "resume of %d events incomplete: reply %r, %d events (first %s, "
            "last %s), close %r" % (missed, r["reply"], r["events"],
                                    r["first_offsets"], r["last_offsets"],
                                    r["close"]))
    return {
        "resume_reply_ms": r["t_reply"] * 1000,
        "resume_first_ms": r["t_first"] * 1000,
        "resume_latency_ms": r["t_last"] * 1000,
        "resume_eps": missed / r["t_last"],
        "frame_bytes": r["frame_bytes"],
        "resume_server_cpu_ms": server_cpu * 1000,
        "resume_client_cpu_ms": r["client_cpu_s"] * 1000,
        "rss_before_resume_mb": rss_before / 1024.0,
        "peak_rss_resume_mb": (hwm / 1024.0) if reset else float("nan"),
        "peak_rss_run_mb": max(hwm_run, hwm) / 1024.0,
    }


def one_run(binary, args, durability, data_root):
    data_dir = tempfile.mkdtemp(prefix="tidings-hbench-", dir=data_root)
    srv = None
    try:
        srv = start_server(binary, data_dir, durability, args.max_queue_bytes)
        out = run_append(binary, srv, args)
        # The same with one publisher: nothing to batch, one fsync per event.
        one = run_append(binary, srv, args, publishers=1,
                         events=max(200, args.events // 20), prefix="single:")
        out["append_1pub_eps"] = one["append_eps"]
        out["ack_1pub_p50_ms"] = one["ack_p50_ms"]
        room = "bench:0"
        token = mint_token("bench-reader", ["bench:*"])

        async def reads():
            h = AsyncHttp(srv.port)
            try:
                j = await h.history(token, room, 0, 1)
            finally:
                h.close()
            epoch, position = j["epoch"], j["offset"]
            missed = min(args.missed, position)
            res = await run_history(srv, token, room, position - missed,
                                    missed)
            res.update(await run_resume(srv, token, room, epoch, position,
                                        missed))
            return res
        out.update(asyncio.run(reads()))
        return out
    finally:
        if srv is not None:
            srv.stop()
            srv.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


def check_default_queue(binary, args, data_root):
    """The same resume against a server with the default --max-queue-bytes."""
    data_dir = tempfile.mkdtemp(prefix="tidings-hbench-", dir=data_root)
    srv = Server(binary, memory=False, data_dir=data_dir)
    try:
        run_append(binary, srv, args)
        token = mint_token("bench-reader", ["bench:*"])

        async def go():
            h = AsyncHttp(srv.port)
            try:
                j = await h.history(token, "bench:0", 0, 1)
            finally:
                h.close()
            return await ws_resume(srv.port, token, "bench:0", j["epoch"],
                                   j["offset"] - args.missed, j["offset"],
                                   timeout=30)
        r = asyncio.run(go())
        reply = r["reply"] or {}
        return ("default --max-queue-bytes: resume of %d events -> reply "
                "recovered=%s offset=%s, %d events received (first %s, last "
                "%s), complete=%s, close=%r"
                % (args.missed, reply.get("recovered"), reply.get("offset"),
                   r["events"], r["first_offsets"], r["last_offsets"],
                   r["complete"], r["close"]))
    finally:
        srv.stop()
        srv.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


ROWS = [
    ("append_eps", "durable append, events/s acked", "%.0f"),
    ("ack_p50_ms", "  ack latency p50, ms", "%.2f"),
    ("ack_p99_ms", "  ack latency p99, ms", "%.2f"),
    ("rows_per_commit", "  rows per commit (group commit)", "%.1f"),
    ("commits_per_s", "  commits (fsyncs)/s", "%.0f"),
    ("append_server_cpu_pct", "  server CPU during append, %", "%.0f"),
    ("append_1pub_eps", "append, 1 publisher, events/s", "%.0f"),
    ("ack_1pub_p50_ms", "  ack latency p50 (1 publisher), ms", "%.2f"),
    ("history_eps", "history API replay, events/s", "%.0f"),
    ("resume_eps", "resume replay, events/s", "%.0f"),
    ("resume_reply_ms", "resume: subscription reply, ms", "%.1f"),
    ("resume_first_ms", "resume: first replayed event, ms", "%.1f"),
    ("resume_latency_ms", "resume latency (last event), ms", "%.1f"),
    ("resume_server_cpu_ms", "  server CPU during resume, ms", "%.0f"),
    ("resume_client_cpu_ms", "  client CPU during resume, ms", "%.0f"),
    ("peak_rss_resume_mb", "peak RSS during resume, MiB", "%.1f"),
    ("rss_before_resume_mb", "  RSS before resume, MiB", "%.1f"),
    ("peak_rss_run_mb", "  peak RSS whole run, MiB", "%.1f"),
    ("frame_bytes", "  event frame, bytes", "%.0f"),
]


def fsync_ms(path, n=100):
    """Median time of writing 4 KiB and fsync()ing it in `path`."""
    fd, name = tempfile.mkstemp(prefix="fsync-probe-", dir=path)
    times = []
    try:
        block = os.urandom(4096)
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(name)
    return statistics.median(times) * 1000


def fs_of(path):
    try:
        r = subprocess.run(["df", "-P", path], capture_output=True,
                           text=True, timeout=10)
        return r.stdout.strip().splitlines()[-1].split()[0]
    except Exception:  # noqa: BLE001
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--durability", default="full,normal")
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--publishers", type=int, default=64)
    ap.add_argument("--missed", type=int, default=10000)
    ap.add_argument("--payload-bytes", type=int, default=200)
    ap.add_argument("--data-root", default=tempfile.gettempdir())
    ap.add_argument("--max-queue-bytes", default="64M")
    ap.add_argument("--check-default-queue", action="store_true")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    sys.argv = [sys.argv[0], binary]  # for the harness
    modes = [m.strip() for m in args.durability.split(",") if m.strip()]
    print("history_bench: %s; data on %s (%s); %d events, %d publishers, "
          "payload %d B, resume of %d missed; --max-queue-bytes %s; "
          "%d runs per mode; %d CPUs; load %s; write+fsync of 4 KiB there: "
          "median %.2f ms"
          % (binary, args.data_root, fs_of(args.data_root), args.events,
             args.publishers, args.payload_bytes, args.missed,
             args.max_queue_bytes, args.runs, os.cpu_count(),
             open("/proc/loadavg").read().split()[0],
             fsync_ms(args.data_root)), flush=True)
    results = {}
    for mode in modes:
        results[mode] = []
        for i in range(args.runs):
            r = one_run(binary, args, mode, args.data_root)
            results[mode].append(r)
            print("  %s run %d: append %.0f/s, history %.0f/s, resume %.0f ms "
                  "(%.0f/s), peak RSS %.1f MiB"
                  % (mode, i + 1, r["append_eps"], r["history_eps"],
                     r["resume_latency_ms"], r["resume_eps"],
                     r["peak_rss_resume_mb"]), flush=True)
    print()
    for mode in modes:
        runs = results[mode]
        head = "%-36s" % ("durability=%s" % mode) + "".join(
            "%11s" % ("run %d" % (i + 1)) for i in range(len(runs))) + \
            "%11s" % "median"
        print(head)
        print("-" * len(head))
        for key, label, fmt in ROWS:
            vals = [r[key] for r in runs]
            print("%-36s" % label + "".join("%11s" % (fmt % v) for v in vals)
                  + "%11s" % (fmt % statistics.median(vals)))
        print()
    if args.check_default_queue:
        print(check_default_queue(binary, args, args.data_root))


if __name__ == "__main__":
    main()
