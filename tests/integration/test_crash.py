#!/usr/bin/python3
"""kill -9 while publishing (issue 3, Tests: Crash).

An acknowledging publisher posts at a steady rate (~200 events/s, each with
its own publish_id) into one room of a server with `--data-dir` (SQLite,
`--durability full`); the server is SIGKILLed at random moments (KILLS times)
and restarted on the same port and data directory. The publisher retries
every unacknowledged publish with the same publish_id until it is
acknowledged; a resuming client keeps its cursor across the kills.

Afterwards, from the history API:
  * offsets are dense 1..N and no offset names two events;
  * every acknowledged publish is in history at its acknowledged offset with
    its data, and each publish_id is stored once (retries were idempotent);
  * nothing is in history that was not acknowledged;
  * the room's epoch did not change (durability full);
and the resuming client saw every offset 1..N once, in order, each with the
data history holds for it, with `recovered: true` on every resume.

usage: /usr/bin/python3 test_crash.py <path to tidings>
"""

import asyncio
import concurrent.futures
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, Server, check, check_eq, mint_token, \
    tidings_bin  # noqa: E402
from resume_tools import AsyncHttp, HttpError, ResumeClient, Verdict, \
    check_client, describe, read_history  # noqa: E402

import websockets  # noqa: E402

KILLS = 5
RESUMERS = 4            # odd ones also disconnect on their own
WORKERS = 16            # publishers, each at RATE / WORKERS
RATE = 200.0            # acknowledged publishes per second, all workers
UP_TIME = (1.0, 3.0)    # seconds between a (re)start and the next kill
TAIL = 1.5              # seconds of publishing after the last restart
PUBLISH_DEADLINE = 30.0 # one publish must be acknowledged within this


class Cluster:
    """The one server, killed and restarted on the same port and dir."""

    def __init__(self, binary, runner, data_dir):
        self.binary = binary
        self.runner = runner
        self.data_dir = data_dir
        self.port = None
        self.srv = None
        self.restarts = 0
        self.kills = []      # (time since start, events acknowledged then)
        self.downtime = []
        # Servers are started from this one thread, which lives until the
        # end: the harness ties a server's life to its starting thread
        # (PR_SET_PDEATHSIG), so a short-lived thread would kill it.
        self.pool = concurrent.futures.ThreadPoolExecutor(1)

    def start_sync(self):
        return self.pool.submit(self.start).result()

    def start(self):
        extra = [] if self.port is None else ["--port", str(self.port)]
        t0 = time.monotonic()
        deadline = t0 + 20
        while True:
            try:
                self.srv = Server(self.binary, memory=False,
                                  data_dir=self.data_dir, extra=extra)
                break
            except AssertionError:
                # The port may still be held for a moment after the kill.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.runner.servers = [self.srv]
        if self.port is None:
            self.port = self.srv.port
        check_eq(self.srv.port, self.port, "port after restart")
        return time.monotonic() - t0

    def kill(self):
        self.srv.kill()  # SIGKILL to the server's process group
        check(not self.srv.alive(), "server still alive after SIGKILL")


