#!/usr/bin/python3
"""Authentication against a real `tidings serve`: first-message auth and its
timeout, bad tokens in the query and in the auth message (close 1008), bad
bearer credentials on the HTTP endpoints (401), and the publish API's key
and body checks (401/400/405/413).

usage: /usr/bin/python3 test_auth.py <path to tidings>
"""

import asyncio
import json
import os
import sys
import time
import uuid

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SECRET, Runner, Server, WsClient, b64url,  # noqa: E402
                     check, check_eq, get, http, metrics, mint_token, publish,
                     publish_raw, raw_http, sign_jwt, tidings_bin)

ROOMS = ["execution:*"]


def bad_tokens():
    """(name, token) pairs every one of which must be refused."""
    now = int(time.time())
    good_payload = {"sub": "mallory", "rooms": ROOMS, "iat": now,
                    "exp": now + 3600}
    good = mint_token("mallory", ROOMS)
    head, body, sig = good.split(".")
    tampered_body = b64url(json.dumps(dict(good_payload, sub="alice",
                                           role="admin")))
    none_head = b64url(json.dumps({"alg": "none", "typ": "JWT"}))
    return [
        ("wrong secret", mint_token("mallory", ROOMS, secret="not-the-secret")),
        ("expired", mint_token("mallory", ROOMS, iat=now - 7200,
                               exp=now - 3600)),
        ("not yet valid", mint_token("mallory", ROOMS,
                                     extra={"nbf": now + 3600})),
        ("alg none, no signature", none_head + "." + body + "."),
        ("alg none, original signature", none_head + "." + body + "." + sig),
        ("alg None (case)", b64url(json.dumps({"alg": "None"})) + "." + body
         + "."),
        ("tampered payload", head + "." + tampered_body + "." + sig),
        ("HS512 header", sign_jwt({"alg": "HS512", "typ": "JWT"},
                                  good_payload)),
        ("RS256 header, HMAC signature",
         sign_jwt({"alg": "RS256", "typ": "JWT"}, good_payload)),
        ("missing sub", sign_jwt({"alg": "HS256", "typ": "JWT"},
                                 {"rooms": ROOMS, "exp": now + 3600})),
        ("empty sub", mint_token("", ROOMS)),
        ("garbage", "not-a-token"),
        ("two parts", head + "." + body),
        ("bad base64", head + ".%%%." + sig),
        ("truncated signature", good[:-5]),
    ]


async def expect_refused(srv, url, what, then_send=None):
    c = await WsClient.connect(url, what)
    if then_send is not None:
        await c.send(then_send)
    code, reason, frames = await c.expect_close(5)
    check_eq((code, reason), (1008, "Invalid token"),
             "close for %s" % what)
    conn = [f for f in frames if isinstance(f, dict)
            and f.get("type") == "connection"]
    check(not conn, "%s: got a connection frame before the close: %r"
          % (what, frames))


# -- tests -------------------------------------------------------------------

async def test_first_message_auth(srv):
    c = await WsClient.connect(srv.ws_url(), "first-message")
    try:
        # Before auth: commands that need an identity are refused.
        await c.send({"type": "subscribe", "room_id": "execution:x"})
        f = await c.recv()
        check_eq((f.get("type"), f.get("error_code")),
                 ("error", "NOT_AUTHENTICATED"),
                 "subscribe before auth")
        await c.send({"type": "auth", "token": mint_token("alice", ROOMS)})
        f = await c.recv()
        check_eq((f.get("type"), f.get("event")), ("connection", "connected"),
                 "frame after a valid auth message")
        check(f.get("connection_id"), "connection_id after auth")
        f = await c.recv()
        check_eq((f.get("type"), f.get("event"), f.get("room_id")),
                 ("subscription", "subscribed", "user:alice"),
                 "auto-join after first-message auth")
        room = "execution:" + str(uuid.uuid4())
        r = await c.subscribe(room)
        check_eq(r.get("event"), "subscribed", "subscribe after auth")
        off = publish(srv, room, "execution_update", {"ok": True},
                      "status_changed")
        f = await c.recv_type("execution_update")
        check_eq((f.get("offset"), f.get("data")), (off, {"ok": True}),
                 "event after first-message auth")
        # A second auth is refused and does not change the identity.
        await c.send({"type": "auth", "token": mint_token("bob", ROOMS)})
        f = await c.recv()
        check_eq((f.get("type"), f.get("error_code")),
                 ("error", "ALREADY_AUTHENTICATED"), "second auth message")
        await c.send({"type": "list_subscriptions"})
        f = await c.recv_type("subscriptions")
        check("user:alice" in f.get("rooms", []) and
              "user:bob" not in f.get("rooms", []),
              "identity after a refused second auth: %r" % f)
    finally:
        await c.close()


