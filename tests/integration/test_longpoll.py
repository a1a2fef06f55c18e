#!/usr/bin/python3
"""Long-polling (`GET /api/v1/runs/{run_id}/events?wait=&cursor=`) against
a real `tidings serve`, with http.client:

refusals        401, 403, 400 for a bad cursor or wait
answers         events after a cursor at once (a JSON array with S0's
                event_type), X-Tidings-Cursor; `[]` after `wait` when nothing
                comes; a wait ends as soon as an event is committed
s0 client       S0's loop without a cursor: a finished run answers its whole
                history (with `completed`), a running one only new events
bounded         beyond --longpoll-max-waiters, 503
resume race     pollers loop with the cursor while a publisher posts, and
                abandon some requests mid-wait (forced reconnects): the
                checker finds 0 gaps and 0 duplicates for every poller

usage: /usr/bin/python3 test_longpoll.py <path to tidings>
"""

import http.client
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, Server, check, check_eq, mint_token, publish, \
    tidings_bin  # noqa: E402
from stream_tools import GapChecker, parse_cursor  # noqa: E402

EVENTS = 600
POLLERS = 6


def poll(srv, run, token, wait=None, cursor=None, limit=None, timeout=70.0,
         conn=None):
    q = {}
    if wait is not None:
        q["wait"] = str(wait)
    if cursor is not None:
        q["cursor"] = cursor
    if limit is not None:
        q["limit"] = str(limit)
    path = "/api/v1/runs/%s/events" % run
    if q:
        path += "?" + urllib.parse.urlencode(q)
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", srv.port,
                                           timeout=timeout)
    try:
        headers = {"Authorization": "Bearer " + token} if token else {}
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        body = r.read().decode()
        return r.status, r.getheader("X-Tidings-Cursor"), body
    finally:
        if own:
            c.close()


def refusals(srv):
    tok = mint_token("alice", rooms=["run:*"])
    check_eq(poll(srv, "r1", None)[0], 401, "no token")
    other = mint_token("bob", rooms=["pipeline:*"])
    check_eq(poll(srv, "r1", other)[0], 403, "outside the ACL")
    st, _, body = poll(srv, "r1", tok, cursor="garbage")
    check_eq(st, 400, "bad cursor")
    check("INVALID_CURSOR" in body, body)
    st, _, body = poll(srv, "r1", tok, wait="soon")
    check_eq(st, 400, "bad wait")
    check("INVALID_QUERY" in body, body)


def answers(srv):
    tok = mint_token("alice", rooms=["run:*"])
    for i in range(3):
        publish(srv, "run:r2", "pipeline.progress", {"i": i})
    st, cur, body = poll(srv, "r2", tok, wait=0)
    check_eq(st, 200, "status")
    check_eq(json.loads(body), [], "running, no cursor, no wait: nothing")
    epoch, pos = parse_cursor(cur)
    check_eq(pos, 3, "the cursor is the run's position")
    st, cur, body = poll(srv, "r2", tok, wait=30, cursor="%s:0" % epoch)
    events = json.loads(body)
    check_eq([e["payload"]["i"] for e in events], [0, 1, 2], "all three")
    e = events[0]
    check_eq(e["event_type"], "progress", "S0 event_type")
    check_eq(e["type"], "pipeline.progress", "type")
    check_eq(e["run_id"], "r2", "run_id")
    check_eq(e["cursor"], "%s:1" % epoch, "element cursor")
    check_eq(cur, "%s:3" % epoch, "next cursor")
    st, cur2, body = poll(srv, "r2", tok, wait=30, cursor="%s:1" % epoch,
                          limit=1)
    check_eq([x["payload"]["i"] for x in json.loads(body)], [1], "limit")
    # Nothing new: [] after the wait, cursor unchanged.
    t0 = time.monotonic()
    st, cur3, body = poll(srv, "r2", tok, wait=1, cursor=cur)
    dt = time.monotonic() - t0
    check_eq(json.loads(body), [], "timeout answer")
    check(0.8 < dt < 3.0, "answered after the wait: %.2fs" % dt)
    check_eq(cur3, cur, "cursor kept")
    # A wait ends as soon as an event is committed.
    timer = threading.Timer(0.5, lambda: publish(
        srv, "run:r2", "pipeline.progress", {"i": 3}))
    t0 = time.monotonic()
    timer.start()
    st, cur4, body = poll(srv, "r2", tok, wait=20, cursor=cur)
    dt = time.monotonic() - t0
    timer.join()
    check_eq([x["payload"]["i"] for x in json.loads(body)], [3], "woken")
    check(dt < 3.0, "woken promptly: %.2fs" % dt)
    check_eq(cur4, "%s:4" % epoch, "next cursor after wake-up")