class Publisher:
    def __init__(self, api_key, port, room):
        self.api_key = api_key
        self.port = port
        self.room = room
        self.seq = 0
        self.acked = {}          # publish_id -> (offset, data)
        self.by_offset = {}      # offset -> publish_id
        self.attempts = 0
        self.retries = 0
        self.statuses = {}       # non-200 status -> count
        self.errors = {}         # exception name -> count
        self.problems = []
        self.instance = 0        # which server incarnation is up
        self.tags = {}           # publish_id -> (first instance, acked by)

    async def worker(self, stop, rate):
        conn = AsyncHttp(self.port, timeout=5.0)
        period = 1.0 / rate
        next_at = time.monotonic() + random.uniform(0, period)
        try:
            while not stop.is_set():
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at + period, time.monotonic() - period)
                self.seq += 1
                pid = "crash-%d" % self.seq
                data = {"seq": self.seq, "pad": "x" * 40}
                await self.publish(conn, pid, data)
        finally:
            conn.close()

    async def publish(self, conn, pid, data):
        deadline = time.monotonic() + PUBLISH_DEADLINE
        first = True
        first_instance = self.instance
        while True:
            check(time.monotonic() < deadline,
                  "publish %s not acknowledged within %.0fs (statuses %r, "
                  "errors %r)" % (pid, PUBLISH_DEADLINE, self.statuses,
                                  self.errors))
            self.attempts += 1
            if not first:
                self.retries += 1
            first = False
            try:
                status, text = await conn.publish(self.api_key, self.room,
                                                  data, pid)
            except HttpError as e:
                name = str(e).split(": ")[1] if ": " in str(e) else str(e)
                self.errors[name] = self.errors.get(name, 0) + 1
                await asyncio.sleep(0.02)
                continue
            if status != 200:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                check(status in (500, 502, 503, 504),
                      "publish %s: HTTP %d %r" % (pid, status, text[:300]))
                await asyncio.sleep(0.02)
                continue
            j = json.loads(text)
            off = j.get("offset")
            check(isinstance(off, int) and j.get("room_id") == self.room,
                  "publish reply must be {room_id, offset}: %r" % j)
            other = self.by_offset.get(off)
            if other is not None and other != pid:
                self.problems.append("offset %d acknowledged for %s and %s"
                                     % (off, other, pid))
            self.by_offset[off] = pid
            self.acked[pid] = (off, data)
            self.tags[pid] = (first_instance, self.instance)
            return off

    def deduped_across_restart(self):
        """Publishes first sent to one incarnation and acknowledged by a
        later one: (answered with an offset committed before the kill,
        stored anew). A fresh publish to incarnation i gets an offset above
        everything committed before it started, so the lowest fresh offset
        of i bounds the earlier ones."""
        fresh_min = {}
        for pid, (a, b) in self.tags.items():
            if a == b:
                off = self.acked[pid][0]
                fresh_min[b] = min(fresh_min.get(b, off), off)
        old, new = 0, 0
        for pid, (a, b) in self.tags.items():
            if a != b:
                if self.acked[pid][0] < fresh_min.get(b, 1 << 62):
                    old += 1
                else:
                    new += 1
        return old, new


async def client_loop(c, done, final, stats, churn):
    """Resumes across kills until `final[0]` is known and reached; with
    `churn` it also disconnects on its own every fraction of a second."""
    while True:
        if done.is_set() and final[0] is not None and c.cursor >= final[0]:
            return
        try:
            s = await c.session(
                until=lambda c: (done.is_set() and final[0] is not None
                                 and c.cursor >= final[0]),
                duration=random.uniform(0.1, 0.8) if churn else None,
                abrupt=churn and random.random() < 0.5, timeout=60)
            stats["sessions"] += 1
            if s.close and s.close.startswith("closed by server"):
                stats["closed"] += 1
        except (OSError, asyncio.TimeoutError,
                websockets.InvalidHandshake, websockets.ConnectionClosed):
            stats["connect_failures"] += 1
            await asyncio.sleep(0.05)


