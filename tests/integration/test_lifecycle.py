#!/usr/bin/python3
"""Connection life against a real `tidings serve`: server heartbeat frames,
WebSocket keepalive pings and the idle timeout, the per-node connection
limit (close 1013), the Origin allow-list (close 1008), and a clean
shutdown that closes sessions with 1001.

usage: /usr/bin/python3 test_lifecycle.py <path to tidings>
"""

import asyncio
import os
import socket
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (OP_CLOSE, OP_PING, RawWs, Runner,  # noqa: E402
                     Server, WsClient, _close_payload, check, check_eq,
                     check_recent,
                     metrics, mint_token, parse_iso, tidings_bin, wait_until)

ROOMS = ["execution:*"]
IDLE = 3        # --idle-timeout: pings at half of it, close after it
HEARTBEAT = 1   # --heartbeat-interval


def raw_authed(srv, sub, headers=None):
    r = RawWs(srv.port, "/api/v1/ws?token=" + mint_token(sub, ROOMS),
              headers=headers)
    return r


async def test_heartbeat(srv):
    c = await WsClient.connect(srv.ws_url(mint_token("hb", ROOMS)), "hb")
    try:
        await c.recv_type("connection")
        h1 = await c.recv_type("heartbeat", HEARTBEAT + 2)
        t1 = time.monotonic()
        h2 = await c.recv_type("heartbeat", HEARTBEAT + 2)
        dt = time.monotonic() - t1
        for h in (h1, h2):
            check_recent(h.get("server_time"), "heartbeat server_time")
            check_recent(h.get("timestamp"), "heartbeat timestamp")
        check(parse_iso(h2["server_time"]) > parse_iso(h1["server_time"]),
              "server_time advances: %r then %r" % (h1, h2))
        check(0.5 * HEARTBEAT <= dt <= HEARTBEAT + 1.5,
              "heartbeats %.2fs apart with --heartbeat-interval %d"
              % (dt, HEARTBEAT))
        # Clients may answer heartbeats with pong; that is accepted silently.
        await c.send({"type": "pong"})
        await c.send({"type": "ping"})
        f = await c.recv_type("pong")
        check(f, "pong after a client pong")
    finally:
        await c.close()


async def test_keepalive_and_idle_timeout(srv):
    """A client that answers WebSocket pings stays; one that sends nothing
    at all (not even pongs) is dropped after --idle-timeout."""
    good = await WsClient.connect(srv.ws_url(mint_token("keeper", ROOMS)),
                                  "keeper")  # websockets answers pings
    mute = raw_authed(srv, "mute")
    loop = asyncio.get_running_loop()

    def watch_mute():
        """Reads without ever answering; returns (first ping time, end time,
        how it ended)."""
        t0 = time.monotonic()
        first_ping = None
        deadline = t0 + IDLE + 4
        while time.monotonic() < deadline:
            try:
                fin, op, payload = mute.recv_frame(deadline - time.monotonic())
            except (EOFError, ConnectionResetError):
                return first_ping, time.monotonic() - t0, "eof"
            except (socket.timeout, TimeoutError):
                break
            if op == OP_PING and first_ping is None:
                first_ping = time.monotonic() - t0
            if op == OP_CLOSE:
                code, reason = _close_payload(payload)
                return first_ping, time.monotonic() - t0, (code, reason)
        return first_ping, None, "still open"

    try:
        first_ping, ended, how = await loop.run_in_executor(None, watch_mute)
        check(first_ping is not None and first_ping <= IDLE / 2 + 1.5,
              "the server should send a WebSocket ping by idle/2 (%.1fs); "
              "first ping at %r" % (IDLE / 2, first_ping))
        check(ended is not None, "a client that never answers stayed "
              "connected %ds past --idle-timeout %d" % (4, IDLE))
        check(ended >= IDLE / 2, "dropped after %.2fs, well before "
              "--idle-timeout %d" % (ended, IDLE))
        print("  mute client: first ping at %.2fs, dropped at %.2fs (%s)"
              % (first_ping, ended, how if how == "eof"
                 else "close %s %r" % how))
        if how != "eof":
            # The README's table names 1001 "Idle timeout" for this case.
            check_eq(how, (1001, "Idle timeout"), "idle close frame")
        # The answering client outlived the idle timeout.
        await good.send({"type": "ping"})
        f = await good.recv_type("pong")
        check(f, "a client that answers pings is kept past the idle timeout")
    finally:
        mute.close()
        await good.close()


