#!/usr/bin/python3
"""Bad inputs while a control client keeps receiving.

A control client subscribes to one room and a publisher thread feeds it a
steady stream of events for the whole run. Meanwhile other clients send
invalid JSON, unknown types, missing fields, invalid room ids, binary
garbage, protocol violations, oversized frames (close 1009), command floods
(RATE_LIMITED, then close 4029), and one client subscribes and never reads
while large events are published (close 4001). At the end the control client
must have received every event, in order, with consecutive offsets, and the
server must still be healthy.

usage: /usr/bin/python3 test_bad_inputs.py <path to tidings>
"""

import asyncio
import json
import os
import socket
import sys
import threading
import time
import uuid

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (OP_CONT, OP_PING, OP_TEXT,  # noqa: E402
                     RawWs, Runner, Server, WsClient, check,
                     check_eq, get, metrics, mint_token, publish, raw_http,
                     tidings_bin, wait_until)
import websockets  # noqa: E402

MAX_MESSAGE = 4096
RATE = 10            # --commands-per-second; bursts of 2x
MAX_SUBS = 5
ROOMS = ["execution:*", "workflow:*"]
CONTROL_ROOM = "execution:control-" + str(uuid.uuid4())


class Publisher(threading.Thread):
    """Publishes {"seq": i} to the control room at a steady pace until
    stopped. The pause paces the stream; nothing waits on it."""

    def __init__(self, srv):
        super().__init__(daemon=True)
        self.srv = srv
        self.stop_flag = threading.Event()
        self.offsets = []
        self.error = None

    def run(self):
        try:
            seq = 0
            while not self.stop_flag.is_set() or seq < 20:
                seq += 1
                off = publish(self.srv, CONTROL_ROOM, "execution_update",
                              {"seq": seq, "pad": "p" * 100},
                              event="status_changed")
                self.offsets.append(off)
                self.stop_flag.wait(0.01)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = "%s: %s" % (type(e).__name__, e)


class Control:
    """Reads the control client's frames in the background."""

    def __init__(self, client):
        self.c = client
        self.events = []
        self.others = []
        self.closed = None
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self):
        while True:
            try:
                text = await self.c.ws.recv()
            except websockets.ConnectionClosed as e:
                self.closed = (e.code, e.reason)
                return
            f = json.loads(text)
            if f.get("room_id") == CONTROL_ROOM and \
                    f.get("type") == "execution_update":
                self.events.append(f)
            else:
                self.others.append(f)


def expect_error(f, code, what, room=None):
    check(isinstance(f, dict) and f.get("type") == "error",
          "%s: expected an error frame, got %r" % (what, f))
    check_eq(f.get("error_code"), code, what + ": error_code")
    check(isinstance(f.get("message"), str) and f["message"],
          what + ": message must be a non-empty string: %r" % f)
    if room is not None:
        check_eq(f.get("room_id"), room, what + ": room_id")


async def new_client(srv, sub, name=None, rooms=ROOMS):
    c = await WsClient.connect(srv.ws_url(mint_token(sub, rooms)),
                               name or sub)
    await c.recv_type("connection")
    await c.recv_type("subscription", room_id="user:" + sub)
    return c


def raw_client(srv, sub, rcvbuf=None):
    tok = mint_token(sub, ROOMS)
    r = RawWs(srv.port, "/api/v1/ws?token=" + tok, rcvbuf=rcvbuf)
    f = r.recv_json()
    check_eq(f.get("type"), "connection", "raw client's first frame")
    r.recv_until(lambda f: f.get("room_id") == "user:" + sub,
                 "auto-join of user:" + sub)
    return r


# -- steps ---------------------------------------------------------------------

