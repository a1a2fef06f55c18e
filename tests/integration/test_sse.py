#!/usr/bin/python3
"""Server-Sent Events (`GET /api/v1/sse/{channel}/{id}`) against a real
`tidings serve`, with a raw-socket EventSource (stream_tools.SseStream):

refusals        401 without a token, 403 outside the ACL, 400 for a bad
                Last-Event-ID or channel
s0 flow         S0's client: `?token=`, `retry:` first, named events
                (`pipeline.progress`) whose data is the payload and whose
                `id:` is the cursor; Authorization: Bearer works too; global
                channel `system`; heartbeat comments
operation       `current_state` first (id = the state's cursor), then events
resume race     several clients read while a publisher posts, drop their
                socket at random moments and reconnect with Last-Event-ID:
                the checker finds 0 gaps and 0 duplicates for every client

usage: /usr/bin/python3 test_sse.py <path to tidings>
"""

import json
import os
import random
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import API_KEY, Runner, Server, check, check_eq, get, http, \
    mint_token, publish, tidings_bin  # noqa: E402
from stream_tools import GapChecker, SseStream, parse_cursor  # noqa: E402

EVENTS = 600
CLIENTS = 6


def refusals(srv):
    tok = mint_token("alice", rooms=["pipeline:*"])
    s = SseStream(srv.port, "/api/v1/sse/pipeline/p1")
    check_eq(s.status, 401, "no token")
    s.close()
    s = SseStream(srv.port, "/api/v1/sse/pipeline/p1", token="garbage")
    check_eq(s.status, 401, "bad token")
    s.close()
    s = SseStream(srv.port, "/api/v1/sse/connector/c1", token=tok)
    check_eq(s.status, 403, "room outside the ACL")
    check("ACCESS_DENIED" in s.error_body, "403 body: %r" % s.error_body)
    s.close()
    s = SseStream(srv.port, "/api/v1/sse/pipeline/p1", token=tok,
                  last_event_id="not a cursor")
    check_eq(s.status, 400, "bad Last-Event-ID")
    check("INVALID_CURSOR" in s.error_body, "400 body: %r" % s.error_body)
    s.close()
    s = SseStream(srv.port, "/api/v1/sse/pipeline", token=tok)
    check_eq(s.status, 400, "pipeline needs an id")
    s.close()
    r = http("POST", srv.url("/api/v1/sse/pipeline/p1"), body="{}")
    check_eq(r.status, 405, "POST")


def s0_flow(srv):
    tok = mint_token("alice", rooms=["pipeline:*", "system:*"])
    s = SseStream(srv.port, "/api/v1/sse/pipeline/p-flow", token=tok)
    check_eq(s.status, 200, "status")
    check_eq(s.headers.get("content-type"), "text/event-stream",
             "content type")
    check_eq(s.headers.get("cache-control"), "no-cache", "cache-control")
    check_eq(s.headers.get("x-accel-buffering"), "no", "x-accel-buffering")
    # The retry hint is the stream's first bytes; a publish after the head
    # is out is live.
    time.sleep(0.3)
    publish(srv, "pipeline:p-flow", "progress", {"progress": 45})
    publish(srv, "pipeline:p-flow", "pipeline.completed", {"status": "ok"})
    ev = s.next()
    check_eq(s.retry, 3000, "retry hint before the first event")
    check_eq(ev["event"], "pipeline.progress", "S0 event name")
    check_eq(json.loads(ev["data"]), {"progress": 45}, "data is the payload")
    epoch, off = parse_cursor(ev["id"])
    check_eq(off, 1, "id offset")
    ev2 = s.next()
    check_eq(ev2["event"], "pipeline.completed", "second event")
    check_eq(ev2["id"], "%s:2" % epoch, "second id")
    s.close()

    # Bearer header (S0's Python client) and a resume from the first id.
    s = SseStream(srv.port, "/api/v1/sse/pipeline/p-flow", bearer=tok,
                  last_event_id=ev["id"])
    check_eq(s.status, 200, "bearer status")
    ev = s.next()
    check_eq(ev["id"], "%s:2" % epoch, "resumed after the first id")
    s.close()

    # S0's global channel: no id.
    s = SseStream(srv.port, "/api/v1/sse/system", token=tok)
    check_eq(s.status, 200, "system status")
    time.sleep(0.3)
    publish(srv, "system:all", "system.alert", {"level": "warning"})
    ev = s.next()
    check_eq(ev["event"], "system.alert", "global event name")
    s.close()


def heartbeats(srv):
    tok = mint_token("alice", rooms=["pipeline:*"])
    s = SseStream(srv.port, "/api/v1/sse/pipeline/quiet", token=tok)
    ev = s.next(timeout=5.0, comments=True)
    check_eq(ev, {"comment": "heartbeat"}, "a heartbeat comment")
    s.close()


