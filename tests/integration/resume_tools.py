"""Shared pieces for the resume and crash tests (and bench/history_bench.py):
an asyncio HTTP/1.1 keep-alive client for the publish and history APIs, a
resuming WebSocket client that keeps its cursor across connections and logs
every session, and the checker that reads those logs against the delivery
contract in shared/DESIGN.md:

  * a `subscription` reply with `recovered: true` is followed by exactly the
    events after the client's cursor, in order, then live ones;
  * with `recovered: false` the client continues from the reply's `offset`:
    every event after the reply is > that offset, dense from offset + 1;
  * within one connection and across connections of one client, offsets are
    strictly increasing: no duplicate, no gap beyond a declared
    (`recovered: false`) one.

Everything here is bounded in time. Not a test by itself.
"""

import asyncio
import json
import random
import time

import websockets

from harness import check


# -- asyncio HTTP/1.1 client (keep-alive) -------------------------------------

class HttpError(Exception):
    """The request did not get a complete answer (connection refused, reset,
    closed mid-answer, timed out)."""


class AsyncHttp:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:port, re-opened on
    demand. Requests on one object are sequential."""

    def __init__(self, port, timeout=10.0):
        self.port = port
        self.timeout = timeout
        self.reader = None
        self.writer = None

    def close(self):
        if self.writer is not None:
            try:
                self.writer.transport.abort()
            except Exception:  # noqa: BLE001
                pass
        self.reader = self.writer = None

    async def _request(self, method, path, body, headers):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                "127.0.0.1", self.port)
        data = b"" if body is None else body
        head = ["%s %s HTTP/1.1" % (method, path),
                "Host: 127.0.0.1:%d" % self.port,
                "Content-Length: %d" % len(data)]
        if body is not None:
            head.append("Content-Type: application/json")
        for k, v in (headers or {}).items():
            head.append("%s: %s" % (k, v))
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        hdrs = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        payload = await self.reader.readexactly(n) if n else b""
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, payload.decode("utf-8", "replace")

    async def request(self, method, path, body=None, headers=None):
        """(status, body text); raises HttpError when there is no answer."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        try:
            return await asyncio.wait_for(
                self._request(method, path, body, headers), self.timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                asyncio.LimitOverrunError, ValueError, IndexError) as e:
            self.close()
            raise HttpError("%s %s: %s: %s" % (method, path.split("?")[0],
                                               type(e).__name__, e))

    async def publish(self, api_key, room, data, publish_id=None,
                      type_="update"):
        body = {"room_id": room, "type": type_, "data": data}
        if publish_id is not None:
            body["publish_id"] = publish_id
        return await self.request(
            "POST", "/api/v1/publish", body,
            {"Authorization": "Bearer " + api_key})

    async def history(self, token, room, since, limit):
        status, text = await self.request(
            "GET", "/api/v1/rooms/%s/history?since=%d&limit=%d"
            % (room, since, limit), None,
            {"Authorization": "Bearer " + token})
        check(status == 200, "history %s since=%d: HTTP %d %r"
              % (room, since, status, text[:300]))
        return json.loads(text)


async def read_history(port, token, room, page=1000, max_events=1_000_000):
    """All history of `room` through the API: (epoch, position, events)."""
    h = AsyncHttp(port)
    try:
        since, events, epoch, position = 0, [], None, None
        while len(events) < max_events:
            j = await h.history(token, room, since, page)
            epoch = j.get("epoch")
            position = j.get("offset")
            batch = j.get("events") or []
            if not batch:
                break
            events += batch
            since = batch[-1]["offset"]
        return epoch, position, events
    finally:
        h.close()


# -- the resuming client ----------------------------------------------------

class Session:
    """One WebSocket connection of a ResumeClient."""

    __slots__ = ("since", "reply", "offsets", "close", "aborted_early",
                 "t_subscribe", "t_reply", "t_last", "bad")

    def __init__(self, since):
        self.since = since          # cursor sent in `since` (None: no since)
        self.reply = None           # the `subscription` frame
        self.offsets = []           # event offsets, in arrival order
        self.close = None           # how it ended
        self.aborted_early = False  # dropped before the reply, on purpose
        self.t_subscribe = None
        self.t_reply = None
        self.t_last = None
        self.bad = []               # frames that break the contract