async def step_invalid_messages(srv):
    c = await new_client(srv, "bad-json")
    try:
        cases = [
            ("{not json", "INVALID_JSON"),
            ("", "INVALID_JSON"),
            ("[1,2,3]", "INVALID_MESSAGE"),
            ('"just a string"', "INVALID_MESSAGE"),
            ('{"room_id":"execution:x"}', "INVALID_MESSAGE"),
            ('{"type":5}', "INVALID_MESSAGE"),
            ('{"type":"fly","room_id":"execution:x"}', "UNKNOWN_TYPE"),
            ('{"type":"subscribe"}', "MISSING_FIELD"),
            ('{"type":"subscribe","room_id":5}', "MISSING_FIELD"),
            ('{"type":"unsubscribe"}', "MISSING_FIELD"),
            ('{"type":"subscribe","room_id":"execution:ok","since":"x"}',
             "MISSING_FIELD"),
            ('{"type":"auth","token":7}', "MISSING_FIELD"),
        ]
        for text, code in cases:
            await c.send(text)
            f = await c.recv()
            expect_error(f, code, "message %r" % text)
        await c.send({"type": "ping"})
        f = await c.recv()
        check_eq(f.get("type"), "pong", "ping after invalid messages")
    finally:
        await c.close()


async def step_invalid_rooms(srv):
    c = await new_client(srv, "bad-rooms")
    try:
        cases = ["nocolon", "Execution:x", "execution:", ":abc",
                 "execution:a b", 'execution:a"b', "execution:*",
                 "execution:\u00e9t\u00e9", "execution:a/b",
                 "execution:" + "x" * 300]
        for room in cases:
            await c.send({"type": "subscribe", "room_id": room})
            f = await c.recv()
            echo = room if len(room) <= 200 else None
            expect_error(f, "INVALID_ROOM", "subscribe %r" % room[:40])
            if echo is not None:
                check_eq(f.get("room_id"), echo,
                         "invalid room id %r echoed" % room[:40])
            else:
                check("room_id" not in f or len(f["room_id"]) <= 200,
                      "an over-long room id must not be echoed: %d bytes"
                      % len(f.get("room_id", "")))
        await c.send({"type": "list_subscriptions"})
        f = await c.recv_type("subscriptions")
        check_eq(f.get("rooms"), ["user:bad-rooms"],
                 "no invalid room got subscribed")
    finally:
        await c.close()


async def step_subscription_limit(srv):
    c = await new_client(srv, "many-rooms")
    try:
        # The user room counts; --max-subscriptions 5 leaves four more.
        for i in range(MAX_SUBS - 1):
            r = await c.subscribe("execution:lim-%d" % i)
            check_eq(r.get("event"), "subscribed", "subscription %d" % i)
        r = await c.subscribe("execution:lim-over")
        expect_error(r, "TOO_MANY_SUBSCRIPTIONS",
                     "subscription over --max-subscriptions",
                     "execution:lim-over")
    finally:
        await c.close()


async def step_binary_garbage(srv):
    c = await new_client(srv, "binary")
    try:
        for blob in (os.urandom(64), b"\x00\xff\xfe", b"\x81\xa4type"):
            await c.send(blob)
            f = await c.recv()
            expect_error(f, "INVALID_JSON", "binary message %r" % blob[:8])
        await c.send({"type": "ping"})
        f = await c.recv()
        check_eq(f.get("type"), "pong", "ping after binary garbage")
    finally:
        await c.close()


def step_protocol_violations(srv):
    """Frames that break RFC 6455 end the connection with the RFC's code;
    the server goes on."""
    cases = [
        ("invalid UTF-8 in a text frame",
         lambda r: r.send_frame(b'{"type":"ping","x":"\xff\xfe"}', OP_TEXT),
         1007),
        ("unmasked client frame",
         lambda r: r.send_frame('{"type":"ping"}', OP_TEXT, mask=False),
         1002),
        ("reserved opcode 3", lambda r: r.send_frame(b"x", 3), 1002),
        ("RSV1 without an extension",
         lambda r: r.send_frame('{"type":"ping"}', OP_TEXT, rsv=4), 1002),
        ("fragmented ping", lambda r: r.send_frame(b"x", OP_PING, fin=False),
         1002),
        ("continuation without a start",
         lambda r: r.send_frame(b"x", OP_CONT), 1002),
    ]
    for what, send, code in cases:
        r = raw_client(srv, "violator")
        try:
            send(r)
            got, reason, _ = r.read_until_close(5)
            check_eq(got, code, "close code for " + what)
        finally:
            r.close()