def operation(srv):
    auth = {"Authorization": "Bearer " + API_KEY}
    r = http("POST", srv.url("/api/v1/operations"), headers=auth,
             body={"id": "op-sse", "kind": "operation", "owner": "alice"})
    check(r.status in (200, 201), "create operation: %r" % r)
    r = http("POST", srv.url("/api/v1/operations/op-sse/events"),
             headers=auth, body={"type": "progress",
                                 "data": {"percent": 40}})
    check_eq(r.status, 200, "operation event")
    tok = mint_token("alice", rooms=["operation:*"])
    s = SseStream(srv.port, "/api/v1/sse/operation/op-sse", token=tok)
    check_eq(s.status, 200, "status")
    ev = s.next()
    check_eq(ev["event"], "current_state", "current_state first")
    epoch, off = parse_cursor(ev["id"])
    check_eq(off, 1, "state cursor")
    state = json.loads(ev["data"])
    check(isinstance(state, dict), "state is an object: %r" % state)
    time.sleep(0.2)
    r = http("POST", srv.url("/api/v1/operations/op-sse/events"),
             headers=auth, body={"type": "progress",
                                 "data": {"percent": 80}})
    ev = s.next()
    check_eq(ev["id"], "%s:2" % epoch, "the next event follows the state")
    s.close()
    s = SseStream(srv.port, "/api/v1/sse/operation/nope", token=tok)
    check_eq(s.status, 200, "stream head before the room answers")
    ev = s.next()
    check_eq(ev["event"], "error", "unknown operation: error event")
    check("OPERATION_NOT_FOUND" in ev["data"], "error data %r" % ev["data"])
    s.close()


def resume_race(srv):
    room_id = "race-" + str(random.randrange(1 << 30))
    room = "pipeline:" + room_id
    tok = mint_token("alice", rooms=["pipeline:*"])
    publish(srv, room, "progress", {"seq": 0, "warmup": True})
    h = get(srv, "/api/v1/rooms/%s/history" % room, bearer=tok).json()
    epoch = h["epoch"]
    base = h["offset"]  # offsets above it are the race's
    done = threading.Event()
    acked = []

    def publisher():
        for i in range(EVENTS):
            acked.append(publish(srv, room, "progress", {"seq": i + 1}))
            if i % 50 == 0:
                time.sleep(0.02)
        done.set()

    results = []
    reconnects = [0]
    errors = []

    def client(k):
        rng = random.Random(k)
        checker = GapChecker("client-%d" % k)
        last = "%s:%d" % (epoch, base)
        try:
            while True:
                s = SseStream(srv.port, "/api/v1/sse/pipeline/" + room_id,
                              token=tok, last_event_id=last)
                check_eq(s.status, 200, "race stream")
                budget = rng.randint(5, 60)  # events before a forced drop
                try:
                    while budget > 0:
                        ev = s.next(timeout=3.0)
                        e, off = parse_cursor(ev["id"])
                        check_eq(e, epoch, "epoch")
                        checker.add(off - base)
                        last = ev["id"]
                        budget -= 1
                        if off - base >= EVENTS:
                            break
                except (TimeoutError, OSError) as exc:
                    if not done.is_set():
                        raise AssertionError("client %d stalled: %s"
                                             % (k, exc))
                finally:
                    s.close()
                if checker.offsets and checker.offsets[-1] >= EVENTS:
                    break
                reconnects[0] += 1
            results.append(checker)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append("client %d: %s" % (k, exc))

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,))
               for k in range(CLIENTS)]
    for t in threads:
        t.start()
    pub = threading.Thread(target=publisher)
    pub.start()
    pub.join(120)
    for t in threads:
        t.join(120)
    check(not errors, "; ".join(errors))
    check_eq(len(results), CLIENTS, "clients finished")
    verdicts = [c.check(EVENTS) for c in results]
    print("  sse resume race: %d events, %d clients, %d forced reconnects, "
          "%.1fs; gaps %d, duplicates %d"
          % (EVENTS, CLIENTS, reconnects[0], time.monotonic() - t0,
             sum(v["gaps"] for v in verdicts),
             sum(v["duplicates"] for v in verdicts)), flush=True)
    check(reconnects[0] >= CLIENTS * 5, "too few reconnects: %d"
          % reconnects[0])


def main():
    binary = tidings_bin()
    runner = Runner("test_sse")
    srv = Server(binary, extra=["--sse-heartbeat", "1"])
    runner.servers.append(srv)
    runner.run("refusals", refusals, srv)
    runner.run("s0_flow", s0_flow, srv)
    runner.run("heartbeats", heartbeats, srv)
    runner.run("operation", operation, srv)
    runner.run("resume_race", resume_race, srv)
    runner.stop_server(srv)
    runner.finish()


if __name__ == "__main__":
    main()
