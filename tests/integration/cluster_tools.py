"""Shared pieces for the clustered integration tests (issue 5: routing,
replication, failover). Not a test by itself.

  Node, Cluster   `tidings serve` processes joined over the cluster port with
                  short timings (200 ms heartbeats, 1 s failure timeout);
                  SIGKILL, SIGSTOP and SIGCONT one of them; poll
                  GET /api/v1/cluster until the members agree.
  find_room       a room id whose owner (and replica) is a given node, found
                  by asking the nodes about batches of candidate names.
  Subscriber      a native WebSocket client that logs every event (epoch,
                  offset, data, arrival time) and, when its connection ends,
                  reconnects to another live node and resubscribes with
                  `since` = the last (epoch, offset) it saw.
  Publisher       publishes at a steady rate with unique publish_ids; a
                  failed attempt (no answer, 5xx) is retried with the same
                  publish_id, on another live node when its node gives no
                  answer; records every acknowledgement (publish_id ->
                  offset).
  check_delivery  the checker: every acknowledged event delivered exactly
                  once, in order, with its acknowledged payload, to every
                  subscriber; one epoch; no offset names two events and no
                  publish_id is stored twice.

Every wait is bounded. Blocking HTTP (urllib) is only used before the
asyncio tasks start; once subscribers and publishers run, cluster views are
read with the asyncio client so the loop never stalls.

The store of the nodes is SQLite in a temporary directory (durability
full); TIDINGS_TEST_STORE=memory uses --memory-store instead.
"""

import asyncio
import json
import os
import re
import signal
import sys
import time
import uuid
import zlib

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from resume_tools import AsyncHttp, HttpError  # noqa: E402

HEARTBEAT_MS = 200
FAILURE_TIMEOUT_MS = 1000
# The failure timeout, a sweep interval, the poll interval and slack for
# two shared cores (test_cluster.py imports these).
DETECT_BOUND = (FAILURE_TIMEOUT_MS + 2 * HEARTBEAT_MS + 800) / 1000.0
CONVERGE_TIMEOUT = 20.0
CLUSTER_RE = re.compile(r"tidings: node (\S+) cluster port ([0-9.]+):(\d+)")

ROOM_KIND = "execution"
# Any valid JWT may read GET /api/v1/cluster; subscribers get their own.
VIEW_TOKEN = h.mint_token("cluster-tools", admin=True)


def figure(name, text):
    """A measurement for the record (never asserted)."""
    print("figure %s %s" % (name, text), flush=True)


def percentile(values, p):
    """Nearest-rank percentile of `values` (None when empty)."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def ms_summary(seconds):
    """'p50=… p99=… max=… n=…' in milliseconds."""
    if not seconds:
        return "n=0"
    return "p50=%.1f p99=%.1f max=%.1f n=%d" % (
        1000 * percentile(seconds, 50), 1000 * percentile(seconds, 99),
        1000 * max(seconds), len(seconds))


# -- nodes --------------------------------------------------------------------

def _store_is_memory(memory):
    if memory is not None:
        return memory
    return os.environ.get("TIDINGS_TEST_STORE", "sqlite") == "memory"


class Node:
    """One clustered `tidings serve` on 127.0.0.1 (HTTP and cluster ports
    picked by the kernel). `down` is None while it runs, "killed" after
    kill(), "frozen" between freeze() and thaw(): the test's knowledge,
    which publishers and subscribers use to skip it."""

    def __init__(self, binary, node_id, join, memory=None, extra=()):
        args = ["--node-id", node_id,
                "--cluster-listen", "127.0.0.1:0",
                "--cluster-heartbeat-ms", str(HEARTBEAT_MS),
                "--cluster-failure-timeout-ms", str(FAILURE_TIMEOUT_MS)]
        if join:
            args += ["--join", ",".join(join)]
        args += list(extra)
        self.id = node_id
        self.down = None
        self.srv = h.Server(binary, extra=args,
                            memory=_store_is_memory(memory))
        self.cluster_port = None
        for line in self.srv.stdout_lines:
            m = CLUSTER_RE.search(line)
            if m:
                self.cluster_port = int(m.group(3))
        if not self.cluster_port:
            self.srv.cleanup()
            raise AssertionError("%s printed no cluster port line\n%s"
                                 % (node_id, self.srv.output_tail()))

    def __repr__(self):
        return "Node(%s:%d%s)" % (self.id, self.srv.port,
                                  " " + self.down if self.down else "")

    @property
    def port(self):
        return self.srv.port

    @property
    def cluster_addr(self):
        return "127.0.0.1:%d" % self.cluster_port

    @property
    def up(self):
        return self.down is None and self.srv.alive()

    # signals
    def kill(self):
        """SIGKILL (the whole process group) and reap it."""
        self.down = "killed"
        self.srv.kill()

    def freeze(self):
        self.down = "frozen"
        os.kill(self.srv.proc.pid, signal.SIGSTOP)

    def thaw(self):
        if self.srv.proc.poll() is None:
            os.kill(self.srv.proc.pid, signal.SIGCONT)
        if self.down == "frozen":
            self.down = None

    def cleanup(self):
        if self.down == "frozen":
            self.thaw()
        self.srv.cleanup()

    # GET /api/v1/cluster, blocking (setup only)
    def view(self, query="", timeout=5.0):
        r = h.get(self.srv, "/api/v1/cluster" + query, bearer=VIEW_TOKEN,
                  timeout=timeout)
        h.check(r.status == 200, "%s: GET /api/v1/cluster%s: %r"
                % (self.id, query[:60], r))
        return r.json()

    def try_view(self, query="", timeout=2.0):
        try:
            return self.view(query, timeout)
        except AssertionError:
            return None

    def placements(self, rooms, timeout=5.0):
        """{room: (owner, replica)} for up to 200 rooms."""
        v = self.view(_rooms_query(rooms), timeout)
        return {p["room_id"]: (p["owner"], p["replica"])
                for p in v.get("rooms", [])}

    # GET /api/v1/cluster, asyncio (while clients run)
    async def aview(self, query="", timeout=2.0):
        """The view, or None when the node gives no 200 answer in time."""
        c = AsyncHttp(self.port, timeout=timeout)
        try:
            status, text = await c.request(
                "GET", "/api/v1/cluster" + query, None,
                {"Authorization": "Bearer " + VIEW_TOKEN})
        except HttpError:
            return None
        finally:
            c.close()
        if status != 200:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return None

    async def aplacement(self, room, timeout=2.0):
        """(owner, replica) of `room` in this node's view, or None."""
        v = await self.aview(_rooms_query([room]), timeout)
        if not v:
            return None
        for p in v.get("rooms", []):
            if p.get("room_id") == room:
                return p.get("owner"), p.get("replica")
        return None