async def crash_run(cl):
    room = "feed:crash-" + uuid.uuid4().hex[:8]
    key = cl.srv.api_key
    token = mint_token("crash-reader", ["feed:*"])
    pub = Publisher(key, cl.port, room)
    first = AsyncHttp(cl.port)
    try:
        off = await pub.publish(first, "crash-first", {"seq": 0})
    finally:
        first.close()
    check_eq(off, 1, "first offset of a new room")
    epoch, _, _ = await read_history(cl.port, token, room)
    clients = [ResumeClient("resumer-%d" % i, cl.port, token, room, epoch,
                            cursor=0) for i in range(RESUMERS)]
    stop, done, final = asyncio.Event(), asyncio.Event(), [None]
    stats = [{"sessions": 0, "closed": 0, "connect_failures": 0}
             for _ in clients]
    t0 = time.monotonic()
    workers = [asyncio.ensure_future(pub.worker(stop, RATE / WORKERS))
               for _ in range(WORKERS)]
    readers = [asyncio.ensure_future(client_loop(c, done, final, st, i % 2))
               for i, (c, st) in enumerate(zip(clients, stats))]
    loop = asyncio.get_running_loop()
    try:
        for k in range(KILLS):
            await asyncio.sleep(random.uniform(*UP_TIME))
            check(not any(w.done() for w in workers),
                  "a publisher stopped early: %r"
                  % [w.exception() for w in workers if w.done()])
            cl.kills.append((time.monotonic() - t0, len(pub.acked)))
            cl.kill()
            pub.instance += 1
            down = await loop.run_in_executor(cl.pool, cl.start)
            cl.downtime.append(down)
        await asyncio.sleep(TAIL)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*workers), PUBLISH_DEADLINE + 5)
        elapsed = time.monotonic() - t0
        final[0] = max(o for o, _ in pub.acked.values())
        done.set()
        await asyncio.wait_for(asyncio.gather(*readers), 60)
    finally:
        stop.set()
        done.set()
        for t in workers + readers:
            if not t.done():
                t.cancel()

    n = final[0]
    print("  %d publishes acknowledged in %.1fs (%.0f/s) across %d SIGKILLs "
          "at %s; %d retries; errors %r statuses %r; restart took %s s"
          % (len(pub.acked), elapsed, len(pub.acked) / elapsed, len(cl.kills),
             ", ".join("%.1fs (%d acked)" % k for k in cl.kills), pub.retries,
             pub.errors, pub.statuses,
             ", ".join("%.2f" % d for d in cl.downtime)), flush=True)
    check(not pub.problems, "; ".join(pub.problems[:5]))
    old, new = pub.deduped_across_restart()
    print("  publishes in flight at a kill: %d had been committed (the retry "
          "got the original offset back), %d had not (stored on retry)"
          % (old, new), flush=True)

    # History holds exactly the acknowledged events, densely, once each.
    h_epoch, position, events = await read_history(cl.port, token, room)
    check_eq(h_epoch, epoch, "room epoch after %d SIGKILLs with durability "
             "full" % len(cl.kills))
    offsets = [e["offset"] for e in events]
    check_eq(len(set(offsets)), len(offsets), "distinct offsets in history")
    check_eq(offsets, list(range(1, len(offsets) + 1)),
             "history offsets (dense from 1)")
    check_eq(position, len(offsets), "room position vs history length")
    check_eq(len(offsets), n, "history length vs highest acknowledged offset")
    by_seq = {}
    for e in events:
        seq = (e.get("data") or {}).get("seq")
        by_seq.setdefault(seq, []).append(e["offset"])
    twice = {s: o for s, o in by_seq.items() if len(o) > 1}
    check(not twice, "publishes stored more than once (retried publish_id "
          "not idempotent): seq -> offsets %r"
          % dict(list(twice.items())[:10]))
    lost, moved = [], []
    for pid, (off, data) in pub.acked.items():
        ev = events[off - 1] if 0 < off <= len(events) else None
        if ev is None:
            lost.append((pid, off))
        elif ev.get("data") != data:
            moved.append((pid, off, ev.get("data")))
    check(not lost, "acknowledged events missing from history: %r"
          % lost[:10])
    check(not moved, "acknowledged offset names another event: (publish_id, "
          "acked offset, history data) %r" % moved[:10])
    check_eq(len(pub.acked), n, "acknowledged publishes vs history length "
             "(something unacknowledged is stored, or an ack is missing)")

    # The resuming clients: no gap, no duplicate, every offset, right data.
    for c, st in zip(clients, stats):
        v = Verdict()
        held = check_client(c, v)
        print("  %s%s: %s; %d sessions, %d ended by the server, %d failed "
              "connects" % (c.name, " (churning)" if c.name[-1] in "13579"
                            else "", v.summary(), st["sessions"],
                            st["closed"], st["connect_failures"]),
              flush=True)
        if v.problems:
            print("  first problems:\n    " + "\n    ".join(v.problems),
                  flush=True)
        check_eq((v.duplicates, v.gaps, v.non_increasing), (0, 0, 0),
                 "%s duplicates, gaps, non-increasing offsets" % c.name)
        check(v.ok(), "%s broke the contract: %s"
              % (c.name, "; ".join(v.problems[:5])))
        missing = sorted(set(range(1, n + 1)) - held)
        check(not missing, "%s lacks offsets %s; sessions:\n%s"
              % (c.name, missing[:20],
                 describe(c, missing[0] if missing else None)))
        wrong = [(o, c.data.get(o), events[o - 1].get("data"))
                 for o in range(1, n + 1)
                 if c.data.get(o) != events[o - 1].get("data")]
        check(not wrong, "%s saw other data than history holds: (offset, "
              "seen, history) %r" % (c.name, wrong[:5]))
        check(v.resumes >= KILLS, "%s resumed only %d times"
              % (c.name, v.resumes))


def main():
    binary = tidings_bin()
    runner = Runner("test_crash")
    random.seed(os.environ.get("TIDINGS_TEST_SEED") or None)
    data_dir = tempfile.mkdtemp(prefix="tidings-crash-")
    cl = Cluster(binary, runner, data_dir)
    try:
        try:
            cl.start_sync()
        except AssertionError as e:
            runner.failures.append("start_server")
            print("FAIL start_server: %s" % e, flush=True)
            runner.finish()
        runner.run("sigkill_while_publishing", crash_run, cl)
        if cl.srv is not None and cl.srv.alive():
            runner.stop_server(cl.srv)
        runner.servers = []
    finally:
        if cl.srv is not None:
            cl.srv.kill()
        cl.pool.shutdown()
        shutil.rmtree(data_dir, ignore_errors=True)
    runner.finish()


if __name__ == "__main__":
    main()