def step_oversized(srv):
    before = metrics(srv).get("tidings_oversize_closes_total", 0)
    # Just under the limit: fine.
    r = raw_client(srv, "big-ok")
    try:
        msg = json.dumps({"type": "ping", "pad": "x" * (MAX_MESSAGE - 100)})
        check(len(msg) < MAX_MESSAGE, "test message size")
        r.send_frame(msg)
        f = r.recv_until(lambda f: f.get("type") == "pong",
                         "pong to a message just under the limit")
        check(f, "pong")
    finally:
        r.close()
    # One frame over the limit.
    r = raw_client(srv, "big-one")
    try:
        r.send_frame(json.dumps({"type": "ping",
                                 "pad": "x" * (MAX_MESSAGE + 1000)}))
        code, reason, _ = r.read_until_close(5)
        check_eq(code, 1009, "close code for a frame over "
                 "--max-message-size")
    finally:
        r.close()
    # Fragments, each under the limit, together over it.
    r = raw_client(srv, "big-frag")
    try:
        half = b"x" * (MAX_MESSAGE // 2 + 500)
        r.send_frame(b'{"type":"ping","pad":"' + half, OP_TEXT, fin=False)
        r.send_frame(half + b'"}', OP_CONT, fin=True)
        code, reason, _ = r.read_until_close(5)
        check_eq(code, 1009, "close code for a fragmented message over "
                 "--max-message-size")
    finally:
        r.close()
    # A header announcing a huge frame (2^62 bytes), no payload.
    r = raw_client(srv, "big-header")
    try:
        r.sock.sendall(bytes([0x81, 0xFF]) + (1 << 62).to_bytes(8, "big")
                       + os.urandom(4))
        code, reason, _ = r.read_until_close(5)
        check_eq(code, 1009, "close code for a frame header announcing "
                 "2^62 bytes")
    finally:
        r.close()
    wait_until(lambda: metrics(srv).get("tidings_oversize_closes_total", 0)
               >= before + 3, 5,
               "tidings_oversize_closes_total to rise by 3")


async def step_rate_limit(srv):
    # A short burst over the limit: one RATE_LIMITED error, no close.
    c = await new_client(srv, "burst")
    try:
        n = RATE * 2 + 15
        for _ in range(n):
            await c.send({"type": "ping"})
        # Pongs for the burst allowance, then the error for the first
        # refused command; refused commands get nothing more.
        frames = []
        await c.recv_until(lambda f: frames.append(f) or
                           f.get("type") == "error",
                           "RATE_LIMITED error after %d pings" % n, 5)
        pongs = [f for f in frames if f.get("type") == "pong"]
        errors = [f for f in frames if f.get("type") == "error"]
        check(errors, "a burst of %d pings at %d/s got no error; frames: %d"
              % (n, RATE, len(frames)))
        expect_error(errors[0], "RATE_LIMITED", "burst over the rate")
        check_eq(len(errors), 1, "one RATE_LIMITED error per burst")
        # The bucket refills during the burst too: a slow (loaded) sender
        # may earn a few more.
        check(RATE <= len(pongs) <= RATE * 2 + 5,
              "pongs for a burst of %d at %d/s (bursts of %d): got %d"
              % (n, RATE, RATE * 2, len(pongs)))
        # The token bucket refills with time; nothing else signals it.
        await asyncio.sleep(0.5)
        await c.send({"type": "ping"})
        f = await c.recv_type("pong", 3)
        check(f, "ping accepted again after the bucket refilled")
    finally:
        await c.close()

    # A flood far above the limit: the error, then close 4029.
    before = metrics(srv).get("tidings_rate_limited_total", 0)
    c = await new_client(srv, "flood")
    sent = 0
    try:
        for _ in range(1000):
            await c.send({"type": "ping"})
            sent += 1
    except websockets.ConnectionClosed:
        pass
    code, reason, frames = await c.expect_close(10)
    check_eq((code, reason), (4029, "Rate limit exceeded"),
             "close after a flood of %d pings" % sent)
    errs = [f for f in frames if isinstance(f, dict)
            and f.get("error_code") == "RATE_LIMITED"]
    check(errs, "a RATE_LIMITED error frame before the close; frames: %r"
          % frames[-5:])
    pongs = [f for f in frames if isinstance(f, dict)
             and f.get("type") == "pong"]
    check(len(pongs) <= RATE * 3, "flood: %d pongs, far above the burst "
          "allowance of %d" % (len(pongs), RATE * 2))
    after = metrics(srv).get("tidings_rate_limited_total", 0)
    check(after - before >= RATE * 10,
          "tidings_rate_limited_total rose by %d" % (after - before))


async def step_slow_consumer(srv):
    """A raw client subscribes and never reads while large events are
    published: it is closed with 4001 and a reading subscriber of the same
    room gets every event."""
    room = "execution:slow-" + str(uuid.uuid4())
    before = metrics(srv).get("tidings_slow_consumer_closes_total", 0)
    fast = await new_client(srv, "fast-reader")
    got = []

    async def read_fast():
        while True:
            f = await fast.recv(30)
            if f.get("room_id") == room and f.get("type") == "big":
                got.append(f["offset"])

    slow = raw_client(srv, "slow-reader", rcvbuf=4096)
    try:
        await fast.subscribe(room)
        slow.send_json({"type": "subscribe", "room_id": room})
        slow.recv_until(lambda f: f.get("type") == "subscription"
                        and f.get("room_id") == room, "slow's subscription")
        reader = asyncio.get_running_loop().create_task(read_fast())
        blob = "b" * 16000
        published = []
        loop = asyncio.get_running_loop()

        def publish_until_closed():
            for i in range(1500):
                published.append(publish(srv, room, "big",
                                          {"i": i, "blob": blob}))
                if i % 10 == 9 and metrics(srv).get(
                        "tidings_slow_consumer_closes_total", 0) > before:
                    return True
            return False

        closed = await loop.run_in_executor(None, publish_until_closed)
        check(closed, "no slow-consumer close after %d events of 16 KB "
              "(--max-queue-bytes 64K, client never reads)" % len(published))
        # Now read: the buffered frames, then the close frame.
        code, reason, frames = await loop.run_in_executor(
            None, slow.read_until_close, 15)
        check_eq((code, reason), (4001, "Slow consumer"),
                 "close for a client that never reads")
        check(frames < len(published), "the slow client got all %d events "
              "(%d frames) yet was closed" % (len(published), frames))
        print("  slow consumer: closed 4001 after %d events of 16 KB; it had "
              "%d of them buffered" % (len(published), frames))
        # The room did not stall: the reading subscriber gets everything.
        deadline = time.monotonic() + 15
        while len(got) < len(published) and time.monotonic() < deadline:
            if reader.done():
                break
            await asyncio.sleep(0.05)
        if reader.done() and reader.exception():
            raise AssertionError("fast reader failed: %r"
                                 % reader.exception())
        check_eq(got, published, "offsets the reading subscriber received")
        reader.cancel()
    finally:
        slow.close()
        await fast.close()
    m = metrics(srv)
    check(m.get("tidings_slow_consumer_closes_total", 0) >= 1,
          "tidings_slow_consumer_closes_total >= 1")


def step_broken_connections(srv):
    """Half frames, abrupt resets, HTTP garbage: nothing for the server to
    do but drop them."""
    r = raw_client(srv, "half-frame")
    r.sock.sendall(bytes([0x81, 0xFE, 0x10]))  # header cut short
    r.close()
    r = raw_client(srv, "half-payload")
    r.sock.sendall(bytes([0x81, 0x85]) + b"\x01\x02\x03\x04" + b"ab")
    r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                      b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
    r.close()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64)
              + b"\r\n\r\n")
    try:
        s.recv(4096)  # a 400 or a close; either is fine, a hang is not
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    status, head, body = raw_http(
        srv.port, "GET /api/v1/nowhere HTTP/1.1\r\nHost: x\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n")
    check_eq(status, 404, "WebSocket upgrade on an unknown path")


