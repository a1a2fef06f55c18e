#!/usr/bin/python3
"""Resume after reconnect against a real `tidings serve` (issue 3, Tests):

race            many clients disconnect and resume from their last seen
                cursor (>= 1,000 resumes) while a publisher posts bursts into
                the same room; a checker over every client's log finds 0
                duplicates, 0 gaps, strictly increasing offsets, and at the
                end every client holds every offset 1..N with the payload
                that was acknowledged for it.
beyond history  with --retention 'events=20', a client offline for more than
                20 events gets `recovered: false` and the room's position;
                the next event it sees is above that position and nothing
                between its cursor and the position is claimed delivered.
                Also under bursts (trimming while clients resume), for a
                cursor from another epoch, and for --replay-limit.

usage: /usr/bin/python3 test_resume.py <path to tidings>
"""

import asyncio
import json
import os
import random
import sys
import time
import uuid

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, Server, check, check_eq, mint_token, \
    tidings_bin  # noqa: E402
from resume_tools import AsyncHttp, ResumeClient, Verdict, \
    check_client, describe, jitter, read_history  # noqa: E402

# Race sizes: CLIENTS x CYCLES resumes (a few are dropped on purpose right
# after the subscribe is sent; they are not counted).
CLIENTS = 80
CYCLES = 15
MIN_RESUMES = 1000
MAX_EVENTS = 8000       # below the default retention and replay limit
PUBLISH_CONNS = 12


