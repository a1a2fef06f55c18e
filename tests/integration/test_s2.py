#!/usr/bin/python3
"""Seed S2's client flow against a real `tidings serve --s2-port`: S2's own
Python StreamingClient (its document's example, transcribed to
python3-websockets with bounded waits), talking to a bare ws://host:port.

client flow     auth → auth_success with a client_id; subscribe events with
                S2's filters (dot path, array of values) → data frame with
                status subscribed and a subscription_id; only matching
                events arrive, as `data` frames with that subscription_id;
                metrics without filters; unsubscribe by id; ping/pong;
                reconnect, re-auth, re-subscribe and receive again
errors          "Unknown message type", invalid JSON, unknown subscription
                id, rate limit ("Rate limit exceeded") — while a control
                client on another connection keeps receiving every event
auth            no auth within --s2-auth-timeout → close 1008; a first
                message that is not auth, or a bad token → auth_failed then
                close 1008; re-authentication on an open connection
limits, env     a second node configured only through S2's environment
                variables (STREAMING_WEBSOCKET__*): max_connections → close
                1013, origin allow-list → close 1008, require_auth=false

usage: /usr/bin/python3 test_s2.py <path to tidings>
"""

import asyncio
import json
import os
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import websockets  # noqa: E402
from harness import API_KEY, Runner, Server, check, check_eq, mint_token, \
    publish, tidings_bin  # noqa: E402