async def test_first_message_auth_bad_token(srv):
    await expect_refused(srv, srv.ws_url(), "auth message, wrong secret",
                         {"type": "auth", "token": mint_token(
                             "alice", ROOMS, secret="wrong")})
    await expect_refused(srv, srv.ws_url(), "auth message, expired token",
                         {"type": "auth", "token": mint_token(
                             "alice", ROOMS, exp=int(time.time()) - 3600)})
    # A malformed auth message is an error frame, not a close.
    c = await WsClient.connect(srv.ws_url(), "auth-missing-token")
    try:
        await c.send({"type": "auth"})
        f = await c.recv()
        check_eq((f.get("type"), f.get("error_code")),
                 ("error", "MISSING_FIELD"), "auth without token")
    finally:
        await c.close()


async def test_auth_timeout(srv):
    """--auth-timeout 1: a connection that never authenticates is closed
    with 1008 "Authentication timeout"; pings do not keep it alive."""
    async def one(send_pings):
        c = await WsClient.connect(srv.ws_url(), "no-auth")
        t0 = time.monotonic()
        if send_pings:
            await c.send({"type": "ping"})
            f = await c.recv()
            check_eq(f.get("type"), "pong", "ping before auth")
        code, reason, frames = await c.expect_close(6)
        dt = time.monotonic() - t0
        check_eq((code, reason), (1008, "Authentication timeout"),
                 "close without auth (pings: %s)" % send_pings)
        check(dt >= 0.7, "closed after %.2fs, before the 1 s auth timeout"
              % dt)
        check(not any(isinstance(f, dict) and f.get("type") == "connection"
                      for f in frames), "no connection frame without auth")
    await asyncio.gather(one(False), one(True))

    # An authenticated connection outlives the auth timeout.
    c = await WsClient.connect(srv.ws_url(mint_token("alice", ROOMS)),
                               "authed")
    try:
        await c.recv_type("connection")
        closer = await WsClient.connect(srv.ws_url(), "timer")
        await closer.expect_close(6)  # an auth timeout has certainly passed
        await c.send({"type": "ping"})
        f = await c.recv_type("pong")
        check(f, "authenticated connection still answers after the timeout")
    finally:
        await c.close()


async def test_bad_tokens_in_query(srv):
    before = metrics(srv).get("tidings_auth_failures_total", 0)
    tokens = bad_tokens()
    for name, tok in tokens:
        await expect_refused(srv, srv.ws_url(tok), "query token: " + name)
    # Refused in the auth message too.
    for name, tok in tokens[:6]:
        await expect_refused(srv, srv.ws_url(), "auth message: " + name,
                             {"type": "auth", "token": tok})
    after = metrics(srv).get("tidings_auth_failures_total", 0)
    check(after - before >= len(tokens) + 6,
          "tidings_auth_failures_total rose by %d, expected >= %d"
          % (after - before, len(tokens) + 6))


async def test_leeway_and_good_token(srv):
    """exp a few seconds ago is inside the default 30 s leeway."""
    tok = mint_token("alice", ROOMS, exp=int(time.time()) - 5)
    c = await WsClient.connect(srv.ws_url(tok), "leeway")
    try:
        f = await c.recv()
        check_eq(f.get("type"), "connection",
                 "token expired 5 s ago (leeway 30 s)")
    finally:
        await c.close()
    # An empty ?token= is treated as no token: first-message auth applies.
    c = await WsClient.connect(srv.ws_url(""), "empty-token")
    try:
        await c.send({"type": "auth", "token": mint_token("alice", ROOMS)})
        f = await c.recv()
        check_eq(f.get("type"), "connection", "empty ?token= then auth")
    finally:
        await c.close()