def s0_client(srv):
    """S0's pollPipelineStatus: no cursor, loop until completed/failed."""
    tok = mint_token("alice", rooms=["run:*"])
    run = "r3"
    publish(srv, "run:" + run, "pipeline.started", {"x": 1})
    timer = threading.Timer(0.5, lambda: publish(
        srv, "run:" + run, "pipeline.completed", {"status": "success"}))
    timer.start()
    final = None
    deadline = time.monotonic() + 20
    while final is None and time.monotonic() < deadline:
        st, _, body = poll(srv, run, tok, wait=30)
        check_eq(st, 200, "poll status")
        for event in json.loads(body):
            if event["event_type"] in ("completed", "failed"):
                final = event
    timer.join()
    check(final is not None, "S0's loop saw the end")
    check_eq(final["payload"], {"status": "success"}, "final payload")
    # After the end, a poll without a cursor gets the whole run.
    st, _, body = poll(srv, run, tok, wait=30)
    types = [e["event_type"] for e in json.loads(body)]
    check_eq(types, ["started", "completed"], "finished run's history")


def bounded(binary, runner):
    with Server(binary, extra=["--longpoll-max-waiters", "2"]) as srv:
        runner.servers.append(srv)
        tok = mint_token("alice", rooms=["run:*"])
        held = []
        for _ in range(2):
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            c.request("GET", "/api/v1/runs/r4/events?wait=5",
                      headers={"Authorization": "Bearer " + tok})
            held.append(c)
        time.sleep(0.5)
        st, _, body = poll(srv, "r4", tok, wait=5)
        check_eq(st, 503, "third waiter refused")
        for c in held:
            r = c.getresponse()
            check_eq(r.status, 200, "held polls answer")
            r.read()
            c.close()
        st, _, _ = poll(srv, "r4", tok, wait=0)
        check_eq(st, 200, "a slot is free again")
        runner.servers.remove(srv)


def resume_race(srv):
    run = "race-" + str(random.randrange(1 << 30))
    tok = mint_token("alice", rooms=["run:*"])
    publish(srv, "run:" + run, "pipeline.progress", {"warmup": True})
    st, start, _ = poll(srv, run, tok, wait=0)
    epoch, base = parse_cursor(start)
    done = threading.Event()
    errors = []
    results = []
    abandoned = [0]
    polls = [0]

    def publisher():
        for i in range(EVENTS):
            publish(srv, "run:" + run, "pipeline.progress", {"seq": i + 1})
            if i % 40 == 0:
                time.sleep(0.03)
        done.set()

    def poller(k):
        rng = random.Random(100 + k)
        checker = GapChecker("poller-%d" % k)
        cursor = start
        try:
            while not checker.offsets or checker.offsets[-1] < EVENTS:
                if rng.random() < 0.15:
                    # Forced reconnect: send the request, drop the socket
                    # before the answer; the cursor is unchanged.
                    s = socket.create_connection(("127.0.0.1", srv.port), 5)
                    s.sendall(("GET /api/v1/runs/%s/events?wait=5&cursor=%s"
                               " HTTP/1.1\r\nHost: x\r\nAuthorization: "
                               "Bearer %s\r\n\r\n" % (run, cursor, tok))
                              .encode())
                    time.sleep(rng.random() * 0.05)
                    s.close()
                    abandoned[0] += 1
                    continue
                st, nxt, body = poll(srv, run, tok, wait=5, cursor=cursor,
                                     limit=rng.randint(1, 50), timeout=15)
                polls[0] += 1
                check_eq(st, 200, "race poll")
                for e in json.loads(body):
                    ep, off = parse_cursor(e["cursor"])
                    check_eq(ep, epoch, "epoch")
                    checker.add(off - base)
                cursor = nxt
                if not json.loads(body) and done.is_set() and \
                        parse_cursor(cursor)[1] - base >= EVENTS:
                    break
            results.append(checker)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append("poller %d: %s" % (k, exc))

    t0 = time.monotonic()
    threads = [threading.Thread(target=poller, args=(k,))
               for k in range(POLLERS)]
    for t in threads:
        t.start()
    pub = threading.Thread(target=publisher)
    pub.start()
    pub.join(120)
    for t in threads:
        t.join(120)
    check(not errors, "; ".join(errors))
    verdicts = [c.check(EVENTS) for c in results]
    check_eq(len(results), POLLERS, "pollers finished")
    print("  long-poll resume race: %d events, %d pollers, %d polls, %d "
          "abandoned mid-wait, %.1fs; gaps %d, duplicates %d"
          % (EVENTS, POLLERS, polls[0], abandoned[0],
             time.monotonic() - t0, sum(v["gaps"] for v in verdicts),
             sum(v["duplicates"] for v in verdicts)), flush=True)


def main():
    binary = tidings_bin()
    runner = Runner("test_longpoll")
    srv = Server(binary)
    runner.servers.append(srv)
    runner.run("refusals", refusals, srv)
    runner.run("answers", answers, srv)
    runner.run("s0_client", s0_client, srv)
    runner.run("bounded", bounded, binary, runner)
    runner.run("resume_race", resume_race, srv)
    runner.stop_server(srv)
    runner.finish()


if __name__ == "__main__":
    main()
