#!/usr/bin/python3
"""Seed S0's client flows against a real `tidings serve`, transcribed from
shared/seeds/000_8ded9a4c7c452a53.txt: the query-token and initial-message
auth, subscribe to pipeline/connector/system/project channels, the seed's
pipeline events with `payload`, list_subscriptions, client ping and server
heartbeat (answered with pong), the reconnecting WebSocketClient class
(exponential backoff, resubscribe), the Python monitor_pipeline example,
the documented error frames, and the plan limits of "Rate Limits".

usage: /usr/bin/python3 test_s0.py <path to tidings>
"""

import asyncio
import json
import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import websockets  # noqa: E402
from harness import (Restartable, Runner, Server, WsClient, check, check_eq,  # noqa: E402
                     check_recent, mint_token, publish, tidings_bin)

PIPELINE_ID = "850e8400-e29b-41d4-a716-446655440003"
CONNECTOR_ID = "c50e8400-e29b-41d4-a716-446655440003"
PROJECT_ID = "550e8400-e29b-41d4-a716-446655440000"
S0_ROOMS = ["pipeline:*", "connector:*", "project:*", "system:*",
            "discovery:*"]

# The seed's own example payloads.
STARTED = {"run_id": "950e8400-e29b-41d4-a716-446655440004",
           "pipeline_name": "Daily Sales ETL",
           "triggered_by": "user@example.com",
           "configuration": {"date": "2024-01-26"},
           "estimated_duration_seconds": 180}
PROGRESS = {"run_id": "950e8400-e29b-41d4-a716-446655440004",
            "progress": 45, "current_task": "transform_data",
            "tasks_completed": 2, "tasks_total": 5, "elapsed_seconds": 90,
            "estimated_remaining_seconds": 90,
            "stats": {"rows_processed": 450000, "rows_total": 1000000,
                      "throughput_rows_per_sec": 5000}}
TASK_FAILED = {"run_id": "950e8400-e29b-41d4-a716-446655440004",
               "task_id": "validate_data", "task_name": "Validate Data",
               "error_type": "ValidationError",
               "error_message": "Found 15 records with invalid date format",
               "retry_attempt": 1, "max_retries": 3}
COMPLETED = {"run_id": "950e8400-e29b-41d4-a716-446655440004",
             "status": "success", "duration_seconds": 180,
             "stats": {"rows_processed": 1000000, "rows_inserted": 995000,
                       "rows_updated": 5000, "rows_failed": 0,
                       "bytes_processed": 104857600,
                       "throughput_rows_per_sec": 5555}}
ALERT = {"severity": "warning", "category": "resource",
         "message": "Kafka consumer lag exceeding threshold",
         "recommended_action": "Scale up consumer instances"}


def token(sub="s0-user", plan=None, rooms=S0_ROOMS):
    return mint_token(sub, rooms, extra={"plan": plan} if plan else None)


async def recv_s0(c, type_, timeout=5.0):
    """The next frame of S0 event `type_`, skipping the native
    connection/subscription frames S0 clients ignore (see README)."""
    return await c.recv_type(type_, timeout)


def check_event(frame, type_, payload, channel="pipeline", id_=PIPELINE_ID):
    check_eq(frame["type"], type_, "event type")
    check_eq(frame["channel"], channel, "channel")
    if id_ is not None:
        check_eq(frame["%s_id" % channel], id_, "%s_id" % channel)
    else:
        check("%s_id" % channel not in frame, "no id on a global channel: %r"
              % frame)
    check_eq(frame["payload"], payload, "payload")
    check(frame["timestamp"].endswith("Z") and "." not in frame["timestamp"],
          "S0 timestamps have whole seconds: %r" % frame["timestamp"])
    check_recent(frame["timestamp"], type_)


# -- "Connection Lifecycle" and "Event Types" ---------------------------------