class ResumeClient:
    """Keeps a cursor (epoch, last offset seen) across connections.

    `expect_data(offset) -> data or None` lets the caller check each event's
    payload against what was acknowledged for that offset."""

    def __init__(self, name, port, token, room, epoch, cursor=0):
        self.name = name
        self.port = port
        self.token = token
        self.room = room
        self.epoch = epoch
        self.initial_epoch = epoch
        self.cursor = cursor
        self.sessions = []
        self.data = {}      # offset -> data (first seen)
        self.mismatch = []  # (offset, what) where data or epoch differed
        self.stats = {"open": 0.0, "close": 0.0}

    def url(self):
        return "ws://127.0.0.1:%d/api/v1/ws?token=%s" % (self.port, self.token)

    async def _open(self, timeout):
        ws = await asyncio.wait_for(
            websockets.connect(self.url(), ping_interval=None,
                               close_timeout=2, max_size=16 * 1024 * 1024,
                               max_queue=None,
                               open_timeout=timeout), timeout + 1)
        return ws

    async def session(self, until=None, max_events=None, duration=None,
                      abort_early=False, abrupt=False, timeout=10.0,
                      use_since=True):
        """One connection: subscribe (with `since` unless use_since=False),
        read events until `until(self)` is true, `max_events` were read, or
        `duration` seconds passed, then disconnect (a TCP abort when
        `abrupt`). Returns the Session. Connection failures raise OSError /
        asyncio.TimeoutError / websockets exceptions to the caller."""
        s = Session(self.cursor if use_since else None)
        t0 = time.monotonic()
        ws = await self._open(timeout)
        self.stats["open"] += time.monotonic() - t0
        self.sessions.append(s)
        try:
            msg = {"type": "subscribe", "room_id": self.room}
            if use_since:
                msg["since"] = {"epoch": self.epoch, "offset": self.cursor}
            s.t_subscribe = time.monotonic()
            await ws.send(json.dumps(msg))
            if abort_early:
                s.aborted_early = True
                s.close = "aborted before the reply"
                return s
            deadline = time.monotonic() + timeout
            stop_at = None if duration is None else \
                time.monotonic() + duration
            n = 0
            while True:
                now = time.monotonic()
                if s.reply is not None:
                    if until is not None and until(self):
                        break
                    if max_events is not None and n >= max_events:
                        break
                    if stop_at is not None and now >= stop_at:
                        break
                if now >= deadline:
                    s.close = "timeout"
                    break
                limit = deadline
                if s.reply is not None and stop_at is not None:
                    limit = min(limit, stop_at)
                if until is not None:
                    limit = min(limit, now + 0.2)  # `until` may change
                try:
                    text = await asyncio.wait_for(ws.recv(),
                                                  max(0.001, limit - now))
                except asyncio.TimeoutError:
                    continue
                except websockets.ConnectionClosed as e:
                    s.close = "closed by server %s %r" % (e.code, e.reason)
                    return s
                f = json.loads(text)
                t = f.get("type")
                if f.get("room_id") != self.room:
                    continue  # connection frame, user:{sub} auto-join, …
                if t == "subscription":
                    if s.reply is not None:
                        s.bad.append(("second subscription reply", f))
                        continue
                    s.reply = f
                    s.t_reply = time.monotonic()
                    if f.get("recovered") is False:
                        # The documented gap: continue from the reply.
                        self.epoch = f.get("epoch")
                        self.cursor = f.get("offset")
                    elif f.get("epoch") != self.epoch:
                        s.bad.append(("recovered reply with another epoch",
                                      f))
                    continue
                if t == "error":
                    s.bad.append(("error frame", f))
                    s.close = "error frame"
                    break
                if "offset" not in f:
                    continue
                if s.reply is None:
                    s.bad.append(("event before the subscription reply", f))
                off = f["offset"]
                s.offsets.append(off)
                s.t_last = time.monotonic()
                n += 1
                if f.get("epoch") != self.epoch:
                    self.mismatch.append((off, "epoch %r, cursor epoch %r"
                                          % (f.get("epoch"), self.epoch)))
                d = f.get("data")
                if off in self.data and self.data[off] != d:
                    self.mismatch.append((off, "data %r, earlier %r"
                                          % (d, self.data[off])))
                self.data.setdefault(off, d)
                if off > self.cursor:
                    self.cursor = off
            if s.close is None:
                s.close = "abort" if abrupt else "close"
        finally:
            t0 = time.monotonic()
            await self._close(ws, abrupt or s.close != "close")
            self.stats["close"] += time.monotonic() - t0
        return s

    @staticmethod
    async def _close(ws, abrupt):
        if not abrupt:
            try:
                await asyncio.wait_for(ws.close(), 2)
                return
            except Exception:  # noqa: BLE001
                pass
        ws.transport.abort()
        # Let the library's own tasks see the lost connection and finish.
        try:
            await asyncio.wait_for(ws.wait_closed(), 2)
            await asyncio.wait_for(asyncio.shield(ws.close_connection_task),
                                   2)
        except Exception:  # noqa: BLE001
            pass


