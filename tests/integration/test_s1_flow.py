#!/usr/bin/python3
"""Seed S1's whole client flow against a real `tidings serve`, written from
shared/seeds/001_5ff2606341f464e9.txt: token in the query, `connection`
frame, auto-joined `user:{sub}`, subscribe/unsubscribe with `subscription`
confirmations, execution_update/node_update events from the publish API,
"Access denied to room" errors, ping/pong, list_subscriptions, the stats and
rooms endpoints, /healthz and /metrics.

usage: /usr/bin/python3 test_s1_flow.py <path to tidings>
"""

import os
import sys
import uuid

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Runner, Server, WsClient, check, check_eq,  # noqa: E402
                     check_recent, get, metrics, mint_token, publish,
                     tidings_bin)

# The seed's own example payloads.
EXECUTION_DATA = {
    "execution_id": "123e4567-e89b-12d3-a456-426614174000",
    "status": "running",
    "progress_percentage": 45.5,
    "completed_nodes": 3,
    "total_nodes": 7,
    "current_node": "node-3",
}
NODE_DATA = {
    "execution_id": "123e4567-e89b-12d3-a456-426614174000",
    "node_execution_id": "abc-def-ghi",
    "node_id": "node-1",
    "node_name": "Customer Support Agent",
    "status": "running",
    "message": "Processing customer inquiry...",
}
S1_ROOMS = ["execution:*", "workflow:*"]


class Ctx:
    def __init__(self, srv):
        self.srv = srv
        self.published = 0
        self.denied = 0
        self.connections = 0


async def connect(ctx, sub, rooms=S1_ROOMS, admin=False, name=None):
    """Connects with ?token= and consumes the connection frame and the
    auto-join of user:{sub}; returns (client, connection frame)."""
    tok = mint_token(sub, rooms, admin=admin)
    c = await WsClient.connect(ctx.srv.ws_url(tok), name or sub)
    conn = await c.recv_type("connection")
    await c.recv_type("subscription", room_id="user:" + sub)
    ctx.connections += 1
    return c, conn


async def synced(c):
    """list_subscriptions: its answer comes after every earlier command of
    this client took effect, so it is a barrier for server-side state."""
    await c.send({"type": "list_subscriptions"})
    return await c.recv_type("subscriptions")


def pub(ctx, room, type_, data, event=None):
    ctx.published += 1
    return publish(ctx.srv, room, type_, data, event=event)


def check_event(frame, room, type_, event, offset, data):
    check_eq(frame.get("type"), type_, "event type")
    check_eq(frame.get("event"), event, "event name")
    check_eq(frame.get("room_id"), room, "event room_id")
    check_eq(frame.get("offset"), offset, "event offset")
    check_eq(frame.get("data"), data, "event data (exactly as published)")
    check_recent(frame.get("timestamp"), "event")


# -- tests -------------------------------------------------------------------