async def test_connection_lifecycle(srv):
    # const ws = new WebSocket('ws://localhost:8000/api/v1/ws?token=...');
    ws = await WsClient.connect(srv.ws_url(token()), "lifecycle")
    try:
        # ws.onopen: subscribe to pipeline events
        await ws.send({"type": "subscribe", "channel": "pipeline",
                       "pipeline_id": PIPELINE_ID})
        await ws.send({"type": "ping"})  # a barrier: the subscribe is done
        await ws.recv_type("pong")
        room = "pipeline:" + PIPELINE_ID
        publish(srv, room, "pipeline.started", STARTED)
        publish(srv, room, "pipeline.progress", PROGRESS)
        publish(srv, room, "pipeline.task_failed", TASK_FAILED)
        publish(srv, room, "pipeline.completed", COMPLETED)
        # ws.onmessage: switch (data.type)
        check_event(await recv_s0(ws, "pipeline.started"), "pipeline.started",
                    STARTED)
        p = await recv_s0(ws, "pipeline.progress")
        check_event(p, "pipeline.progress", PROGRESS)
        check_eq(p["payload"]["progress"], 45, "data.payload.progress")
        check_event(await recv_s0(ws, "pipeline.task_failed"),
                    "pipeline.task_failed", TASK_FAILED)
        check_event(await recv_s0(ws, "pipeline.completed"),
                    "pipeline.completed", COMPLETED)
    finally:
        await ws.close()


async def test_initial_message_auth(srv):
    # Option 2: connect, then {type:'auth', token} in onopen.
    ws = await WsClient.connect(srv.ws_url(), "initial-message")
    try:
        await ws.send({"type": "auth", "token": token()})
        await ws.send({"type": "subscribe", "channel": "system"})
        await ws.send({"type": "ping"})
        await ws.recv_type("pong")
        publish(srv, "system:all", "system.alert", ALERT)
        check_event(await recv_s0(ws, "system.alert"), "system.alert", ALERT,
                    channel="system", id_=None)
    finally:
        await ws.close()


# -- "Subscription Management" ------------------------------------------------

async def test_subscription_management(srv):
    ws = await WsClient.connect(srv.ws_url(token()), "subscriptions")
    try:
        await ws.send({"type": "subscribe", "channel": "pipeline",
                       "pipeline_id": PIPELINE_ID})
        await ws.send({"type": "subscribe", "channel": "connector",
                       "connector_id": CONNECTOR_ID})
        await ws.send({"type": "subscribe", "channel": "system"})
        await ws.send({"type": "subscribe", "channel": "project",
                       "project_id": PROJECT_ID})
        await ws.send({"type": "list_subscriptions"})
        subs = await ws.recv_type("subscriptions")
        got = subs["payload"]["subscriptions"]
        want = [{"channel": "pipeline", "pipeline_id": PIPELINE_ID},
                {"channel": "connector", "connector_id": CONNECTOR_ID},
                {"channel": "system"},
                {"channel": "project", "project_id": PROJECT_ID}]
        check_eq(sorted(got, key=json.dumps), sorted(want, key=json.dumps),
                 "list_subscriptions payload")
        publish(srv, "connector:" + CONNECTOR_ID, "connector.status_changed",
                {"previous_status": "healthy", "current_status": "degraded"})
        ev = await recv_s0(ws, "connector.status_changed")
        check_eq(ev["connector_id"], CONNECTOR_ID, "connector_id")
        # Unsubscribe (the React cleanup), then nothing more arrives.
        await ws.send({"type": "unsubscribe", "channel": "pipeline",
                       "pipeline_id": PIPELINE_ID})
        await ws.send({"type": "list_subscriptions"})
        subs = await ws.recv_type("subscriptions")
        check({"channel": "pipeline", "pipeline_id": PIPELINE_ID}
              not in subs["payload"]["subscriptions"],
              "unsubscribed pipeline still listed: %r" % subs)
        publish(srv, "pipeline:" + PIPELINE_ID, "pipeline.progress", PROGRESS)
        publish(srv, "system:all", "system.alert", ALERT)
        ev = await recv_s0(ws, "system.alert")
        check(not [f for f in ws.seen if f.get("type") == "pipeline.progress"],
              "an event of an unsubscribed channel arrived")
    finally:
        await ws.close()


# -- "Heartbeat & Keepalive" --------------------------------------------------