async def run_all(srv, runner):
    control = await new_client(srv, "control")
    r = await control.subscribe(CONTROL_ROOM)
    check_eq(r.get("event"), "subscribed", "control subscription")
    reader = Control(control)
    pub = Publisher(srv)
    pub.start()

    async def step(name, fn):
        t0 = time.monotonic()
        try:
            res = fn(srv)
            if asyncio.iscoroutine(res):
                await asyncio.wait_for(res, 60)
        except Exception as e:  # noqa: BLE001 - reported
            runner.failures.append(name)
            print("FAIL %s (%.2fs): %s: %s" % (name, time.monotonic() - t0,
                                               type(e).__name__, e),
                  flush=True)
            return
        print("PASS %s (%.2fs)" % (name, time.monotonic() - t0), flush=True)

    await step("invalid_messages", step_invalid_messages)
    await step("invalid_rooms", step_invalid_rooms)
    await step("subscription_limit", step_subscription_limit)
    await step("binary_garbage", step_binary_garbage)
    await step("protocol_violations", step_protocol_violations)
    await step("oversized_frames", step_oversized)
    await step("rate_limit", step_rate_limit)
    await step("slow_consumer", step_slow_consumer)
    await step("broken_connections", step_broken_connections)

    async def control_received_everything(_srv):
        pub.stop_flag.set()
        await asyncio.get_running_loop().run_in_executor(None, pub.join, 20)
        check(not pub.is_alive(), "publisher thread did not finish")
        check(pub.error is None, "publishing the control stream failed: %s"
              % pub.error)
        n = len(pub.offsets)
        check_eq(pub.offsets, list(range(1, n + 1)),
                 "publish offsets of the control room")
        deadline = time.monotonic() + 15
        while len(reader.events) < n and time.monotonic() < deadline \
                and reader.closed is None:
            await asyncio.sleep(0.05)
        check(reader.closed is None, "the control client was closed: %r"
              % (reader.closed,))
        offs = [f["offset"] for f in reader.events]
        seqs = [f["data"]["seq"] for f in reader.events]
        check_eq(len(offs), n, "events the control client received")
        check_eq(offs, list(range(1, n + 1)),
                 "control offsets (in order, consecutive)")
        check_eq(seqs, list(range(1, n + 1)), "control data in order")
        check(not [f for f in reader.others if f.get("type") == "error"],
              "control client got error frames: %r" % reader.others)
        print("  control client received %d/%d events in order" % (len(offs),
                                                                   n))
        reader.task.cancel()
        await control.send({"type": "ping"})
        f = await control.recv_type("pong")
        check(f, "control client still answers")

    await step("control_received_everything", control_received_everything)
    await control.close()