async def test_stats_and_rooms(ctx):
    """Runs first, on a server nobody else has used: exact counts."""
    srv = ctx.srv
    e1, e2, w1 = ("execution:" + str(uuid.uuid4()),
                  "execution:" + str(uuid.uuid4()),
                  "workflow:" + str(uuid.uuid4()))
    a1, _ = await connect(ctx, "stats-alice", name="a1")
    a2, _ = await connect(ctx, "stats-alice", name="a2")
    b1, _ = await connect(ctx, "stats-bob", name="b1")
    try:
        for c, room in ((a1, e1), (a2, w1), (b1, e2)):
            r = await c.subscribe(room)
            check_eq(r.get("event"), "subscribed", "subscribe " + room)
            await synced(c)
        alice = mint_token("stats-alice", S1_ROOMS)
        bob = mint_token("stats-bob", ["execution:*"])
        admin = mint_token("stats-admin", [], admin=True)

        r = get(srv, "/api/v1/ws/stats", alice)
        check_eq(r.status, 200, "GET /api/v1/ws/stats status")
        check(r.headers.get("Content-Type", "").startswith(
            "application/json"), "stats Content-Type: %r"
            % r.headers.get("Content-Type"))
        check_eq(r.json(), {"total_connections": 3, "user_connections": 2,
                            "active_rooms": 5}, "stats for stats-alice")
        r = get(srv, "/api/v1/ws/stats", bob)
        check_eq(r.json(), {"total_connections": 3, "user_connections": 1,
                            "active_rooms": 5}, "stats for stats-bob")
        r = get(srv, "/api/v1/ws/stats", admin)
        check_eq(r.json(), {"total_connections": 3, "user_connections": 0,
                            "active_rooms": 5},
                 "stats for a user with no connection")

        def rooms_of(token):
            r = get(srv, "/api/v1/ws/rooms", token)
            check_eq(r.status, 200, "GET /api/v1/ws/rooms status")
            j = r.json()
            check_eq(sorted(j.keys()), ["active_rooms", "total_rooms"],
                     "rooms reply keys")
            check(isinstance(j["active_rooms"], list),
                  "active_rooms must be a list: %r" % j)
            check_eq(j["total_rooms"], len(j["active_rooms"]),
                     "total_rooms == len(active_rooms)")
            return sorted(j["active_rooms"])

        check_eq(rooms_of(alice), sorted(["user:stats-alice", e1, w1]),
                 "rooms seen by a normal user (only their own)")
        check_eq(rooms_of(bob), sorted(["user:stats-bob", e2]),
                 "rooms seen by another normal user")
        check_eq(rooms_of(admin),
                 sorted(["user:stats-alice", "user:stats-bob", e1, e2, w1]),
                 "rooms seen by an admin (all)")
    finally:
        for c in (a1, a2, b1):
            await c.close()


async def test_connection_frame_and_auto_join(ctx):
    tok = mint_token("alice", S1_ROOMS)
    c = await WsClient.connect(ctx.srv.ws_url(tok), "alice")
    c2 = await WsClient.connect(ctx.srv.ws_url(tok), "alice-2")
    try:
        first = await c.recv()
        check_eq(first.get("type"), "connection",
                 "first frame after connect (seed: Connection Confirmation)")
        check_eq(first.get("event"), "connected", "connection event")
        cid = first.get("connection_id")
        check(isinstance(cid, str) and cid, "connection_id must be a "
              "non-empty string: %r" % first)
        check_recent(first.get("timestamp"), "connection")
        sub = await c.recv()
        check_eq(sub.get("type"), "subscription",
                 "second frame (auto-join of the user room)")
        check_eq(sub.get("event"), "subscribed", "auto-join event")
        check_eq(sub.get("room_id"), "user:alice", "auto-joined room")
        check_recent(sub.get("timestamp"), "subscription")
        other = await c2.recv_type("connection")
        check(other.get("connection_id") != cid,
              "two connections got the same connection_id %r" % cid)
        ctx.connections += 2
    finally:
        await c.close()
        await c2.close()


async def test_events_from_publish_api(ctx):
    exec_id = str(uuid.uuid4())
    room = "execution:" + exec_id
    c, _ = await connect(ctx, "alice")
    try:
        r = await c.subscribe(room)
        check_eq(r.get("type"), "subscription", "reply to subscribe")
        check_eq(r.get("event"), "subscribed", "subscription event")
        check_eq(r.get("room_id"), room, "subscription room_id")
        check_recent(r.get("timestamp"), "subscription")

        data = dict(EXECUTION_DATA, execution_id=exec_id)
        off1 = pub(ctx, room, "execution_update", data, "status_changed")
        f = await c.recv_type("execution_update")
        check_event(f, room, "execution_update", "status_changed", off1, data)

        ndata = dict(NODE_DATA, execution_id=exec_id)
        off2 = pub(ctx, room, "node_update", ndata, "status_changed")
        check_eq(off2, off1 + 1, "offsets in a room are consecutive")
        f = await c.recv_type("node_update")
        check_event(f, room, "node_update", "status_changed", off2, ndata)

        # A workflow room, and an event published without `event`.
        wf = "workflow:" + str(uuid.uuid4())
        await c.subscribe(wf)
        woff = pub(ctx, wf, "workflow_update", {"name": "renamed", "n": [1, 2]})
        f = await c.recv_type("workflow_update")
        check_eq(f.get("room_id"), wf, "workflow event room")
        check_eq(f.get("offset"), woff, "workflow event offset")
        check_eq(f.get("data"), {"name": "renamed", "n": [1, 2]},
                 "workflow event data")
        check("event" not in f or f.get("event") in (None, ""),
              "an event published without `event` must not invent one: %r"
              % f)
        # Unicode and nesting survive unchanged.
        odd = {"msg": "héllo \u2603 \"quoted\" \\ back", "nested":
               {"a": None, "b": True, "c": -1.25e-3}, "list": []}
        ooff = pub(ctx, room, "execution_update", odd, "status_changed")
        f = await c.recv_type("execution_update")
        check_event(f, room, "execution_update", "status_changed", ooff, odd)
    finally:
        await c.close()