async def test_heartbeat_and_ping(srv_hb):
    ws = await WsClient.connect(srv_hb.ws_url(token()), "heartbeat")
    try:
        await ws.send({"type": "subscribe", "channel": "system"})
        # Client-side ping: {type:'ping'} → {type:'pong'}
        await ws.send({"type": "ping"})
        pong = await ws.recv_type("pong")
        check_recent(pong["timestamp"], "pong")
        # Server-side heartbeat, answered with pong ("Handle Heartbeat").
        hb = await ws.recv_type("heartbeat", timeout=5)
        check(isinstance(hb["active_connections"], int)
              and hb["active_connections"] >= 1, "active_connections: %r" % hb)
        check_recent(hb["server_time"], "server_time")
        check("." in hb["server_time"], "server_time keeps milliseconds")
        await ws.send({"type": "pong"})
        # "Monitor Connection Quality": latency from server_time.
        latency = time.time() * 1000 - (
            __import__("datetime").datetime.fromisoformat(
                hb["server_time"].replace("Z", "+00:00")).timestamp() * 1000)
        check(latency < 5000, "latency from server_time: %r" % latency)
        hb2 = await ws.recv_type("heartbeat", timeout=5)
        check(hb2["server_time"] != hb["server_time"], "heartbeats repeat")
    finally:
        await ws.close()


# -- "Reconnection Strategy": the seed's WebSocketClient class ----------------