async def test_connection_limit(binary):
    with Server(binary, extra=["--max-connections", "2"]) as srv:
        a = await WsClient.connect(srv.ws_url(mint_token("a", ROOMS)), "a")
        b = await WsClient.connect(srv.ws_url(mint_token("b", ROOMS)), "b")
        try:
            await a.recv_type("connection")
            await b.recv_type("connection")
            c = await WsClient.connect(srv.ws_url(mint_token("c", ROOMS)),
                                       "c")
            code, reason, frames = await c.expect_close(5)
            check_eq((code, reason), (1013, "Too many connections"),
                     "third connection with --max-connections 2")
            check(not frames, "a refused connection gets no frames: %r"
                  % frames)
            m = metrics(srv)
            check(m.get("tidings_sessions_rejected_total", 0) >= 1,
                  "tidings_sessions_rejected_total >= 1")
            # HTTP still answers at the limit.
            from harness import get
            check_eq(get(srv, "/healthz").status, 200, "/healthz at the limit")
            await a.close()
            # The slot is freed when the session ends (nothing signals it
            # to another client; poll the gauge, bounded).
            wait_until(lambda: metrics(srv).get("tidings_sessions_open", 9)
                       < 2, 5, "tidings_sessions_open < 2 after a close")
            d = await WsClient.connect(srv.ws_url(mint_token("d", ROOMS)),
                                       "d")
            f = await d.recv()
            check_eq(f.get("type"), "connection",
                     "a new connection after one closed")
            await d.close()
        finally:
            await a.close()
            await b.close()


def test_origin_policy(binary):
    with Server(binary) as srv:
        for origin in ("http://evil.example", "null",
                       "http://127.0.0.1.evil.example:%d" % srv.port):
            r = raw_authed(srv, "o", {"Origin": origin})
            try:
                code, reason, texts = r.read_until_close(5)
                check_eq((code, reason), (1008, "Origin not allowed"),
                         "Origin %s on the default (same host) policy"
                         % origin)
                check_eq(texts, 0, "frames before an origin refusal")
            finally:
                r.close()
        for headers in ({"Origin": "http://127.0.0.1:%d" % srv.port}, {}):
            r = raw_authed(srv, "o", headers)
            try:
                f = r.recv_json()
                check_eq(f.get("type"), "connection",
                         "allowed origin %r" % headers)
            finally:
                r.close()
    with Server(binary, extra=["--allowed-origins",
                               "https://app.example, https://b.example"]) \
            as srv:
        r = raw_authed(srv, "o", {"Origin": "https://b.example"})
        try:
            check_eq(r.recv_json().get("type"), "connection",
                     "an origin in --allowed-origins")
        finally:
            r.close()
        r = raw_authed(srv, "o", {"Origin": "http://127.0.0.1:%d" % srv.port})
        try:
            code, reason, _ = r.read_until_close(5)
            check_eq(code, 1008, "same host is not implied once "
                     "--allowed-origins is set")
        finally:
            r.close()


async def test_shutdown(srv):
    c = await WsClient.connect(srv.ws_url(mint_token("last", ROOMS)), "last")
    await c.recv_type("connection")
    loop = asyncio.get_running_loop()
    stopping = loop.run_in_executor(None, srv.stop)
    code, reason, _ = await c.expect_close(10)
    rc = await stopping
    check_eq((code, reason), (1001, "Server shutting down"),
             "close on SIGTERM")
    check_eq(rc, 0, "exit code after SIGTERM")


def main():
    binary = tidings_bin()
    runner = Runner("test_lifecycle")
    try:
        srv = Server(binary, extra=["--heartbeat-interval", str(HEARTBEAT),
                                    "--idle-timeout", str(IDLE)])
    except AssertionError as e:
        print("FAIL server start: %s" % e)
        sys.exit(1)
    runner.servers.append(srv)
    runner.run("heartbeat", test_heartbeat, srv)
    runner.run("keepalive_and_idle_timeout", test_keepalive_and_idle_timeout,
               srv)
    runner.run("connection_limit", test_connection_limit, binary)
    runner.run("origin_policy", test_origin_policy, binary)
    runner.run("shutdown", test_shutdown, srv)
    runner.finish()


if __name__ == "__main__":
    main()