async def test_user_room_receives_notifications(ctx):
    c, _ = await connect(ctx, "alice")
    try:
        off = pub(ctx, "user:alice", "notification",
                  {"text": "Your export is ready"}, "created")
        f = await c.recv_type("notification")
        check_event(f, "user:alice", "notification", "created", off,
                    {"text": "Your export is ready"})
    finally:
        await c.close()


async def test_access_denied(ctx):
    c, _ = await connect(ctx, "alice", rooms=["execution:*"])
    try:
        denied = "workflow:" + str(uuid.uuid4())
        r = await c.subscribe(denied)
        ctx.denied += 1
        check_eq(r.get("type"), "error", "reply to a subscribe not granted")
        check_eq(r.get("message"), "Access denied to room",
                 "error message (seed's exact text)")
        check_eq(r.get("room_id"), denied, "error room_id")
        check_eq(r.get("error_code"), "ACCESS_DENIED", "error_code")

        r = await c.subscribe("user:bob")
        ctx.denied += 1
        check_eq((r.get("type"), r.get("message"), r.get("room_id")),
                 ("error", "Access denied to room", "user:bob"),
                 "another user's room must be denied")

        # Nothing published to the denied rooms reaches alice: publish there,
        # then to her own room; only the latter may arrive.
        pub(ctx, denied, "workflow_update", {"secret": 1})
        pub(ctx, "user:bob", "notification", {"secret": 2})
        sentinel = pub(ctx, "user:alice", "sentinel", {"n": 1})
        f = await c.recv_until(lambda f: f.get("type") not in ("error",),
                               "next frame")
        check_eq((f.get("type"), f.get("offset")), ("sentinel", sentinel),
                 "first frame after publishing to denied rooms")
        # The connection still works after the errors.
        await c.send({"type": "ping"})
        await c.recv_type("pong")
    finally:
        await c.close()

    # Exact room ids in the claim grant exactly those rooms.
    room = "execution:" + str(uuid.uuid4())
    c, _ = await connect(ctx, "dave", rooms=[room])
    try:
        r = await c.subscribe(room)
        check_eq(r.get("event"), "subscribed", "exactly granted room")
        other = "execution:" + str(uuid.uuid4())
        r = await c.subscribe(other)
        ctx.denied += 1
        check_eq((r.get("type"), r.get("room_id")), ("error", other),
                 "a room not in an exact grant")
        prefix = room + "x"
        r = await c.subscribe(prefix)
        ctx.denied += 1
        check_eq(r.get("type"), "error",
                 "a room id that only starts with a granted one")
    finally:
        await c.close()


async def test_ping_pong(ctx):
    c, _ = await connect(ctx, "alice")
    try:
        for _ in range(3):
            await c.send({"type": "ping"})
            f = await c.recv()
            check_eq(f.get("type"), "pong", "reply to ping")
            check_recent(f.get("timestamp"), "pong")
    finally:
        await c.close()