class BurstPublisher:
    """Acknowledged publishes in bursts over keep-alive connections."""

    def __init__(self, srv, room, conns=PUBLISH_CONNS, prefix="p"):
        self.srv = srv
        self.room = room
        self.conns = [AsyncHttp(srv.port) for _ in range(conns)]
        self.prefix = prefix
        self.seq = 0
        self.acked = {}      # offset -> data
        self.bursts = 0
        self.active = False
        self.t_end = None

    async def one(self, conn):
        self.seq += 1
        data = {"seq": self.seq, "burst": self.bursts}
        status, text = await conn.publish(self.srv.api_key, self.room, data,
                                          "%s-%d" % (self.prefix, self.seq))
        check(status == 200, "publish seq %d: HTTP %d %r"
              % (data["seq"], status, text[:300]))
        j = json.loads(text)
        off = j.get("offset")
        check(isinstance(off, int) and j.get("room_id") == self.room,
              "publish reply must be {room_id, offset}: %r" % j)
        check(off not in self.acked,
              "offset %d acknowledged twice: %r and %r"
              % (off, self.acked.get(off), data))
        self.acked[off] = data
        return off

    async def burst(self, size):
        per = [size // len(self.conns)] * len(self.conns)
        for i in range(size % len(self.conns)):
            per[i] += 1

        async def run(conn, n):
            for _ in range(n):
                await self.one(conn)
        await asyncio.gather(*(run(c, n) for c, n in zip(self.conns, per)
                               if n))
        self.bursts += 1

    async def run(self, stop, max_events, size=(10, 80), pause=(0.005, 0.08)):
        self.active = True
        try:
            while not stop.is_set() and len(self.acked) < max_events:
                await self.burst(min(random.randint(*size),
                                     max_events - len(self.acked)))
                try:
                    await asyncio.wait_for(stop.wait(), jitter(*pause))
                except asyncio.TimeoutError:
                    pass
        finally:
            self.active = False
            self.t_end = time.monotonic()

    def close(self):
        for c in self.conns:
            c.close()

    def last(self):
        return max(self.acked) if self.acked else 0

    def check_dense(self):
        n = self.last()
        missing = sorted(set(range(1, n + 1)) - set(self.acked))
        check(not missing, "acknowledged offsets are not dense 1..%d: "
              "missing %s" % (n, missing[:20]))
        return n


async def catch_up(c, n, timeout=30.0):
    """Resumes until the client has seen offset `n` (a session can end
    early: a server close is reported in the client's log)."""
    deadline = time.monotonic() + timeout
    while c.cursor < n:
        left = deadline - time.monotonic()
        check(left > 0, "%s did not reach offset %d within %.0fs (cursor "
              "%d); sessions:\n%s" % (c.name, n, timeout, c.cursor,
                                      describe(c, c.cursor)))
        await c.session(until=lambda c: c.cursor >= n, timeout=left)


def verdict_over(clients, **kw):
    v = Verdict()
    held = {}
    for c in clients:
        held[c.name] = check_client(c, v, **kw)
    return v, held


def report(v, label):
    print("  %s: %s" % (label, v.summary()), flush=True)
    if v.problems:
        print("  first problems:\n    " + "\n    ".join(v.problems),
              flush=True)


async def race(srv):
    room = "feed:race-" + uuid.uuid4().hex[:8]
    pub = BurstPublisher(srv, room, prefix="race")
    try:
        await pub.burst(1)  # the room exists: its epoch is known
        token = mint_token("reader", ["feed:*"])
        epoch, _, _ = await read_history(srv.port, token, room)
        check(isinstance(epoch, str) and epoch, "history has no epoch")
        clients = [ResumeClient("c%02d" % i, srv.port,
                                mint_token("racer-%d" % i, ["feed:*"]), room,
                                epoch, cursor=0) for i in range(CLIENTS)]
        stop = asyncio.Event()
        t0 = time.monotonic()
        pub_task = asyncio.ensure_future(pub.run(stop, MAX_EVENTS))
        during = [0]

        async def cycles(c):
            await asyncio.sleep(jitter(0, 0.3))
            for _ in range(CYCLES):
                await asyncio.sleep(jitter(0.005, 0.08))  # offline
                early = random.random() < 0.06
                if pub.active:
                    during[0] += 0 if early else 1
                await c.session(duration=jitter(0.02, 0.3),
                                max_events=random.randint(1, 200),
                                abort_early=early,
                                abrupt=random.random() < 0.5, timeout=15)
        try:
            await asyncio.gather(*(cycles(c) for c in clients))
        finally:
            stop.set()
            await pub_task
        t_cycles = time.monotonic() - t0
        n = pub.check_dense()
        # Every client catches up to the last acknowledged offset.
        await asyncio.gather(*(catch_up(c, n) for c in clients))
        t_all = time.monotonic() - t0
        v, held = verdict_over(clients)
        report(v, "race")
        print("  race: %d clients, %d resumes issued during bursts, %d events "
              "in %d bursts; cycles %.1fs, total %.1fs"
              % (CLIENTS, during[0], n, pub.bursts, t_cycles, t_all),
              flush=True)
        nsess = sum(len(c.sessions) for c in clients)
        ends = {}
        for c in clients:
            for x in c.sessions:
                if x.close and x.close.startswith(("closed", "timeout")):
                    ends[x.close] = ends.get(x.close, 0) + 1
        print("  race: %d connections; mean connect %.1f ms, mean "
              "disconnect %.1f ms; ended by the server or a timeout: %r"
              % (nsess, 1000 * sum(c.stats["open"] for c in clients) / nsess,
                 1000 * sum(c.stats["close"] for c in clients) / nsess,
                 ends), flush=True)
        check(during[0] >= MIN_RESUMES,
              "only %d resumes were issued during bursts (want >= %d)"
              % (during[0], MIN_RESUMES))
        check(v.resumes >= MIN_RESUMES, "only %d resumes were answered"
              % v.resumes)
        check_eq((v.duplicates, v.gaps, v.non_increasing),
                 (0, 0, 0), "duplicates, gaps, non-increasing offsets")
        check(v.ok(), "contract broken: %s" % "; ".join(v.problems[:5]))
        want = set(range(1, n + 1))
        for c in clients:
            missing = sorted(want - held[c.name])
            check(not missing, "%s lacks offsets %s (of 1..%d); sessions:\n%s"
                  % (c.name, missing[:20], n,
                     describe(c, missing[0] if missing else None)))
            for off in range(1, n + 1):
                if c.data.get(off) != pub.acked[off]:
                    raise AssertionError(
                        "%s: offset %d carried %r, acknowledged was %r"
                        % (c.name, off, c.data.get(off), pub.acked[off]))
    finally:
        pub.close()


# -- beyond history ----------------------------------------------------------

RETAIN = 20


async def publish_until_trimmed(pub, token, room, first_above,
                                timeout=15.0):
    """The writer trims when a room is written, at most every few seconds:
    publishes a trickle until the history API's oldest event is above
    `first_above`; returns that oldest offset."""
    deadline = time.monotonic() + timeout
    h = AsyncHttp(pub.srv.port)
    try:
        while True:
            j = await h.history(token, room, 0, 1)
            ev = j.get("events") or []
            if ev and ev[0]["offset"] > first_above:
                return ev[0]["offset"]
            if time.monotonic() > deadline:
                raise AssertionError(
                    "history of %s still starts at %s after %.0fs of "
                    "publishing; --retention events=%d should have trimmed "
                    "it" % (room, ev[0]["offset"] if ev else None, timeout,
                            RETAIN))
            await pub.one(pub.conns[0])
            await asyncio.sleep(0.1)
    finally:
        h.close()


async def beyond_history(srv):
    room = "feed:beyond-" + uuid.uuid4().hex[:8]
    token = mint_token("offline", ["feed:*"])
    pub = BurstPublisher(srv, room, conns=1, prefix="bh")
    try:
        await pub.burst(5)
        epoch, _, _ = await read_history(srv.port, token, room)
        c = ResumeClient("offline", srv.port, token, room, epoch, cursor=0)
        # Online: replays 1..5.
        s = await c.session(until=lambda c: c.cursor >= 5)
        check_eq(s.reply.get("recovered"), True, "first resume recovered")
        check_eq(c.cursor, 5, "cursor after the first session")
        cursor = c.cursor
        # Offline for 3 * RETAIN events; history keeps only the last RETAIN.
        for _ in range(3 * RETAIN):
            await pub.one(pub.conns[0])
        oldest = await publish_until_trimmed(pub, token, room, cursor + 1)
        position = pub.last()
        check(oldest > cursor + 1, "history must have lost %d.." % (cursor
                                                                   + 1))
        live_after = asyncio.Event()

        async def publish_later():
            await live_after.wait()
            for _ in range(5):
                await pub.one(pub.conns[0])

        task = asyncio.ensure_future(publish_later())

        def until(c):
            if c.sessions[-1].reply is not None:
                live_after.set()
            return c.cursor >= position + 5
        s = await c.session(until=until, timeout=10)
        await task
        r = s.reply
        check(r is not None, "no subscription reply to the resume")
        check_eq(r.get("recovered"), False,
                 "recovered for a cursor %d behind trimmed history (oldest "
                 "kept %d); reply %r" % (cursor, oldest, r))
        check_eq(r.get("offset"), position,
                 "reply offset (the room's position) for recovered:false")
        check_eq(r.get("epoch"), epoch, "reply epoch")
        check_eq(s.offsets, list(range(position + 1, position + 6)),
                 "events after a recovered:false reply at %d" % position)
        v, _ = verdict_over([c], allow_unrecovered=True)
        report(v, "beyond history")
        check(v.ok(), "contract broken: %s" % "; ".join(v.problems[:5]))
        check_eq(v.declared_gaps, 1, "declared gaps")

        # Offline for fewer than RETAIN events: recovered, exactly the missed.
        cursor = c.cursor
        for _ in range(RETAIN // 2):
            await pub.one(pub.conns[0])
        s = await c.session(until=lambda c: c.cursor >= pub.last())
        check_eq(s.reply.get("recovered"), True,
                 "recovered for a cursor %d events behind (retention %d)"
                 % (RETAIN // 2, RETAIN))
        check_eq(s.offsets, list(range(cursor + 1, pub.last() + 1)),
                 "replayed offsets within retention")

        # A cursor from another epoch: recovered:false, continue at position.
        other = ResumeClient("other-epoch", srv.port, token, room,
                             "not-" + epoch, cursor=3)
        s = await other.session(duration=0.3)
        check_eq(s.reply.get("recovered"), False,
                 "recovered for a cursor from another epoch (reply %r)"
                 % s.reply)
        check_eq(s.reply.get("epoch"), epoch, "reply epoch")
        check_eq(s.reply.get("offset"), pub.last(), "reply offset")
        check_eq(s.offsets, [], "events after recovered:false with nothing "
                 "published")
        # A cursor ahead of the room in the right epoch is not recovered
        # either (it names events that do not exist).
        ahead = ResumeClient("ahead", srv.port, token, room, epoch,
                             cursor=pub.last() + 50)
        s = await ahead.session(duration=0.3)
        check_eq(s.reply.get("recovered"), False,
                 "recovered for a cursor beyond the room's position "
                 "(reply %r)" % s.reply)
    finally:
        pub.close()


async def beyond_history_bursts(srv):
    """Clients stay offline for random stretches (often longer than the
    retained 20 events) while bursts are published and trimmed: every
    resume is either recovered (dense from the cursor) or declared
    (recovered:false, dense from the reply's offset) — never a silent gap."""
    room = "feed:trim-" + uuid.uuid4().hex[:8]
    pub = BurstPublisher(srv, room, conns=4, prefix="tb")
    try:
        await pub.burst(1)
        token = mint_token("trim", ["feed:*"])
        epoch, _, _ = await read_history(srv.port, token, room)
        clients = [ResumeClient("t%02d" % i, srv.port, token, room, epoch, 0)
                   for i in range(16)]
        stop = asyncio.Event()
        pub_task = asyncio.ensure_future(
            pub.run(stop, 8000, size=(5, 40), pause=(0.01, 0.08)))

        # The writer trims every few seconds: run long enough for two
        # passes, with clients offline for up to 1.5 s (hundreds of events).
        end = time.monotonic() + 12.0

        async def cycles(c):
            while time.monotonic() < end:
                await asyncio.sleep(jitter(0.01, 1.5))  # offline
                await c.session(duration=jitter(0.02, 0.15),
                                max_events=random.randint(1, 30),
                                abrupt=random.random() < 0.5, timeout=15)
        try:
            await asyncio.gather(*(cycles(c) for c in clients))
        finally:
            stop.set()
            await pub_task
        n = pub.check_dense()
        await asyncio.gather(*(catch_up(c, n) for c in clients))
        v, _ = verdict_over(clients, allow_unrecovered=True)
        report(v, "beyond history under bursts")
        print("  %d events published; %d of %d resumes were beyond history"
              % (n, v.recovered_false, v.resumes), flush=True)
        check(v.ok(), "contract broken: %s" % "; ".join(v.problems[:5]))
        check(v.recovered_false > 0,
              "no resume went beyond the retained history; the test did not "
              "exercise what it is for")
        for c in clients:
            for off, d in c.data.items():
                if d != pub.acked.get(off):
                    raise AssertionError("%s: offset %d carried %r, "
                                         "acknowledged was %r"
                                         % (c.name, off, d,
                                            pub.acked.get(off)))
    finally:
        pub.close()


async def replay_limit(srv, limit):
    room = "feed:limit-" + uuid.uuid4().hex[:8]
    token = mint_token("limit", ["feed:*"])
    pub = BurstPublisher(srv, room, conns=2, prefix="rl")
    try:
        await pub.burst(1)
        epoch, _, _ = await read_history(srv.port, token, room)
        await pub.burst(limit)  # exactly `limit` behind a cursor of 1
        c = ResumeClient("at-limit", srv.port, token, room, epoch, cursor=1)
        s = await c.session(until=lambda c: c.cursor >= limit + 1)
        check_eq(s.reply.get("recovered"), True,
                 "recovered exactly at the replay limit")
        check_eq(s.offsets, list(range(2, limit + 2)), "replayed offsets")
        await pub.burst(limit + 1)
        d = ResumeClient("past-limit", srv.port, token, room, epoch,
                         cursor=c.cursor)
        s = await d.session(duration=0.3)
        check_eq(s.reply.get("recovered"), False,
                 "recovered %d events behind with --replay-limit %d"
                 % (limit + 1, limit))
        check_eq(s.reply.get("offset"), pub.last(), "reply offset")
        check_eq(s.offsets, [], "events after recovered:false")
    finally:
        pub.close()


def start(runner, binary, name, **kw):
    """A server for the next tests, or None (reported as a failure)."""
    try:
        return Server(binary, **kw)
    except AssertionError as e:
        runner.failures.append(name)
        print("FAIL %s: %s" % (name, e), flush=True)
        return None


def main():
    binary = tidings_bin()
    runner = Runner("test_resume")
    random.seed(os.environ.get("TIDINGS_TEST_SEED") or None)

    # SQLite on disk, durability full (the default).
    srv = start(runner, binary, "start_server", memory=False)
    if srv:
        runner.servers = [srv]
        runner.run("race_resumes_during_bursts", race, srv)
        runner.stop_server(srv)
        srv.cleanup()

    srv = start(runner, binary, "start_server_retention", memory=False,
                extra=["--retention", "events=%d" % RETAIN])
    if srv:
        runner.servers = [srv]
        runner.run("beyond_history_recovered_false", beyond_history, srv)
        runner.run("beyond_history_under_bursts", beyond_history_bursts, srv)
        runner.stop_server(srv)
        srv.cleanup()

    srv = start(runner, binary, "start_server_replay_limit", memory=False,
                extra=["--retention", "events=0,age=0",
                       "--replay-limit", "30"])
    if srv:
        runner.servers = [srv]
        runner.run("replay_limit_recovered_false", replay_limit, srv, 30)
        runner.stop_server(srv)
    runner.finish()


if __name__ == "__main__":
    main()