RATE = 40  # --s2-rate-limit-per-minute for the main node


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class StreamingClient:
    """S2's Python client (its document), with bounded waits."""

    def __init__(self, uri, token):
        self.uri = uri
        self.token = token
        self.subscriptions = {}
        self.inbox = asyncio.Queue()

    async def connect(self, **kw):
        self.websocket = await asyncio.wait_for(
            websockets.connect(self.uri, ping_interval=None, **kw), 5)
        # Authenticate
        await self.send({"type": "auth", "data": {"token": self.token}})
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self):
        try:
            async for message in self.websocket:
                await self.inbox.put(json.loads(message))
        except websockets.ConnectionClosed:
            pass
        await self.inbox.put(None)

    async def send(self, message):
        await self.websocket.send(json.dumps(message))

    async def subscribe(self, sub_type, filters=None):
        await self.send({"type": "subscribe",
                         "data": {"type": sub_type,
                                  "filters": filters or {}}})

    async def unsubscribe(self, subscription_id):
        await self.send({"type": "unsubscribe",
                         "data": {"subscription_id": subscription_id}})
        self.subscriptions.pop(subscription_id, None)

    async def next(self, pred=lambda m: True, what="a message", timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s within %.1fs" % (what, timeout))
            try:
                m = await asyncio.wait_for(self.inbox.get(), left)
            except asyncio.TimeoutError:
                continue
            if m is None:
                raise AssertionError("connection closed (%s) while waiting "
                                     "for %s" % (self.websocket.close_code,
                                                 what))
            if pred(m):
                return m

    async def quiet(self, seconds):
        """Messages that arrive within `seconds`."""
        out = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                m = await asyncio.wait_for(self.inbox.get(),
                                           deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
            if m is None:
                break
            out.append(m)
        return out

    async def close(self):
        await self.websocket.close()
        self.reader.cancel()


def of_type(t):
    return lambda m: m.get("type") == t


async def subscribed(client, sub_type, filters=None):
    await client.subscribe(sub_type, filters)
    m = await client.next(lambda m: m.get("type") == "data" and
                          m["data"].get("status") == "subscribed",
                          "subscription confirmation")
    check_eq(m["data"]["type"], sub_type, "subscription type")
    sid = m["data"]["subscription_id"]
    check_eq(m.get("subscription_id"), sid, "top-level subscription_id")
    return sid


async def client_flow(srv, uri):
    tok = mint_token("analyst", rooms=["stream:*"])
    client = StreamingClient(uri, tok)
    await client.connect()
    m = await client.next(of_type("auth_success"), "auth_success")
    check(isinstance(m["data"].get("client_id"), str), "client_id: %r" % m)
    # S2's JavaScript usage example, plus an array filter.
    ev_sub = await subscribed(client, "events", {
        "event_type": "user_action", "payload.user_id": ["user123", "u9"]})
    met_sub = await subscribed(client, "metrics")
    check(ev_sub != met_sub, "distinct subscription ids")
    publish(srv, "stream:events", "user_action",
            {"user_id": "user_456", "payload": {"user_id": "user123"}})
    publish(srv, "stream:events", "user_action",
            {"payload": {"user_id": "someone else"}})          # filtered out
    publish(srv, "stream:events", "login",
            {"payload": {"user_id": "user123"}})               # filtered out
    publish(srv, "stream:events", "user_action",
            {"payload": {"user_id": "u9"}, "event_id": "evt_9"})
    publish(srv, "stream:metrics", "cpu", {"cpu": 0.5})
    got = []
    while len(got) < 3:
        got.append(await client.next(of_type("data"), "data frames"))
    by_sub = {}
    for m in got:
        by_sub.setdefault(m["subscription_id"], []).append(m["data"])
    evs = by_sub.get(ev_sub, [])
    check_eq(len(evs), 2, "two matching events: %r" % got)
    check_eq(evs[0]["subscription_type"], "events", "subscription_type")
    e0 = evs[0]["event"]
    check_eq(e0["event_type"], "user_action", "event_type")
    check_eq(e0["payload"], {"user_id": "user123"}, "payload")
    check(e0.get("event_id") and e0.get("timestamp"), "event fields %r" % e0)
    check_eq(evs[1]["event"]["event_id"], "evt_9", "event_id kept")
    check_eq(by_sub.get(met_sub), [{"metrics": {"cpu": 0.5},
                                     "subscription_type": "metrics"}],
             "metrics")
    check_eq(await client.quiet(0.5), [], "nothing else (filtered)")

    await client.send({"type": "ping"})
    await client.next(of_type("pong"), "pong")

    await client.unsubscribe(met_sub)
    m = await client.next(of_type("data"), "unsubscribed")
    check_eq(m["data"], {"status": "unsubscribed",
                         "subscription_id": met_sub}, "unsubscribe answer")
    publish(srv, "stream:metrics", "cpu", {"cpu": 0.9})
    check_eq(await client.quiet(0.5), [], "no data after unsubscribe")
    await client.unsubscribe(met_sub)
    m = await client.next(of_type("error"), "error for an unknown id")
    check_eq(m["data"]["error"], "Subscription not found", "error text")

    # Reconnect: a new connection, auth again, subscribe again.
    await client.close()
    client = StreamingClient(uri, tok)
    await client.connect()
    await client.next(of_type("auth_success"), "auth_success again")
    sid = await subscribed(client, "events", {"event_type": "user_action"})
    publish(srv, "stream:events", "user_action", {"n": 1})
    m = await client.next(of_type("data"), "data after reconnect")
    check_eq(m["subscription_id"], sid, "new subscription id")
    check_eq(m["data"]["event"]["n"], 1, "event after reconnect")
    # Re-authentication on an open connection.
    await client.send({"type": "auth", "data": {"token": tok}})
    await client.next(of_type("auth_success"), "re-auth")
    await client.send({"type": "auth", "data": {"token": "bad"}})
    m = await client.next(of_type("auth_failed"), "bad re-auth")
    check_eq(m["data"]["error"], "Invalid credentials", "auth_failed text")
    await client.send({"type": "ping"})
    await client.next(of_type("pong"), "still open after a failed re-auth")
    await client.close()


async def errors_with_control(srv, uri):
    tok = mint_token("analyst", rooms=["stream:*"])
    control = StreamingClient(uri, tok)
    await control.connect()
    await control.next(of_type("auth_success"), "control auth")
    csid = await subscribed(control, "alerts")
    bad = StreamingClient(uri, tok)
    await bad.connect()
    await bad.next(of_type("auth_success"), "auth")

    published = 0
    await bad.send({"type": "frobnicate", "data": {}})
    m = await bad.next(of_type("error"), "unknown type error")
    check_eq(m["data"]["error"], "Unknown message type", "S2's words")
    publish(srv, "stream:alerts", "alert", {"n": published}); published += 1
    await bad.websocket.send("{not json")
    m = await bad.next(of_type("error"), "invalid JSON error")
    check(m["data"]["error"], "an error text: %r" % m)
    await bad.send({"type": "subscribe", "data": {"type": "nonsense"}})
    await bad.next(of_type("error"), "unknown subscription type")
    publish(srv, "stream:alerts", "alert", {"n": published}); published += 1
    # Flood: beyond the per-minute limit every message gets the error.
    for _ in range(RATE + 5):
        await bad.send({"type": "ping"})
    limited = 0
    pongs = 0
    for m in await bad.quiet(1.5):
        if m.get("type") == "error" and \
                m["data"]["error"] == "Rate limit exceeded":
            limited += 1
        elif m.get("type") == "pong":
            pongs += 1
    check(limited >= 5, "rate-limit errors: %d (pongs %d)" % (limited, pongs))
    check(pongs < RATE, "pongs within the limit: %d" % pongs)
    publish(srv, "stream:alerts", "alert", {"n": published}); published += 1
    # The control client saw every alert, in order.
    seen = []
    while len(seen) < published:
        m = await control.next(of_type("data"), "control data")
        check_eq(m["subscription_id"], csid, "control subscription")
        seen.append(m["data"]["alert"]["n"])
    check_eq(seen, list(range(published)), "control client's alerts")
    await bad.close()
    await control.close()


async def expect_close(ws, code, what, timeout=6.0):
    deadline = time.monotonic() + timeout
    frames = []
    try:
        while time.monotonic() < deadline:
            frames.append(json.loads(await asyncio.wait_for(
                ws.recv(), deadline - time.monotonic())))
    except websockets.ConnectionClosed:
        check_eq(ws.close_code, code, what)
        return frames
    except asyncio.TimeoutError:
        pass
    raise AssertionError("%s: no close within %.0fs" % (what, timeout))


async def auth_rules(srv, uri):
    # No auth at all: closed 1008 after --s2-auth-timeout (2 s here).
    t0 = time.monotonic()
    async with websockets.connect(uri, ping_interval=None) as ws:
        await expect_close(ws, 1008, "auth timeout")
    check(1.5 < time.monotonic() - t0 < 5, "closed after the auth timeout")
    # A first message that is not auth.
    async with websockets.connect(uri, ping_interval=None) as ws:
        await ws.send(json.dumps({"type": "subscribe",
                                  "data": {"type": "events"}}))
        frames = await expect_close(ws, 1008, "not auth first")
        check_eq(frames[0]["type"], "auth_failed", "auth_failed first")
        check_eq(frames[0]["data"]["error"], "Authentication required",
                 "auth required text")
    # A bad token.
    async with websockets.connect(uri, ping_interval=None) as ws:
        await ws.send(json.dumps({"type": "auth",
                                  "data": {"token": "nope"}}))
        frames = await expect_close(ws, 1008, "bad token")
        check_eq(frames[0]["data"]["error"], "Invalid credentials",
                 "invalid credentials text")
    # A token outside the ACL may not subscribe; the API key may.
    tok = mint_token("other", rooms=["pipeline:*"])
    c = StreamingClient(uri, tok)
    await c.connect()
    await c.next(of_type("auth_success"), "auth")
    await c.subscribe("events")
    m = await c.next(of_type("error"), "access denied")
    check_eq(m["data"].get("error_code"), "ACCESS_DENIED", "ACL")
    await c.close()
    c = StreamingClient(uri, API_KEY)
    await c.connect()
    await c.next(of_type("auth_success"), "auth with the API key")
    await subscribed(c, "predictions")
    await c.close()


async def env_node(binary, runner):
    port = free_port()
    env = {"STREAMING_WEBSOCKET__PORT": str(port),
           "STREAMING_WEBSOCKET__HOST": "127.0.0.1",
           "STREAMING_WEBSOCKET__MAX_CONNECTIONS": "2",
           "STREAMING_WEBSOCKET__REQUIRE_AUTH": "false",
           "STREAMING_WEBSOCKET__ALLOWED_ORIGINS": '["http://ok.test"]',
           "streaming_websocket__rate_limit_per_minute": "1000",
           "STREAMING_WEBSOCKET__COMPRESSION": "deflate"}
    srv = Server(binary, env=env)
    runner.servers.append(srv)
    try:
        check(any("S2 listening on ws://127.0.0.1:%d" % port in line
                  for line in srv.stdout_lines), "S2 listener from env")
        uri = "ws://127.0.0.1:%d" % port
        # require_auth=false: subscribe without auth.
        a = await websockets.connect(uri, ping_interval=None,
                                     origin="http://ok.test")
        await a.send(json.dumps({"type": "subscribe",
                                 "data": {"type": "system_status"}}))
        m = json.loads(await asyncio.wait_for(a.recv(), 5))
        check_eq(m["data"]["status"], "subscribed", "anonymous subscribe")
        publish(srv, "stream:system_status", "health", {"ok": True})
        m = json.loads(await asyncio.wait_for(a.recv(), 5))
        check_eq(m["data"]["status"], {"ok": True}, "system_status data")
        b = await websockets.connect(uri, ping_interval=None)
        # Third connection: over MAX_CONNECTIONS=2.
        async with websockets.connect(uri, ping_interval=None) as c:
            await expect_close(c, 1013, "max_connections")
        await b.close()
        # Origin not in the list.
        async with websockets.connect(uri, ping_interval=None,
                                      origin="http://evil.test") as d:
            await expect_close(d, 1008, "origin not allowed")
        await a.close()
    finally:
        runner.stop_server(srv, "env_node_shutdown")
        runner.servers.remove(srv)


def main():
    binary = tidings_bin()
    runner = Runner("test_s2")
    port = free_port()
    srv = Server(binary, extra=["--s2-port", str(port),
                                "--s2-auth-timeout", "2",
                                "--s2-rate-limit-per-minute", str(RATE)])
    runner.servers.append(srv)
    uri = "ws://127.0.0.1:%d" % port
    runner.run("client_flow", client_flow, srv, uri)
    runner.run("errors_with_control", errors_with_control, srv, uri)
    runner.run("auth_rules", auth_rules, srv, uri)
    runner.run("env_node", env_node, binary, runner)
    runner.stop_server(srv)
    runner.finish()


if __name__ == "__main__":
    main()