async def test_list_subscriptions(ctx):
    c, _ = await connect(ctx, "alice")
    try:
        r1 = "execution:" + str(uuid.uuid4())
        r2 = "workflow:" + str(uuid.uuid4())
        await c.subscribe(r1)
        await c.subscribe(r2)
        f = await synced(c)
        rooms = f.get("rooms")
        check(isinstance(rooms, list), "subscriptions.rooms must be a list: "
              "%r" % f)
        check_eq(sorted(rooms), sorted(["user:alice", r1, r2]),
                 "subscriptions listing")
        # Subscribing twice does not list a room twice.
        await c.subscribe(r1)
        f = await synced(c)
        check_eq(sorted(f.get("rooms")), sorted(["user:alice", r1, r2]),
                 "subscriptions after a repeated subscribe")
    finally:
        await c.close()


async def test_unsubscribe(ctx):
    c, _ = await connect(ctx, "alice")
    try:
        room = "execution:" + str(uuid.uuid4())
        keep = "execution:" + str(uuid.uuid4())
        await c.subscribe(room)
        await c.subscribe(keep)
        off = pub(ctx, room, "execution_update", {"n": 1}, "status_changed")
        f = await c.recv_type("execution_update", room_id=room)
        check_eq(f.get("offset"), off, "event before unsubscribe")

        await c.send({"type": "unsubscribe", "room_id": room})
        f = await c.recv_type("subscription", room_id=room)
        check_eq(f.get("event"), "unsubscribed", "reply to unsubscribe")
        lst = await synced(c)
        check_eq(sorted(lst.get("rooms")), sorted(["user:alice", keep]),
                 "subscriptions after unsubscribe")

        # Events for the room no longer arrive: publish to it, then to a room
        # still subscribed; the first frame must be the latter's.
        pub(ctx, room, "execution_update", {"n": 2}, "status_changed")
        koff = pub(ctx, keep, "execution_update", {"n": 3}, "status_changed")
        f = await c.recv()
        check_eq((f.get("room_id"), f.get("offset"), f.get("data")),
                 (keep, koff, {"n": 3}),
                 "first frame after publishing to an unsubscribed room")

        # Unsubscribing again is an error, not a silent success.
        await c.send({"type": "unsubscribe", "room_id": room})
        f = await c.recv()
        check_eq((f.get("type"), f.get("error_code"), f.get("room_id")),
                 ("error", "NOT_SUBSCRIBED", room),
                 "unsubscribe from a room not subscribed")
        # Subscribing again works and gets new events.
        await c.subscribe(room)
        off = pub(ctx, room, "execution_update", {"n": 4}, "status_changed")
        f = await c.recv_type("execution_update", room_id=room)
        check_eq((f.get("offset"), f.get("data")), (off, {"n": 4}),
                 "event after re-subscribing")
    finally:
        await c.close()


async def test_seed_javascript_client(ctx):
    """The seed's WorkflowWebSocket class, step by step: connect, read
    `connection`, subscribeToExecution, ping, and handle each message type
    its handleMessage switch knows."""
    exec_id = str(uuid.uuid4())
    tok = mint_token("seed-user", S1_ROOMS)
    c = await WsClient.connect(ctx.srv.ws_url(tok), "seed-client")
    try:
        msg = await c.recv()
        check_eq(msg["type"], "connection", "seed client's first message")
        check("connection_id" in msg, "seed logs message.connection_id")
        await c.send({"type": "subscribe", "room_id": "execution:" + exec_id})
        await c.recv_type("subscription", room_id="execution:" + exec_id)
        await c.send({"type": "ping"})
        await c.recv_type("pong")
        data = dict(EXECUTION_DATA, execution_id=exec_id)
        pub(ctx, "execution:" + exec_id, "execution_update", data,
            "status_changed")
        msg = await c.recv_type("execution_update")
        # updateExecutionUI reads these fields.
        check_eq(msg["data"]["progress_percentage"], 45.5,
                 "data.progress_percentage")
        check_eq(msg["data"]["status"], "running", "data.status")
        pub(ctx, "execution:" + exec_id, "node_update",
            dict(NODE_DATA, execution_id=exec_id), "status_changed")
        msg = await c.recv_type("node_update")
        check_eq(msg["data"]["node_id"], "node-1", "data.node_id")
        await c.send({"type": "unsubscribe",
                      "room_id": "execution:" + exec_id})
        msg = await c.recv_type("subscription")
        check_eq(msg["event"], "unsubscribed", "unsubscribeFromExecution")
    finally:
        await c.close()