def _rooms_query(rooms):
    return "?" + "&".join("room=" + r for r in rooms)


def states(view):
    return {m["node_id"]: m["state"] for m in view["members"]}


def agrees(view, ids):
    """True when `view` lists exactly `ids` live, all of them alive (dead
    members may still be listed)."""
    if view is None:
        return False
    s = {k: st for k, st in states(view).items() if st != "dead"}
    return (s == {i: "alive" for i in ids}
            and sorted(view.get("live", [])) == sorted(ids))


class Cluster:
    """N nodes joined through the first one. Use as a context manager, or
    call close(): every process it started is killed, even on failure.
    `runner` (a harness.Runner) gets the servers, so their output is
    printed when a test fails."""

    def __init__(self, binary, ids=("n1", "n2", "n3"), runner=None,
                 memory=None, extra=()):
        self.binary = binary
        self.runner = runner
        self.memory = memory
        self.extra = list(extra)
        self.nodes = []
        if runner is not None:
            # Output of an earlier test's (stopped) cluster is not ours.
            runner.servers[:] = [x for x in runner.servers if x.alive()]
        try:
            for node_id in ids:
                join = [self.nodes[0].cluster_addr] if self.nodes else []
                self._add(Node(binary, node_id, join, memory, self.extra))
        except BaseException:
            self.close()
            raise

    def _add(self, node):
        self.nodes.append(node)
        if self.runner is not None:
            self.runner.servers.append(node.srv)

    def __getitem__(self, node_id):
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Kills every node and removes its directory. The servers stay in
        the runner's list, so a failing test still prints their output."""
        for n in self.nodes:
            try:
                n.cleanup()
            except Exception:  # noqa: BLE001 - kill the others regardless
                pass

    @property
    def ids(self):
        return [n.id for n in self.nodes]

    def up_nodes(self):
        return [n for n in self.nodes if n.up]

    # membership
    def await_membership(self, ids=None, nodes=None,
                         timeout=CONVERGE_TIMEOUT):
        """Blocking poll until every node of `nodes` (default: the running
        ones) lists exactly `ids` (default: their ids) alive. Returns the
        seconds it took."""
        nodes = self.up_nodes() if nodes is None else nodes
        ids = [n.id for n in nodes] if ids is None else ids
        t0 = time.monotonic()
        h.wait_until(lambda: all(agrees(n.try_view(), ids) for n in nodes),
                     timeout, "%s to agree that %s are alive"
                     % ([n.id for n in nodes], ids))
        return time.monotonic() - t0

    async def aawait(self, pred, timeout, what, interval=0.02):
        """Asyncio poll of `await pred()` until true; returns seconds."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            if await pred():
                return time.monotonic() - t0
            if time.monotonic() > deadline:
                raise AssertionError("timed out after %.1fs waiting for %s"
                                     % (timeout, what))
            await asyncio.sleep(interval)

    async def aawait_membership(self, ids, nodes=None,
                                timeout=CONVERGE_TIMEOUT):
        nodes = self.up_nodes() if nodes is None else nodes

        async def ok():
            views = await asyncio.gather(*(n.aview() for n in nodes))
            return all(agrees(v, ids) for v in views)
        return await self.aawait(ok, timeout, "%s to agree that %s are alive"
                                 % ([n.id for n in nodes], ids))

    async def aawait_owner(self, room, owner, nodes=None, timeout=10.0,
                           replica=None):
        """Polls until every node of `nodes` (default: the running ones)
        names `owner` (and `replica`, if given) for `room`; returns the
        seconds it took."""
        nodes = self.up_nodes() if nodes is None else nodes

        async def ok():
            ps = await asyncio.gather(*(n.aplacement(room) for n in nodes))
            return all(p is not None and p[0] == owner
                       and (replica is None or p[1] == replica) for p in ps)
        return await self.aawait(ok, timeout, "%s to name %s the owner of %s"
                                 % ([n.id for n in nodes], owner, room))


def start_cluster(binary, n=3, runner=None, memory=None, extra=(),
                  ids=None):
    """Starts `n` nodes (n1..nN) and waits until all list all alive.
    Returns the Cluster; on failure every node is killed."""
    ids = ids or ["n%d" % (i + 1) for i in range(n)]
    c = Cluster(binary, ids, runner=runner, memory=memory, extra=extra)
    try:
        c.await_membership()
    except BaseException:
        c.close()
        raise
    return c


# -- rooms -------------------------------------------------------------------

def find_room(nodes, owner, replica=None, tag="room", batch=200,
              max_candidates=4000):
    """A fresh room id (unique per call) whose owner is `owner` (and replica
    `replica`, if given) in the view of every node in `nodes`. Candidates
    `execution:<tag>-<random>-<i>` are asked in batches of `batch`."""
    prefix = "%s:%s-%s-" % (ROOM_KIND, tag, uuid.uuid4().hex[:8])
    first, others = nodes[0], nodes[1:]
    for start in range(0, max_candidates, batch):
        rooms = [prefix + str(i) for i in range(start, start + batch)]
        got = first.placements(rooms)
        h.check(len(got) == len(rooms), "%s answered %d placements for %d "
                "rooms" % (first.id, len(got), len(rooms)))
        hits = [r for r in rooms if got[r][0] == owner
                and (replica is None or got[r][1] == replica)]
        if not hits:
            continue
        # Everyone must agree on the candidates, or the test is meaningless.
        for n in others:
            theirs = n.placements(hits)
            for r in hits:
                h.check(theirs.get(r) == got[r],
                        "%s and %s disagree on the placement of %s: %r vs %r"
                        % (first.id, n.id, r, got[r], theirs.get(r)))
        return hits[0]
    raise AssertionError("no room among %d candidates has owner %s%s"
                         % (max_candidates, owner,
                            "" if replica is None else " and replica "
                            + replica))


# -- subscriber ---------------------------------------------------------------

class SubscribeRefused(AssertionError):
    """The subscribe got an error frame (or nothing) instead of a reply."""


class SubSession:
    """One WebSocket connection of a Subscriber."""

    def __init__(self, node_id, since):
        self.node_id = node_id
        self.since = since      # (epoch, offset) sent, or None
        self.reply = None       # the `subscription` frame
        self.first = None       # index in Subscriber.events of its first
        self.count = 0          # events received in this session
        self.t_open = time.monotonic()
        self.t_reply = None
        self.t_end = None
        self.end = None         # how it ended

    def describe(self, events):
        r = self.reply or {}
        offs = [events[i][0] for i in range(self.first,
                                            self.first + self.count)] \
            if self.count else []
        return ("on %s since=%s reply(epoch=%s offset=%s recovered=%s) "
                "%d events [%s..%s] end=%s"
                % (self.node_id, self.since, r.get("epoch"), r.get("offset"),
                   r.get("recovered"), self.count,
                   offs[0] if offs else "-", offs[-1] if offs else "-",
                   self.end))


class Subscriber:
    """Subscribes to `room` at a node and logs every event as
    (offset, epoch, data, arrival time, session index) in `events`.

    When the connection ends (the node died, the server closed it, an error
    frame for the room), it reconnects by itself: `pick(exclude, attempt)`
    (default: the cluster's running nodes, the failed one last) names the
    node to try, and the subscribe carries `since` = (epoch, offset) of the
    last event seen (of the first reply when none was). Attempts are
    retried for up to `reconnect_timeout` seconds; then `failed` says why.
    """

    def __init__(self, name, token, room, cluster=None, pick=None,
                 reconnect_timeout=20.0, reply_timeout=5.0, spread=None):
        self.name = name
        self.token = token
        self.room = room
        self.cluster = cluster
        self._pick = pick
        self.reconnect_timeout = reconnect_timeout
        self.reply_timeout = reply_timeout
        self.events = []
        self.sessions = []
        self.problems = []
        self.epoch = None       # the cursor: epoch ...
        self.cursor = None      # ... and last offset seen
        self.first_expected = None
        self.ws = None
        self.node = None
        self.task = None
        self.closing = False
        self.failed = None
        self.attempts = []      # (node id, time, what) of failed reconnects
        self._progress = asyncio.Event()
        self._move_to = None
        # Which survivor to try first: clients of one node take turns.
        self._spread = zlib.crc32(name.encode()) if spread is None \
            else spread

    def __repr__(self):
        return "Subscriber(%s on %s, cursor %s)" % (
            self.name, self.node.id if self.node else None, self.cursor)

    @property
    def last_offset(self):
        return self.events[-1][0] if self.events else None

    # life
    async def start(self, node):
        """First subscribe, without `since`; raises when refused."""
        await self._open(node, use_since=False)
        self.task = asyncio.ensure_future(self._run())
        return self

    async def close(self):
        self.closing = True
        if self.ws is not None:
            await _drop(self.ws)
        if self.task is not None:
            try:
                await asyncio.wait_for(self.task, 5)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                self.task.cancel()
        if self.ws is not None:
            await _drop(self.ws)  # a resume may have finished meanwhile
        if self.sessions and self.sessions[-1].end is None:
            self._end_session("closed by the test")

    async def move(self, node):
        """Drops the connection and resumes at `node` (with `since`)."""
        self._move_to = node
        if self.sessions:
            self._end_session("moved to %s by the test" % node.id)
        if self.ws is not None:
            await _drop(self.ws)

    # progress
    async def wait_offset(self, offset, timeout):
        """True once an event with offset >= `offset` was received."""
        deadline = time.monotonic() + timeout
        while not (self.events and self.cursor is not None
                   and self.cursor >= offset):
            left = deadline - time.monotonic()
            if left <= 0 or self.failed or (self.task is not None
                                            and self.task.done()):
                return False
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), min(left, 0.2))
            except asyncio.TimeoutError:
                pass
        return True

    def describe(self):
        rows = ["%s: %d events, cursor (%s, %s), first expected %s%s"
                % (self.name, len(self.events), self.epoch, self.cursor,
                   self.first_expected,
                   ", FAILED: " + self.failed if self.failed else "")]
        for i, s in enumerate(self.sessions):
            rows.append("  #%d %s" % (i, s.describe(self.events)))
        if self.attempts:
            rows.append("  failed attempts: %s" % "; ".join(
                "%s: %s" % (n, w) for n, _, w in self.attempts[-6:]))
        return "\n".join(rows)

    # internals
    def _url(self, node):
        return node.srv.ws_url(self.token)

    async def _open(self, node, use_since):
        since = (self.epoch, self.cursor) if use_since else None
        try:
            ws = await asyncio.wait_for(
                websockets.connect(self._url(node), open_timeout=3,
                                   ping_interval=None, close_timeout=1,
                                   max_size=16 * 1024 * 1024,
                                   max_queue=None), 4)
        except (OSError, asyncio.TimeoutError,
                websockets.InvalidHandshake, websockets.WebSocketException) \
                as e:
            raise SubscribeRefused("connect to %s: %s: %s"
                                   % (node.id, type(e).__name__, e))
        s = SubSession(node.id, since)
        s.first = len(self.events)
        msg = {"type": "subscribe", "room_id": self.room}
        if since is not None:
            msg["since"] = {"epoch": since[0], "offset": since[1]}
        try:
            await ws.send(json.dumps(msg))
            deadline = time.monotonic() + self.reply_timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SubscribeRefused("%s: no subscription reply within "
                                           "%.1fs" % (node.id,
                                                      self.reply_timeout))
                text = await asyncio.wait_for(ws.recv(), left)
                f = json.loads(text)
                if f.get("room_id") != self.room:
                    continue
                if f.get("type") == "error":
                    raise SubscribeRefused("%s: error frame %s"
                                           % (node.id, json.dumps(f)[:300]))
                if f.get("type") == "subscription":
                    break
                if "offset" in f:
                    self.problems.append("%s: event before the subscription "
                                         "reply on %s: %s"
                                         % (self.name, node.id,
                                            json.dumps(f)[:200]))
        except SubscribeRefused:
            await _drop(ws)
            raise
        except (asyncio.TimeoutError, websockets.ConnectionClosed, OSError,
                ValueError) as e:
            await _drop(ws)
            raise SubscribeRefused("%s: subscribe: %s: %s"
                                   % (node.id, type(e).__name__, e))
        s.reply = f
        s.t_reply = time.monotonic()
        if since is None:
            self.epoch = f.get("epoch")
            self.cursor = f.get("offset")
            self.first_expected = (f.get("offset") or 0) + 1
        elif f.get("recovered") is not True:
            self.problems.append(
                "%s: resume at %s since %s answered recovered=%r (reply %s)"
                % (self.name, node.id, since, f.get("recovered"),
                   json.dumps(f)[:300]))
            if f.get("recovered") is False:
                # The documented, declared gap: continue from the reply.
                self.epoch = f.get("epoch")
                self.cursor = f.get("offset")
        elif f.get("epoch") != self.epoch:
            self.problems.append("%s: recovered resume at %s with epoch %r, "
                                 "cursor epoch %r" % (self.name, node.id,
                                                      f.get("epoch"),
                                                      self.epoch))
        self.sessions.append(s)
        self.ws = ws
        self.node = node

    def _on_event(self, f):
        s = self.sessions[-1]
        off = f.get("offset")
        ep = f.get("epoch")
        self.events.append((off, ep, f.get("data"), time.monotonic(),
                            len(self.sessions) - 1))
        s.count += 1
        if ep != self.epoch:
            self.problems.append("%s: event %s on %s has epoch %r, cursor "
                                 "epoch %r" % (self.name, off, s.node_id, ep,
                                               self.epoch))
        if isinstance(off, int) and (self.cursor is None or off > self.cursor):
            self.cursor = off
        self._progress.set()

    def _end_session(self, how):
        s = self.sessions[-1]
        if s.end is None:
            s.end = how
            s.t_end = time.monotonic()

    async def _run(self):
        while not self.closing:
            try:
                text = await self.ws.recv()
            except websockets.ConnectionClosed as e:
                self._end_session("closed %s %r" % (e.code, e.reason))
            except (OSError, asyncio.IncompleteReadError) as e:
                self._end_session("%s: %s" % (type(e).__name__, e))
            else:
                try:
                    f = json.loads(text)
                except ValueError:
                    self.problems.append("%s: frame is not JSON: %r"
                                         % (self.name, text[:200]))
                    continue
                if f.get("room_id") != self.room:
                    continue
                t = f.get("type")
                if t == "subscription":
                    self.problems.append("%s: a second subscription frame "
                                         "mid-session: %s"
                                         % (self.name, json.dumps(f)[:300]))
                    continue
                if t == "error":
                    # Recorded; the session is over, resume elsewhere.
                    self.problems.append("%s: error frame for the room on "
                                         "%s: %s" % (self.name, self.node.id,
                                                     json.dumps(f)[:300]))
                    self._end_session("error frame")
                    await _drop(self.ws)
                elif "offset" in f:
                    self._on_event(f)
                    continue
                else:
                    continue
            if self.closing:
                return
            self._progress.set()
            await self._reconnect(self.node)

    def _candidates(self, exclude, attempt):
        if self._move_to is not None:
            node, self._move_to = self._move_to, None
            return node
        if self._pick is not None:
            return self._pick(exclude, attempt)
        up = [n for n in self.cluster.up_nodes()]
        others = [n for n in up if n is not exclude]
        pool = others or up
        if not pool:
            return None
        # Spread the resumes of several clients over the survivors.
        return pool[(attempt + self._spread) % len(pool)]

    async def _reconnect(self, failed_node):
        deadline = time.monotonic() + self.reconnect_timeout
        attempt = 0
        while not self.closing:
            node = self._candidates(failed_node, attempt)
            attempt += 1
            if node is not None:
                try:
                    await self._open(node, use_since=True)
                    self._progress.set()
                    return
                except SubscribeRefused as e:
                    self.attempts.append((node.id, time.monotonic(), str(e)))
            if time.monotonic() > deadline:
                self.failed = ("no node took the resume within %.0fs; last "
                               "attempts: %s"
                               % (self.reconnect_timeout, "; ".join(
                                   w for _, _, w in self.attempts[-3:])))
                self._progress.set()
                self.closing = True
                return
            await asyncio.sleep(0.05 if attempt < 5 else 0.2)


async def _drop(ws):
    """Ends a connection without waiting for the peer (it may be dead)."""
    try:
        ws.transport.abort()
    except Exception:  # noqa: BLE001
        pass
    try:
        await asyncio.wait_for(ws.wait_closed(), 2)
    except Exception:  # noqa: BLE001
        pass


async def start_subscribers(cluster, room, placement, token=None,
                            prefix="s", **kw):
    """One Subscriber per entry of `placement` (a list of nodes), started
    in parallel; returns them in that order."""
    token = token or h.mint_token("cluster-sub", ["%s:*" % ROOM_KIND])
    subs, ordinal = [], {}
    for i, n in enumerate(placement):
        k = ordinal[n.id] = ordinal.get(n.id, -1) + 1
        subs.append(Subscriber("%s%d@%s" % (prefix, i, n.id), token, room,
                               cluster=cluster, spread=k, **kw))
    await asyncio.gather(*(s.start(n) for s, n in zip(subs, placement)))
    return subs


async def close_all(subs):
    await asyncio.gather(*(s.close() for s in subs), return_exceptions=True)


async def caught_up(subs, offset, timeout):
    """Waits (bounded) until every subscriber has seen `offset`; returns
    the ones that did not."""
    ok = await asyncio.gather(*(s.wait_offset(offset, timeout)
                                for s in subs))
    return [s for s, good in zip(subs, ok) if not good]


async def wait_caught_up(subs, offset, timeout):
    """Every subscriber has seen `offset`; raises naming the laggards."""
    late = await caught_up(subs, offset, timeout)
    if late:
        raise AssertionError(
            "%d of %d subscribers did not reach offset %d within %.0fs:\n%s"
            % (len(late), len(subs), offset, timeout,
               "\n".join(s.describe() for s in late[:6])))


# -- publisher ----------------------------------------------------------------

class PublishRecord:
    __slots__ = ("pid", "seq", "data", "t_send", "t_ack", "offset", "node",
                 "attempts", "error", "reply")

    def __init__(self, pid, seq, data):
        self.pid = pid
        self.seq = seq
        self.data = data
        self.t_send = None      # when it was started (first attempt)
        self.t_ack = None
        self.offset = None
        self.node = None        # the node that acknowledged
        self.attempts = []      # (node id, time, outcome) of failed attempts
        self.error = None       # a refusal that is not retried, or give-up
        self.reply = None


RETRYABLE = (429, 500, 502, 503, 504)


class Publisher:
    """Publishes `{"pid", "seq"}` events to `room` with publish_id = pid,
    at `rate` per second, each publish in its own task (at most
    `max_in_flight` at once, so one stuck request does not stop the
    stream).

    An attempt that gets no answer within `attempt_timeout` (refused, reset,
    timed out) is retried at the next live node; a 429/5xx is retried at the
    same node after a short pause, and at the next one after three such in
    a row. The same publish_id and body are sent every time. A publish is
    given up (`error`) after `give_up` seconds; any other status is a
    refusal and is not retried.

    `via` is the node to publish through (a list: publishes take turns);
    `cluster.up_nodes()` supplies the others for retries. Records:
    `records` (in publish order), `by_pid`, `by_offset`, `problems` (e.g.
    two publish_ids acknowledged with one offset)."""

    def __init__(self, cluster, room, via, rate=100.0, prefix=None,
                 api_key=h.API_KEY, attempt_timeout=2.5, give_up=25.0,
                 max_in_flight=400):
        self.cluster = cluster
        self.room = room
        self.via = via
        self.rate = float(rate)
        self.prefix = prefix or "p" + uuid.uuid4().hex[:6]
        self.api_key = api_key
        self.attempt_timeout = attempt_timeout
        self.give_up = give_up
        self.sem = asyncio.Semaphore(max_in_flight)
        self.records = []
        self.by_pid = {}
        self.by_offset = {}
        self.problems = []
        self.tasks = set()
        self.pools = {}         # node id -> [AsyncHttp]
        self.seq = 0
        self.throttled = 0      # publishes that waited for a free slot
        self._acked = asyncio.Event()

    # counts
    def acked(self):
        return [r for r in self.records if r.offset is not None]

    def max_offset(self):
        return max(self.by_offset) if self.by_offset else 0

    def in_flight(self):
        return len(self.tasks)

    # running
    async def run(self, count=None, duration=None, stop=None):
        """Starts publishes at the steady rate until `count` were started,
        `duration` seconds passed, or `stop` (an asyncio.Event) is set. Does
        not wait for their answers: see drain()."""
        h.check(count is not None or duration is not None or stop is not None,
                "Publisher.run needs a bound")
        t0 = time.monotonic()
        k = 0
        while True:
            if count is not None and k >= count:
                break
            now = time.monotonic()
            if duration is not None and now - t0 >= duration:
                break
            if stop is not None and stop.is_set():
                break
            delay = t0 + k / self.rate - now
            if delay > 0:
                if stop is not None:
                    try:
                        await asyncio.wait_for(stop.wait(), delay)
                    except asyncio.TimeoutError:
                        pass
                    continue
                await asyncio.sleep(delay)
            if self.sem.locked():
                self.throttled += 1
            if not await self._slot(stop):
                break
            self._start_one()
            k += 1
        return k

    async def _slot(self, stop):
        """Takes an in-flight slot; False when `stop` was set first."""
        if stop is None:
            await self.sem.acquire()
            return True
        acq = asyncio.ensure_future(self.sem.acquire())
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({acq, stopper},
                                     return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if acq in done:
            return True
        acq.cancel()
        try:
            await acq
        except asyncio.CancelledError:
            return False
        self.sem.release()  # it was acquired after all
        return False

    def abort(self):
        """Cancels every publish still running (a failing test ends now;
        their records stay unacknowledged)."""
        for t in list(self.tasks):
            t.cancel()

    def stuck(self):
        """What the unacknowledged publishes last heard, as text."""
        waiting = [r for r in self.records if r.offset is None]
        if not waiting:
            return "none unacknowledged"
        last = {}
        for r in waiting:
            key = ("%s %s" % (r.attempts[-1][0], r.attempts[-1][2][:60])
                   if r.attempts else "first attempt pending")
            last[key] = last.get(key, 0) + 1
        now = time.monotonic()
        return ("%d unacknowledged (oldest sent %.1fs ago, seq %d); last "
                "outcomes: %s" % (len(waiting), now - waiting[0].t_send,
                                  waiting[0].seq, "; ".join(
                                      "%d x %s" % (n, k) for k, n in
                                      sorted(last.items(),
                                             key=lambda kv: -kv[1])[:5])))

    def _start_one(self):
        self.seq += 1
        pid = "%s-%d" % (self.prefix, self.seq)
        rec = PublishRecord(pid, self.seq, {"pid": pid, "seq": self.seq})
        rec.t_send = time.monotonic()
        self.records.append(rec)
        self.by_pid[pid] = rec
        t = asyncio.ensure_future(self._publish(rec))
        self.tasks.add(t)
        t.add_done_callback(self._done)
        return rec

    def _done(self, t):
        self.tasks.discard(t)
        self.sem.release()

    async def drain(self, timeout=30.0):
        """Waits (bounded) for every started publish to be acknowledged or
        given up. Those still running after `timeout` are cancelled and
        recorded in `problems` (check_acks reports them); returns how many
        there were."""
        if not self.tasks:
            return 0
        _, pending = await asyncio.wait(list(self.tasks), timeout=timeout)
        if pending:
            self.problems.append("%d publishes still unanswered %.0fs after "
                                 "publishing stopped: %s"
                                 % (len(pending), timeout, self.stuck()))
            self.abort()
            await asyncio.wait(list(pending), timeout=5)
        return len(pending)

    async def wait_for(self, pred, timeout, what):
        """Polls `pred(self)` on every acknowledgement (bounded)."""
        deadline = time.monotonic() + timeout
        while not pred(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out after %.1fs waiting for %s "
                                     "(%d acknowledged, %d in flight: %s)"
                                     % (timeout, what, len(self.by_offset),
                                        len(self.tasks), self.stuck()))
            self._acked.clear()
            try:
                await asyncio.wait_for(self._acked.wait(), min(left, 0.2))
            except asyncio.TimeoutError:
                pass

    def close(self):
        self.abort()
        for pool in self.pools.values():
            for c in pool:
                c.close()
        self.pools.clear()

    # one publish
    def _order(self, rec):
        up = self.cluster.up_nodes()
        via = self.via if isinstance(self.via, (list, tuple)) else [self.via]
        # With several `via` nodes, publishes take turns among them.
        pick = via[rec.seq % len(via)]
        return [n for n in up if n is pick] + [n for n in up if n is not pick]

    async def _publish(self, rec):
        try:
            await self._publish_until_answered(rec)
        except Exception as e:  # noqa: BLE001 - reported by check_acks
            rec.error = "publisher bug: %s: %s" % (type(e).__name__, e)

    async def _publish_until_answered(self, rec):
        deadline = rec.t_send + self.give_up
        turn = 0          # which node of the order
        strikes = 0       # retryable answers in a row at this node
        pause = 0.05
        while True:
            order = self._order(rec)
            if order:
                node = order[turn % len(order)]
                outcome = await self._attempt(node, rec)
                if outcome in ("ok", "refused"):
                    return
                if outcome == "no answer" or strikes >= 2:
                    turn += 1
                    strikes = 0
                else:
                    strikes += 1
            if time.monotonic() > deadline:
                rec.error = "not acknowledged within %.0fs; attempts: %s" % (
                    self.give_up, "; ".join("%s %s" % (n, o) for n, _, o in
                                            rec.attempts[-4:]))
                return
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 0.3)

    def _conn(self, node):
        pool = self.pools.setdefault(node.id, [])
        if pool:
            return pool.pop(), True
        return AsyncHttp(node.port, timeout=self.attempt_timeout), False

    async def _attempt(self, node, rec):
        conn, reused = self._conn(node)
        t = time.monotonic()
        try:
            try:
                status, text = await conn.publish(self.api_key, self.room,
                                                  rec.data, rec.pid)
            except HttpError:
                if not (reused and time.monotonic() - t < 0.5):
                    raise
                # A kept-alive connection the server had closed: once more
                # on a fresh one before calling the node unanswering.
                conn = AsyncHttp(node.port, timeout=self.attempt_timeout)
                status, text = await conn.publish(self.api_key, self.room,
                                                  rec.data, rec.pid)
        except HttpError as e:
            conn.close()
            rec.attempts.append((node.id, t, "no answer (%s)" % e))
            return "no answer"
        self.pools.setdefault(node.id, []).append(conn)
        if status in RETRYABLE:
            rec.attempts.append((node.id, t, "HTTP %d %s"
                                 % (status, text[:120])))
            return "retry"
        if status != 200:
            rec.error = "refused by %s: HTTP %d %s" % (node.id, status,
                                                        text[:300])
            return "refused"
        try:
            j = json.loads(text)
        except ValueError:
            j = None
        if not (isinstance(j, dict) and j.get("room_id") == self.room
                and isinstance(j.get("offset"), int)
                and not isinstance(j.get("offset"), bool)):
            rec.error = "%s answered 200 without {room_id, offset}: %r" % (
                node.id, text[:300])
            return "refused"
        self._ack(rec, j, node)
        return "ok"

    def _ack(self, rec, reply, node):
        off = reply["offset"]
        rec.offset = off
        rec.reply = reply
        rec.node = node.id
        rec.t_ack = time.monotonic()
        other = self.by_offset.get(off)
        if other is not None and other is not rec:
            self.problems.append(
                "offset %d acknowledged for two publishes: %s (via %s) and %s "
                "(via %s)" % (off, other.pid, other.node, rec.pid, node.id))
        else:
            self.by_offset[off] = rec
        self._acked.set()

    # after the run
    def check_acks(self, first_offset=1):
        """Problems with the acknowledgements themselves: publishes given up
        or refused, offsets acknowledged twice, offsets not dense from
        `first_offset` to the highest."""
        out = list(self.problems)
        bad = [r for r in self.records if r.offset is None]
        for r in bad[:10]:
            out.append("publish %s (seq %d) not acknowledged: %s"
                       % (r.pid, r.seq, r.error or "still in flight"))
        if len(bad) > 10:
            out.append("... %d publishes not acknowledged in all" % len(bad))
        if self.by_offset:
            top = self.max_offset()
            holes = sorted(set(range(first_offset, top + 1))
                           - set(self.by_offset))
            if holes:
                out.append("acknowledged offsets are not dense %d..%d: no "
                           "publish was acknowledged with %s%s"
                           % (first_offset, top, holes[:20],
                              " (%d in all)" % len(holes)
                              if len(holes) > 20 else ""))
        return out

    async def reverify(self, nodes, records=None, concurrency=8,
                       window=900):
        """Publishes acknowledged records again (same publish_id and body),
        spread over `nodes`: each must be answered 200 with its first
        offset. Returns problems. Only records among the last `window`
        offsets are sent: the server remembers publish_ids for the room's
        last 1,000 events."""
        low = self.max_offset() - window
        records = [r for r in (records or self.records)
                   if r.offset is not None and r.offset > low]
        problems = []
        queue_ = list(enumerate(records))
        conns = [AsyncHttp(nodes[i % len(nodes)].port, timeout=5.0)
                 for i in range(concurrency)]
        names = [nodes[i % len(nodes)].id for i in range(concurrency)]

        async def worker(i):
            while queue_:
                _, r = queue_.pop()
                try:
                    status, text = await conns[i].publish(
                        self.api_key, self.room, r.data, r.pid)
                except HttpError as e:
                    problems.append("retry of %s at %s: no answer (%s)"
                                    % (r.pid, names[i], e))
                    continue
                off = None
                if status == 200:
                    try:
                        off = json.loads(text).get("offset")
                    except ValueError:
                        pass
                if status != 200 or off != r.offset:
                    problems.append("retry of %s (acknowledged %d by %s) at "
                                    "%s: HTTP %d %s" % (
                                        r.pid, r.offset, r.node, names[i],
                                        status, text[:200]))
        try:
            await asyncio.gather(*(worker(i) for i in range(concurrency)))
        finally:
            for c in conns:
                c.close()
        return problems

    def summary(self):
        acked = self.acked()
        retried = [r for r in acked if r.attempts]
        return ("%d publishes, %d acknowledged (offsets 1..%d), %d needed "
                "retries (%d failed attempts), %d throttled"
                % (len(self.records), len(acked), self.max_offset(),
                   len(retried), sum(len(r.attempts) for r in self.records),
                   self.throttled))


# -- the checker --------------------------------------------------------------

def snapshot(subs, pub):
    """Where everyone is, as text: for a test that fails midway."""
    rows = ["publisher: %s; %s" % (pub.summary(), pub.stuck())]
    for s in subs:
        rows.append("%s: %d events, last offset %s, %d connections%s; "
                    "latest %s" % (
                        s.name, len(s.events), s.last_offset,
                        len(s.sessions),
                        ", FAILED: " + s.failed if s.failed else "",
                        s.sessions[-1].describe(s.events)
                        if s.sessions else "-"))
    return "\n  ".join(rows)


def _canon(data):
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def check_delivery(subs, pub, expect_epoch=None):
    """Problems (a list of text, empty when all is well) against the
    contract of a clustered room:

      * one epoch across every reply, event and client;
      * no offset names two different events, and no publish_id was stored
        at two offsets, over every acknowledgement and every delivery;
      * every acknowledgement is good (Publisher.check_acks);
      * every subscriber received offsets first_expected, first_expected+1,
        … up to the highest acknowledged one, each exactly once and in
        order across all its connections, each with the acknowledged
        payload; every resume was answered recovered:true.
    """
    problems = []
    epochs = {}
    if expect_epoch is not None:
        epochs[expect_epoch] = "expected"
    for s in subs:
        for i, ss in enumerate(s.sessions):
            if ss.reply is not None:
                epochs.setdefault(ss.reply.get("epoch"),
                                  "%s session %d reply" % (s.name, i))
        for ev in s.events:
            epochs.setdefault(ev[1], "%s event %s" % (s.name, ev[0]))
    for r in pub.acked():
        if "epoch" in r.reply:
            epochs.setdefault(r.reply["epoch"], "ack of %s" % r.pid)
    if len(epochs) > 1:
        problems.append("more than one epoch: %s" % "; ".join(
            "%r first seen in %s" % kv for kv in list(epochs.items())[:5]))

    # Forks: offset -> payloads, publish_id -> offsets.
    names = {}   # offset -> {canonical payload: first witness}
    placed = {}  # pid -> {offset: first witness}
    for r in pub.acked():
        names.setdefault(r.offset, {}).setdefault(_canon(r.data),
                                                  "ack of %s by %s"
                                                  % (r.pid, r.node))
        placed.setdefault(r.pid, {}).setdefault(r.offset, "ack by %s"
                                                % r.node)
    for s in subs:
        for off, _, data, _, si in s.events:
            where = "%s via %s" % (s.name, s.sessions[si].node_id)
            names.setdefault(off, {}).setdefault(_canon(data), where)
            pid = data.get("pid") if isinstance(data, dict) else None
            if pid is not None:
                placed.setdefault(pid, {}).setdefault(off, where)
    forks = sorted(o for o, v in names.items() if len(v) > 1)
    for o in forks[:10]:
        problems.append("fork: offset %s names %d events: %s" % (
            o, len(names[o]), "; ".join("%s (%s)" % kv
                                        for kv in names[o].items())))
    if len(forks) > 10:
        problems.append("... %d forked offsets in all" % len(forks))
    twice = sorted(p for p, v in placed.items() if len(v) > 1)
    for p in twice[:10]:
        problems.append("publish_id %s stored at %d offsets: %s"
                        % (p, len(placed[p]), placed[p]))

    problems += pub.check_acks()
    top = pub.max_offset()

    for s in subs:
        expected = s.first_expected
        if expected is None:
            problems.append("%s never got a subscription reply" % s.name)
            continue
        bad = 0
        for off, _, data, _, si in s.events:
            where = "%s (session %d on %s)" % (s.name, si,
                                               s.sessions[si].node_id)
            if off != expected:
                bad += 1
                if bad <= 5:
                    what = ("duplicate or out of order"
                            if isinstance(off, int) and off < expected
                            else "gap")
                    problems.append("%s: %s: got offset %s, expected %d"
                                    % (where, what, off, expected))
                if isinstance(off, int) and off > expected:
                    expected = off + 1
                continue
            expected += 1
            r = pub.by_offset.get(off)
            if r is None:
                bad += 1
                if bad <= 5:
                    problems.append("%s: offset %s was delivered but no "
                                    "publish was acknowledged with it: %r"
                                    % (where, off, data))
            elif data != r.data:
                bad += 1
                if bad <= 5:
                    problems.append("%s: offset %s carried %r; acknowledged "
                                    "was %r (%s)" % (where, off, data,
                                                     r.data, r.pid))
        if expected - 1 < top:
            problems.append("%s: received up to %d of %d acknowledged "
                            "(missing %d..%d)" % (s.name, expected - 1, top,
                                                  expected, top))
        if bad:
            problems.append("%s: %d delivery problems; sessions:\n%s"
                            % (s.name, bad, s.describe()))
    for s in subs:
        problems += s.problems
        if s.failed:
            problems.append("%s: %s" % (s.name, s.failed))
    return problems


def assert_no_problems(problems, what):
    if problems:
        raise AssertionError("%s: %d problems:\n  %s" % (
            what, len(problems), "\n  ".join(problems[:25])))


def latencies(subs, pub):
    """End-to-end seconds (first publish attempt -> arrival) of every
    delivery of an acknowledged event."""
    out = []
    for s in subs:
        for off, _, data, t, _ in s.events:
            r = pub.by_offset.get(off)
            if r is not None and r.t_send is not None and data == r.data:
                out.append(t - r.t_send)
    return out


def ack_latencies(pub):
    return [r.t_ack - r.t_send for r in pub.acked()]


def first_new_delivery(sub, t0, above):
    """Seconds from `t0` to the first event with offset > `above` that
    `sub` received after `t0` (None if none)."""
    for off, _, _, t, _ in sub.events:
        if t >= t0 and isinstance(off, int) and off > above:
            return t - t0
    return None