def step_healthy_after(srv):
    check(srv.alive(), "the server process died")
    r = get(srv, "/healthz")
    check_eq(r.status, 200, "/healthz after the bad inputs")

    async def fresh():
        c = await new_client(srv, "after")
        try:
            await c.send({"type": "ping"})
            await c.recv_type("pong")
        finally:
            await c.close()
    asyncio.run(fresh())


def main():
    binary = tidings_bin()
    runner = Runner("test_bad_inputs")
    try:
        srv = Server(binary, extra=[
            "--max-message-size", "4K", "--commands-per-second", str(RATE),
            "--max-queue-bytes", "64K", "--max-subscriptions", str(MAX_SUBS),
            "--io-threads", "2"])
    except AssertionError as e:
        print("FAIL server start: %s" % e)
        sys.exit(1)
    runner.servers.append(srv)
    before = len(runner.failures)
    try:
        asyncio.run(asyncio.wait_for(run_all(srv, runner), 100))
    except Exception as e:  # noqa: BLE001 - reported
        runner.failures.append("run_all")
        print("FAIL run_all: %s: %s" % (type(e).__name__, e))
    runner.run("healthy_after", step_healthy_after, srv)
    if len(runner.failures) > before:
        print(srv.output_tail())
    runner.stop_server(srv)
    runner.finish()


if __name__ == "__main__":
    main()