def test_healthz(ctx):
    r = get(ctx.srv, "/healthz")
    check_eq(r.status, 200, "GET /healthz status")
    check_eq(r.json(), {"status": "ok"}, "GET /healthz body")


async def test_metrics(ctx):
    # One connection kept open so the gauges have something to count.
    c, _ = await connect(ctx, "metrics-user")
    try:
        await synced(c)
        r = get(ctx.srv, "/metrics")
        check_eq(r.status, 200, "GET /metrics status")
        check(r.headers.get("Content-Type", "").startswith("text/plain"),
              "metrics Content-Type: %r" % r.headers.get("Content-Type"))
        check("# TYPE tidings_publications_total counter" in r.body,
              "metrics must carry # TYPE lines")
        m = metrics(ctx.srv)
        names = ["tidings_connections", "tidings_connections_total",
                 "tidings_auth_failures_total", "tidings_rooms_active",
                 "tidings_messages_in_total", "tidings_publications_total",
                 "tidings_messages_out_total",
                 "tidings_message_bytes_out_total", "tidings_errors_total",
                 "tidings_rate_limited_total", "tidings_sessions_open",
                 "tidings_sessions_total",
                 "tidings_slow_consumer_closes_total",
                 "tidings_oversize_closes_total", "tidings_frames_out_total",
                 "tidings_bytes_out_total", "tidings_frames_in_total",
                 "tidings_http_requests_total"]
        missing = [n for n in names if n not in m]
        check(not missing, "metrics missing: %s" % missing)
        check(m["tidings_connections"] >= 1, "tidings_connections >= 1 "
              "while a client is connected: %r" % m["tidings_connections"])
        check(m["tidings_sessions_open"] >= 1, "tidings_sessions_open >= 1")
        check(m["tidings_connections_total"] >= ctx.connections,
              "tidings_connections_total %r < %d connections made"
              % (m["tidings_connections_total"], ctx.connections))
        check(m["tidings_publications_total"] >= ctx.published,
              "tidings_publications_total %r < %d published"
              % (m["tidings_publications_total"], ctx.published))
        check(m["tidings_errors_total"] >= ctx.denied,
              "tidings_errors_total %r < %d denied subscribes"
              % (m["tidings_errors_total"], ctx.denied))
        check(m["tidings_messages_out_total"] >= 10,
              "tidings_messages_out_total %r too small"
              % m["tidings_messages_out_total"])
        check(m["tidings_messages_in_total"] >= 10,
              "tidings_messages_in_total too small")
        check(m["tidings_rooms_active"] >= 1, "tidings_rooms_active >= 1")
        check(m["tidings_http_requests_total"] >= ctx.published,
              "tidings_http_requests_total below the publishes made")
        check(m["tidings_frames_out_total"] > 0
              and m["tidings_bytes_out_total"] > 0, "frames/bytes out")
    finally:
        await c.close()


def main():
    binary = tidings_bin()
    runner = Runner("test_s1_flow")
    try:
        srv = Server(binary)
    except AssertionError as e:
        print("FAIL server start: %s" % e)
        sys.exit(1)
    runner.servers.append(srv)
    ctx = Ctx(srv)
    for name, fn in [
            ("stats_and_rooms", test_stats_and_rooms),
            ("connection_frame_and_auto_join",
             test_connection_frame_and_auto_join),
            ("events_from_publish_api", test_events_from_publish_api),
            ("user_room_receives_notifications",
             test_user_room_receives_notifications),
            ("access_denied", test_access_denied),
            ("ping_pong", test_ping_pong),
            ("list_subscriptions", test_list_subscriptions),
            ("unsubscribe", test_unsubscribe),
            ("seed_javascript_client", test_seed_javascript_client),
            ("healthz", test_healthz),
            ("metrics", test_metrics)]:
        runner.run(name, fn, ctx)
    runner.stop_server(srv)
    runner.finish()


if __name__ == "__main__":
    main()