def check_401(r, what):
    check_eq(r.status, 401, what + " status")
    j = r.json()
    check_eq(j.get("error_code"), "UNAUTHORIZED", what + " error_code")
    check(isinstance(j.get("message"), str) and j["message"],
          what + ": message must be a non-empty string: %r" % j)
    check(r.headers.get("WWW-Authenticate", "").startswith("Bearer"),
          what + ": WWW-Authenticate: Bearer expected, got %r"
          % r.headers.get("WWW-Authenticate"))


def test_http_bad_bearer(srv):
    forged = mint_token("alice", ROOMS, secret="wrong", admin=True)
    expired = mint_token("alice", ROOMS, exp=int(time.time()) - 3600)
    for path in ("/api/v1/ws/stats", "/api/v1/ws/rooms"):
        check_401(get(srv, path), "GET %s without Authorization" % path)
        check_401(get(srv, path, forged), "GET %s forged token" % path)
        check_401(get(srv, path, expired), "GET %s expired token" % path)
        check_401(get(srv, path, srv.api_key),
                  "GET %s with the API key instead of a JWT" % path)
        r = http("GET", srv.url(path), headers={
            "Authorization": "Basic " + mint_token("alice", ROOMS)})
        check_401(r, "GET %s with a Basic scheme" % path)
        r = get(srv, path, mint_token("alice", ROOMS))
        check_eq(r.status, 200, "GET %s with a good token" % path)
    r = http("POST", srv.url("/api/v1/ws/stats"), body="{}", headers={
        "Authorization": "Bearer " + mint_token("alice", ROOMS)})
    check_eq(r.status, 405, "POST /api/v1/ws/stats")


def test_publish_auth_and_body(srv):
    room = "execution:" + str(uuid.uuid4())
    good = {"room_id": room, "type": "execution_update", "data": {"n": 1}}
    check_401(publish_raw(srv, good, key=""), "publish without a key")
    check_401(publish_raw(srv, good, key="wrong-key"), "publish, wrong key")
    check_401(publish_raw(srv, good, key=srv.api_key + "x"),
              "publish, key with a suffix")
    check_401(publish_raw(srv, good, key=srv.api_key[:-1]),
              "publish, key prefix")
    check_401(publish_raw(srv, good, key=mint_token("a", ROOMS, admin=True)),
              "publish with a user JWT")
    # Refused publishes did not take offsets.
    off = publish(srv, room, "execution_update", {"n": 1})
    check_eq(off, 1, "first accepted publish in a fresh room")

    cases = [
        ("not JSON", "{not json", "INVALID_JSON"),
        ("JSON array", [1, 2], "INVALID_MESSAGE"),
        ("missing room_id", {"type": "t", "data": {}}, "MISSING_FIELD"),
        ("room_id not a string", {"room_id": 5, "type": "t", "data": {}},
         "MISSING_FIELD"),
        ("room_id without kind", {"room_id": "nokind", "type": "t",
                                  "data": {}}, "INVALID_ROOM"),
        ("room_id with space", {"room_id": "execution:a b", "type": "t",
                                "data": {}}, "INVALID_ROOM"),
        ("missing type", {"room_id": room, "data": {}}, "MISSING_FIELD"),
        ("empty type", {"room_id": room, "type": "", "data": {}},
         "MISSING_FIELD"),
        ("reserved type", {"room_id": room, "type": "connection",
                           "data": {}}, "INVALID_MESSAGE"),
        ("type with spaces", {"room_id": room, "type": "a b", "data": {}},
         "INVALID_MESSAGE"),
        ("missing data", {"room_id": room, "type": "t"}, "MISSING_FIELD"),
        ("event not a string", {"room_id": room, "type": "t", "event": 3,
                                "data": {}}, "MISSING_FIELD"),
    ]
    for what, body, code in cases:
        r = publish_raw(srv, body)
        check_eq(r.status, 400, "publish with %s: status" % what)
        j = r.json()
        check_eq(j.get("error_code"), code, "publish with %s: error_code"
                 % what)
        check(isinstance(j.get("message"), str), "publish with %s: message"
              % what)
    off = publish(srv, room, "execution_update", {"n": 2})
    check_eq(off, 2, "offset after refused bodies")

    r = http("GET", srv.url("/api/v1/publish"),
             headers={"Authorization": "Bearer " + srv.api_key})
    check_eq(r.status, 405, "GET /api/v1/publish")
    check_eq(r.json().get("error_code"), "METHOD_NOT_ALLOWED",
             "GET /api/v1/publish error_code")
    r = get(srv, "/api/v1/nope")
    check_eq(r.status, 404, "unknown path")
    check_eq(r.json().get("error_code"), "NOT_FOUND", "unknown path code")
    # --max-http-body 64K: a bigger body is refused with 413.
    # Only the head is sent: the Content-Length alone must be refused.
    status, head, body = raw_http(srv.port, (
        "POST /api/v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
        "Content-Length: 70000\r\n\r\n" % srv.api_key))
    check_eq(status, 413, "publish body over --max-http-body")
    check('"PAYLOAD_TOO_LARGE"' in body, "413 body: %r" % body)
    off = publish(srv, room, "execution_update", {"n": 3})
    check_eq(off, 3, "offset after an oversized body")