class WebSocketClient:
    """The seed's JavaScript class, line by line, on python3-websockets."""

    def __init__(self, url, token):
        self.url = url
        self.token = token
        self.reconnectDelay = 1000
        self.maxReconnectDelay = 30000
        self.reconnectAttempts = 0
        self.maxReconnectAttempts = 10
        self.ws = None
        self.subscriptions = []
        self.received = asyncio.Queue()
        self.opens = 0
        self.task = None

    def connect(self):
        self.task = asyncio.ensure_future(self._run())

    async def _run(self):
        try:
            self.ws = await websockets.connect(
                "%s?token=%s" % (self.url, self.token), ping_interval=None)
        except OSError:
            return self._onclose(1006, "")
        # onopen
        self.opens += 1
        self.reconnectAttempts = 0
        self.reconnectDelay = 1000
        # Resubscribe to channels
        for sub in list(self.subscriptions):
            await self.subscribe(sub["channel"], sub["id"])
        try:
            async for message in self.ws:
                self.handleMessage(json.loads(message))
            code, reason = self.ws.close_code, self.ws.close_reason
        except websockets.ConnectionClosed as e:
            code, reason = e.code, e.reason
        self._onclose(code, reason)

    def _onclose(self, code, reason):
        if code != 1000 and self.reconnectAttempts < self.maxReconnectAttempts:
            self.reconnect()

    def reconnect(self):
        self.reconnectAttempts += 1
        delay = self.reconnectDelay
        asyncio.get_event_loop().call_later(delay / 1000.0, self.connect)
        # Exponential backoff
        self.reconnectDelay = min(self.reconnectDelay * 2,
                                  self.maxReconnectDelay)

    async def subscribe(self, channel, id=None):
        sub = {"channel": channel, "id": id}
        self.subscriptions.append(sub)
        await self.ws.send(json.dumps({
            "type": "subscribe",
            "channel": channel,
            channel + "_id": id,
        }))

    def handleMessage(self, data):
        self.received.put_nowait(data)

    async def next(self, type_, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            check(left > 0, "client: no %s within %.1fs" % (type_, timeout))
            try:
                d = await asyncio.wait_for(self.received.get(), left)
            except asyncio.TimeoutError:
                continue
            if d.get("type") == type_:
                return d

    async def stop(self):
        self.maxReconnectAttempts = 0
        if self.ws is not None:
            await self.ws.close()
        if self.task:
            self.task.cancel()


async def test_reconnect_resubscribes(restartable):
    srv = restartable.start()
    client = WebSocketClient("ws://127.0.0.1:%d/api/v1/ws" % srv.port,
                             token("reconnector"))
    try:
        client.connect()
        while client.ws is None or client.opens == 0:
            await asyncio.sleep(0.01)
        await client.subscribe("pipeline", PIPELINE_ID)
        await client.subscribe("system")  # sends system_id: null
        await client.ws.send(json.dumps({"type": "ping"}))
        await client.next("pong", 5)
        publish(srv, "pipeline:" + PIPELINE_ID, "pipeline.progress", PROGRESS)
        await client.next("pipeline.progress", 5)
        # The server dies (no close frame: 1006), comes back on its port.
        restartable.kill()
        await asyncio.sleep(0.2)
        srv = restartable.start()
        # onopen resubscribes; the backoff is the seed's 1 s, 2 s, …
        deadline = time.monotonic() + 20
        while client.opens < 2:
            check(time.monotonic() < deadline, "client did not reconnect")
            await asyncio.sleep(0.05)
        await client.ws.send(json.dumps({"type": "ping"}))
        await client.next("pong", 5)
        publish(srv, "pipeline:" + PIPELINE_ID, "pipeline.completed",
                COMPLETED)
        publish(srv, "system:all", "system.alert", ALERT)
        ev = await client.next("pipeline.completed", 5)
        check_eq(ev["payload"], COMPLETED, "payload after reconnect")
        await client.next("system.alert", 5)
        check_eq(client.reconnectAttempts, 0, "attempts reset on open")
    finally:
        await client.stop()


# -- "Python Integration Example" ----------------------------------------------

async def monitor_pipeline(uri_base, pipeline_id, token_):
    uri = f"{uri_base}?token={token_}"
    seen = []
    async with websockets.connect(uri, ping_interval=None) as websocket:
        await websocket.send(json.dumps({
            "type": "subscribe",
            "channel": "pipeline",
            "pipeline_id": pipeline_id
        }))
        await websocket.send(json.dumps({"type": "ping"}))
        async for message in websocket:
            event = json.loads(message)
            if event["type"] == "pong":
                seen.append("ready")
            elif event["type"] == "pipeline.started":
                seen.append("started " + event['payload']['run_id'])
            elif event["type"] == "pipeline.progress":
                seen.append("progress %s" % event["payload"]["progress"])
            elif event["type"] == "pipeline.completed":
                stats = event["payload"]["stats"]
                seen.append("rows %s" % stats['rows_processed'])
                break
            elif event["type"] == "pipeline.failed":
                seen.append("failed " + event['payload']['error_message'])
                break
    return seen


async def test_python_monitor_pipeline(srv):
    pid = "py-" + PIPELINE_ID
    task = asyncio.ensure_future(monitor_pipeline(
        srv.ws_url(), pid, token()))
    await asyncio.sleep(0.5)  # the example subscribes on its own schedule
    room = "pipeline:" + pid
    publish(srv, room, "pipeline.started", STARTED)
    publish(srv, room, "pipeline.progress", PROGRESS)
    publish(srv, room, "pipeline.completed", COMPLETED)
    seen = await asyncio.wait_for(task, 10)
    check_eq(seen, ["ready", "started " + STARTED["run_id"], "progress 45",
                    "rows 1000000"], "monitor_pipeline's view")


# -- "Error Handling" ---------------------------------------------------------

async def test_errors_while_control_receives(srv):
    control = await WsClient.connect(srv.ws_url(token("control")), "control")
    bad = await WsClient.connect(srv.ws_url(token("bad", rooms=[
        "pipeline:*"])), "bad")
    try:
        await control.send({"type": "subscribe", "channel": "pipeline",
                            "pipeline_id": PIPELINE_ID})
        await bad.send({"type": "subscribe", "channel": "pipeline",
                        "pipeline_id": PIPELINE_ID})
        cases = [
            ({"type": "subscribe", "channel": "connector",
              "connector_id": "invalid-id"}, "SUBSCRIPTION_FAILED",
             {"connector_id": "invalid-id"}),  # no grant for connectors
            ({"type": "subscribe", "channel": "pipeline"},
             "SUBSCRIPTION_FAILED", None),
            ({"type": "subscribe", "channel": "nonsense", "nonsense_id": "x"},
             "SUBSCRIPTION_FAILED", None),
            ({"type": "unsubscribe", "channel": "pipeline",
              "pipeline_id": "invalid-id"}, "SUBSCRIPTION_FAILED",
             {"pipeline_id": "invalid-id"}),
            ("{not json", "INVALID_JSON", None),
            ({"type": "subscribe", "channel": "pipeline",
              "pipeline_id": 42}, "SUBSCRIPTION_FAILED", None),
        ]
        for n, (msg, code, details) in enumerate(cases):
            await bad.send(msg)
            err = await bad.recv_type("error")
            check_eq(err["error_code"], code, "error for %r" % (msg,))
            check(isinstance(err["message"], str) and err["message"],
                  "message text")
            check_recent(err["timestamp"], "error")
            if details is not None:
                check_eq(err.get("details"), details, "details for %r"
                         % (msg,))
            publish(srv, "pipeline:" + PIPELINE_ID, "pipeline.progress",
                    dict(PROGRESS, progress=n))
            ev = await control.recv_type("pipeline.progress")
            check_eq(ev["payload"]["progress"], n, "control keeps receiving")
            ev = await bad.recv_type("pipeline.progress")
            check_eq(ev["payload"]["progress"], n, "bad client not closed")
        # "Authentication Errors": an invalid token.
        refused = await WsClient.connect(srv.ws_url("not-a-token"), "unauth")
        code, reason, frames = await refused.expect_close()
        check_eq(code, 1008, "close for a bad token")
        check([f for f in frames if isinstance(f, dict)
               and f.get("error_code") == "UNAUTHORIZED"],
              "UNAUTHORIZED frame before the close: %r" % frames)
        refused = await WsClient.connect(srv.ws_url(), "unauth-msg")
        await refused.send({"type": "auth", "token": "x.y.z"})
        code, reason, frames = await refused.expect_close()
        check_eq(code, 1008, "close for a bad auth message")
        check([f for f in frames if isinstance(f, dict)
               and f.get("error_code") == "UNAUTHORIZED"],
              "UNAUTHORIZED frame before the close: %r" % frames)
    finally:
        await control.close()
        await bad.close()


# -- "Rate Limits" --------------------------------------------------------------

async def test_plan_limits(srv):
    # Free: 5 concurrent connections, 10 messages per second.
    tok = token("free-user", plan="free")
    clients = []
    try:
        for i in range(5):
            c = await WsClient.connect(srv.ws_url(tok), "free-%d" % i)
            await c.recv_type("connection")
            clients.append(c)
        sixth = await WsClient.connect(srv.ws_url(tok), "free-6")
        code, reason, frames = await sixth.expect_close()
        check_eq(code, 1013, "close for the sixth free connection")
        check([f for f in frames if isinstance(f, dict)
               and f.get("error_code") == "CONNECTION_FAILED"],
              "CONNECTION_FAILED before the close: %r" % frames)
        # A pro token of another user is not affected.
        pro = await WsClient.connect(srv.ws_url(token("pro-user", "pro")),
                                     "pro")
        await pro.recv_type("connection")
        clients.append(pro)
        # Freeing one slot admits one more.
        await clients.pop(0).close()
        await asyncio.sleep(0.3)
        again = await WsClient.connect(srv.ws_url(tok), "free-again")
        await again.recv_type("connection")
        clients.append(again)
        # 10 messages per second: a burst of 15 pings gets 10 pongs and one
        # RATE_LIMITED error.
        c = clients[0]
        await c.send({"type": "subscribe", "channel": "system"})
        await asyncio.sleep(1.1)  # the bucket refills
        for _ in range(15):
            await c.send({"type": "ping"})
        await asyncio.sleep(0.5)
        pongs = errors = 0
        while True:
            try:
                f = await c.recv(0.5)
            except AssertionError:
                break
            pongs += f.get("type") == "pong"
            errors += f.get("error_code") == "RATE_LIMITED"
        check(9 <= pongs <= 11, "pongs in a burst of 15 on free: %d" % pongs)
        check_eq(errors, 1, "RATE_LIMITED errors")
    finally:
        for c in clients:
            await c.close()


def main():
    binary = tidings_bin()
    runner = Runner("test_s0")
    srv = Server(binary)
    srv_hb = Server(binary, extra=["--heartbeat-interval", "1"])
    runner.servers = [srv, srv_hb]
    runner.run("connection_lifecycle", test_connection_lifecycle, srv)
    runner.run("initial_message_auth", test_initial_message_auth, srv)
    runner.run("subscription_management", test_subscription_management, srv)
    runner.run("heartbeat_and_ping", test_heartbeat_and_ping, srv_hb)
    runner.run("python_monitor_pipeline", test_python_monitor_pipeline, srv)
    runner.run("errors_while_control_receives",
               test_errors_while_control_receives, srv)
    runner.run("plan_limits", test_plan_limits, srv)
    runner.stop_server(srv)
    runner.stop_server(srv_hb, "clean_shutdown_heartbeat")
    restartable = Restartable(binary, runner)
    runner.run("reconnect_resubscribes", test_reconnect_resubscribes,
               restartable)
    if restartable.srv:
        restartable.pool.submit(restartable.srv.cleanup).result()
    runner.finish()


if __name__ == "__main__":
    main()