# -- the checker -------------------------------------------------------------

class Verdict:
    def __init__(self):
        self.duplicates = 0
        self.gaps = 0            # missing, not declared by recovered:false
        self.non_increasing = 0  # an offset not above the one before it
        self.declared_gaps = 0   # recovered:false replies that skipped events
        self.resumes = 0         # subscribe-with-since that got a reply
        self.recovered_true = 0
        self.recovered_false = 0
        self.replayed = 0        # recovered resumes that had missed events
        self.events = 0
        self.problems = []       # human-readable, first few

    def problem(self, text):
        if len(self.problems) < 20:
            self.problems.append(text)

    def ok(self):
        return not (self.duplicates or self.gaps or self.non_increasing
                    or self.problems)

    def summary(self):
        return ("%d resumes answered (recovered true %d [%d with missed "
                "events replayed], false %d), %d events logged: "
                "%d duplicates, %d gaps, %d non-increasing, %d declared gaps"
                % (self.resumes, self.recovered_true, self.replayed,
                   self.recovered_false, self.events, self.duplicates,
                   self.gaps,
                   self.non_increasing, self.declared_gaps))


def check_client(c, v, first_expected=1, allow_unrecovered=False):
    """Walks one client's sessions in order. `first_expected` is the first
    offset the client must see (its initial cursor + 1)."""
    expected = first_expected
    seen = set()
    epoch = c.initial_epoch
    for i, s in enumerate(c.sessions):
        where = "%s session %d" % (c.name, i)
        for what, f in s.bad:
            v.problem("%s: %s: %s" % (where, what, json.dumps(f)[:300]))
        if s.reply is None:
            if s.offsets:
                v.problem("%s: events without a reply" % where)
            continue
        r = s.reply
        if s.since is not None:
            v.resumes += 1
            if r.get("recovered") is True:
                v.recovered_true += 1
                if r.get("offset", 0) > s.since:
                    v.replayed += 1
                check_cursor = s.since + 1
                if check_cursor != expected:
                    v.problem("%s: resumed from %d but %d was next"
                              % (where, s.since, expected))
                if r.get("offset", -1) < s.since:
                    v.problem("%s: recovered:true but the reply offset %s is "
                              "below the cursor %d"
                              % (where, r.get("offset"), s.since))
            elif r.get("recovered") is False:
                v.recovered_false += 1
                if not allow_unrecovered:
                    v.problem("%s: recovered:false for since=%d (reply %s)"
                              % (where, s.since, json.dumps(r)[:300]))
                if r.get("epoch") != epoch:
                    seen = set()  # a new epoch: offsets start over
                elif r.get("offset", 0) >= expected:
                    v.declared_gaps += 1
                epoch = r.get("epoch")
                expected = r.get("offset", 0) + 1
            else:
                v.problem("%s: reply to a since-subscribe has no boolean "
                          "recovered: %s" % (where, json.dumps(r)[:300]))
        else:
            epoch = r.get("epoch")
            expected = r.get("offset", 0) + 1
        for off in s.offsets:
            v.events += 1
            if off in seen:
                v.duplicates += 1
                v.problem("%s: duplicate offset %d (expected %d)"
                          % (where, off, expected))
            elif off < expected:
                v.non_increasing += 1
                v.problem("%s: offset %d after %d" % (where, off,
                                                       expected - 1))
            elif off > expected:
                v.gaps += off - expected
                v.problem("%s: gap: got %d, expected %d (since=%s, reply "
                          "offset=%s recovered=%s)"
                          % (where, off, expected, s.since, r.get("offset"),
                             r.get("recovered")))
            seen.add(off)
            if off >= expected:
                expected = off + 1
    for off, what in c.mismatch:
        v.problem("%s: offset %d: %s" % (c.name, off, what))
    return seen


def describe(c, around=None, n=6):
    """A few of a client's sessions as text (those near offset `around`)."""
    rows = []
    for i, s in enumerate(c.sessions):
        r = s.reply or {}
        offs = s.offsets
        near = around is None or (
            (s.since is not None and abs(s.since - around) < 200)
            or any(abs(o - around) < 200 for o in offs[:1] + offs[-1:]))
        if near:
            rows.append("  #%d since=%s reply(offset=%s recovered=%s) "
                        "events %d [%s..%s] end=%s"
                        % (i, s.since, r.get("offset"), r.get("recovered"),
                           len(offs), offs[0] if offs else "-",
                           offs[-1] if offs else "-", s.close))
    return "\n".join(rows[:n * 3])


def jitter(lo, hi):
    return random.uniform(lo, hi)