def test_publish_without_api_key(binary):
    """No --api-key: the publish API refuses everything (and says so)."""
    with Server(binary, with_credentials=False,
                extra=["--jwt-secret", SECRET]) as srv:
        r = publish_raw(srv, {"room_id": "execution:a", "type": "t",
                              "data": {}}, key="anything")
        check_401(r, "publish on a server without --api-key")
        r = publish_raw(srv, {"room_id": "execution:a", "type": "t",
                              "data": {}}, key="")
        check_401(r, "publish without key on a server without --api-key")
        check(any("api-key" in line for line in srv.stderr_lines),
              "a server without --api-key should warn on stderr; got %r"
              % srv.stderr_lines)


def test_serve_refuses_without_key(binary):
    """No --jwt-secret or key file: `serve` refuses to start."""
    from harness import run_cli
    r = run_cli(binary, "serve", "--port", "0", "--memory-store",
                "--api-key", "k", timeout=10)
    check(r.returncode != 0, "serve without a token key must fail; exit %s"
          % r.returncode)
    check("jwt-secret" in r.stderr, "the error should name --jwt-secret: %r"
          % r.stderr)


def main():
    binary = tidings_bin()
    runner = Runner("test_auth")
    try:
        srv = Server(binary, extra=["--auth-timeout", "1",
                                    "--max-http-body", "64K"])
    except AssertionError as e:
        print("FAIL server start: %s" % e)
        sys.exit(1)
    runner.servers.append(srv)
    for name, fn in [
            ("first_message_auth", test_first_message_auth),
            ("first_message_auth_bad_token",
             test_first_message_auth_bad_token),
            ("auth_timeout", test_auth_timeout),
            ("bad_tokens_in_query", test_bad_tokens_in_query),
            ("leeway_and_good_token", test_leeway_and_good_token),
            ("http_bad_bearer", test_http_bad_bearer),
            ("publish_auth_and_body", test_publish_auth_and_body)]:
        runner.run(name, fn, srv)
    runner.run("publish_without_api_key", test_publish_without_api_key,
               binary)
    runner.run("serve_refuses_without_key", test_serve_refuses_without_key,
               binary)
    if srv.alive():
        r = get(srv, "/healthz")
        if r.status != 200:
            runner.failures.append("healthz_after")
            print("FAIL healthz_after: %r" % r)
    runner.stop_server(srv)
    runner.finish()


if __name__ == "__main__":
    main()
