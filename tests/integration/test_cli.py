#!/usr/bin/python3
"""The `tidings` command line against real servers: `serve --help`,
configuration by environment and by config file (with their precedence),
`publish`, `tail`, `demo`, `token`, `codes`, and a restart on the same
--data-dir that keeps offsets.

usage: /usr/bin/python3 test_cli.py <path to tidings>
"""

import asyncio
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (API_KEY, SECRET, LineReader, RawWs, Runner,  # noqa: E402
                     Server, WsClient, b64url, b64url_decode, check,
                     die_with_parent,
                     check_eq, jwt_payload, mint_token, publish, publish_raw,
                     run_cli, tidings_bin)

ROOMS = ["execution:*", "workflow:*"]

# Options the issue and the tests rely on; --help must document each.
EXPECTED_SERVE_OPTIONS = [
    "host", "port", "node-id", "data-dir", "memory-store", "jwt-secret",
    "jwt-public-key-file", "jwt-alg", "jwt-issuer", "jwt-audience",
    "jwt-leeway", "api-key", "allowed-origins", "max-connections",
    "max-message-size", "max-queue-bytes", "max-http-body",
    "max-subscriptions", "commands-per-second", "idle-timeout",
    "auth-timeout", "heartbeat-interval",
]


class Tmp:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tidings-cli-")

    def file(self, name, text):
        p = os.path.join(self.dir, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


async def ws_connect(srv, sub="cli-user", secret=SECRET, rooms=ROOMS):
    c = await WsClient.connect(srv.ws_url(mint_token(sub, rooms,
                                                      secret=secret)), sub)
    await c.recv_type("connection")
    await c.recv_type("subscription", room_id="user:" + sub)
    return c


# -- tests -------------------------------------------------------------------

def test_serve_help(binary):
    r = run_cli(binary, "serve", "--help", timeout=10)
    check_eq(r.returncode, 0, "`serve --help` exit code")
    text = r.stdout
    blocks = {}
    name = None
    for line in text.splitlines():
        m = re.match(r"^  --([a-z0-9-]+)", line)
        if m:
            name = m.group(1)
            blocks[name] = line + "\n"
        elif name and line.startswith("      "):
            blocks[name] += line + "\n"
        elif not line.startswith("      "):
            name = None
    missing = [o for o in EXPECTED_SERVE_OPTIONS if o not in blocks]
    check(not missing, "`serve --help` does not list: %s" % missing)
    problems = []
    for opt, block in blocks.items():
        if opt == "config":  # the file itself; no env or default expected
            continue
        env = "TIDINGS_" + opt.upper().replace("-", "_")
        if env not in block:
            problems.append("--%s has no %s" % (opt, env))
        if "default:" not in block:
            problems.append("--%s has no default" % opt)
        if len(block.splitlines()) < 2 or len(block.splitlines()[1].strip()) \
                < 10:
            problems.append("--%s has no description" % opt)
    check(not problems, "; ".join(problems))
    for opt, default in [("port", "8000"), ("host", "127.0.0.1"),
                         ("max-message-size", "64K"),
                         ("commands-per-second", "50"),
                         ("auth-timeout", "10")]:
        check("default: " + default in blocks[opt],
              "--%s should show default %s: %r" % (opt, default,
                                                   blocks[opt]))
    check("--config" in text, "`serve --help` should explain --config")

    r = run_cli(binary, "serve", "--no-such-option", timeout=10)
    check_eq(r.returncode, 2, "exit code for an unknown option")
    check("no-such-option" in r.stderr, "the error names the option: %r"
          % r.stderr)
    r = run_cli(binary, "serve", "--port", "many", "--jwt-secret", "s",
                "--memory-store", timeout=10)
    check_eq(r.returncode, 2, "exit code for --port many")
    check("port" in r.stderr, "the error names --port: %r" % r.stderr)
    r = run_cli(binary, "serve", "--durability", "maybe", "--jwt-secret",
                "s", "--memory-store", "--port", "0", timeout=10)
    check_eq(r.returncode, 2, "exit code for --durability maybe")
    r = run_cli(binary, "--help", timeout=10)
    check_eq(r.returncode, 0, "`tidings --help` exit code")
    for cmd in ("serve", "token", "publish", "tail", "demo", "bench"):
        check(re.search(r"^\s+%s\s" % cmd, r.stdout, re.M),
              "`tidings --help` should list %s" % cmd)


async def test_config_by_env(binary):
    env_secret, env_key = "env-secret-xyz-123456", "env-key-abc-123456"
    with Server(binary, with_credentials=False, secret=env_secret,
                api_key=env_key,
                env={"TIDINGS_JWT_SECRET": env_secret,
                     "TIDINGS_API_KEY": env_key,
                     "TIDINGS_NODE_ID": "env-node",
                     "TIDINGS_MAX_MESSAGE_SIZE": "1K"}) as srv:
        check_eq(srv.node, "env-node", "node id from TIDINGS_NODE_ID")
        room = "execution:" + str(uuid.uuid4())
        check_eq(publish(srv, room, "t", {}), 1, "publish with the env key")
        r = publish_raw(srv, {"room_id": room, "type": "t", "data": {}},
                        key=API_KEY)
        check_eq(r.status, 401, "publish with a key other than the env one")
        c = await ws_connect(srv, secret=env_secret)
        await c.close()
        c = await WsClient.connect(srv.ws_url(mint_token("x", ROOMS)), "x")
        code, reason, _ = await c.expect_close(5)
        check_eq(code, 1008, "token signed with another secret")
        # TIDINGS_MAX_MESSAGE_SIZE=1K applies too.
        tok = mint_token("big", ROOMS, secret=env_secret)
        raw = RawWs(srv.port, "/api/v1/ws?token=" + tok)
        try:
            raw.recv_json()
            raw.send_frame(json.dumps({"type": "ping", "p": "x" * 2000}))
            code, _, _ = raw.read_until_close(5)
            check_eq(code, 1009, "2 KB message with "
                     "TIDINGS_MAX_MESSAGE_SIZE=1K")
        finally:
            raw.close()


async def test_config_file_and_precedence(binary):
    tmp = Tmp()
    try:
        path = tmp.file("tidings.conf", "\n".join([
            "# Tidings test configuration",
            "",
            "api-key = file-key-0123456789",
            'jwt-secret = "file secret with spaces"',
            "node-id = from-file",
            "max-subscriptions = 3",
            "",
        ]))
        with Server(binary, with_credentials=False, secret="file secret "
                    "with spaces", api_key="file-key-0123456789",
                    extra=["--config", path]) as srv:
            check_eq(srv.node, "from-file", "node id from the config file")
            room = "execution:" + str(uuid.uuid4())
            check_eq(publish(srv, room, "t", {}), 1,
                     "publish with the file's key")
            c = await ws_connect(srv, secret="file secret with spaces")
            try:
                for i in range(2):
                    r = await c.subscribe("execution:f%d" % i)
                    check_eq(r.get("event"), "subscribed", "subscribe %d" % i)
                r = await c.subscribe("execution:f-over")
                check_eq(r.get("error_code"), "TOO_MANY_SUBSCRIPTIONS",
                         "max-subscriptions = 3 from the file")
            finally:
                await c.close()
        # Precedence: file < environment < command line.
        with Server(binary, with_credentials=False, secret="file secret "
                    "with spaces", api_key="env-key-0123456789",
                    env={"TIDINGS_API_KEY": "env-key-0123456789",
                         "TIDINGS_NODE_ID": "from-env"},
                    extra=["--config", path, "--node-id",
                           "from-flag"]) as srv:
            check_eq(srv.node, "from-flag", "flag beats env and file")
            room = "execution:" + str(uuid.uuid4())
            check_eq(publish(srv, room, "t", {}), 1,
                     "the env key beats the file's")
            r = publish_raw(srv, {"room_id": room, "type": "t", "data": {}},
                            key="file-key-0123456789")
            check_eq(r.status, 401, "the file's key is overridden by env")
        # Broken files are refused at start, naming the line.
        bad = tmp.file("bad.conf", "port = 0\nno-such-key = 1\n")
        r = run_cli(binary, "serve", "--config", bad, "--jwt-secret", "s",
                    timeout=10)
        check_eq(r.returncode, 2, "exit code for an unknown config key")
        check("bad.conf:2" in r.stderr and "no-such-key" in r.stderr,
              "the error names file, line and key: %r" % r.stderr)
        r = run_cli(binary, "serve", "--config",
                    os.path.join(tmp.dir, "missing.conf"), timeout=10)
        check_eq(r.returncode, 2, "exit code for a missing config file")
        bad = tmp.file("bad2.conf", "just words\n")
        r = run_cli(binary, "serve", "--config", bad, timeout=10)
        check_eq(r.returncode, 2, "exit code for a line without '='")
    finally:
        tmp.cleanup()


async def test_publish_cli(srv, binary):
    room = "execution:" + str(uuid.uuid4())
    c = await ws_connect(srv)
    try:
        await c.subscribe(room)
        r = run_cli(binary, "publish", "--port", str(srv.port), "--api-key",
                    srv.api_key, "--event", "status_changed", room,
                    "execution_update", '{"status":"running","n":1}')
        check_eq(r.returncode, 0, "`tidings publish` exit code (stderr %r)"
                 % r.stderr)
        j = json.loads(r.stdout)
        check_eq(j, {"room_id": room, "offset": 1}, "`tidings publish` output")
        f = await c.recv_type("execution_update")
        check_eq((f.get("event"), f.get("offset"), f.get("data")),
                 ("status_changed", 1, {"status": "running", "n": 1}),
                 "event published by the CLI")
        r = run_cli(binary, "publish", "--port", str(srv.port), "--api-key",
                    srv.api_key, room, "node_update")
        check_eq(json.loads(r.stdout).get("offset"), 2,
                 "second CLI publish offset")
        f = await c.recv_type("node_update")
        check_eq(f.get("data"), {}, "data defaults to {}")
        r = run_cli(binary, "publish", "--port", str(srv.port), "--api-key",
                    "wrong", room, "t", "{}")
        check_eq(r.returncode, 1, "`tidings publish` with a wrong key exits 1")
        check("UNAUTHORIZED" in r.stdout + r.stderr,
              "the 401 body is shown: %r %r" % (r.stdout, r.stderr))
        r = run_cli(binary, "publish", "--port", str(srv.port), "--api-key",
                    srv.api_key, room, "t", "{broken")
        check_eq(r.returncode, 1, "`tidings publish` with bad JSON data")
        check("INVALID_JSON" in r.stdout + r.stderr,
              "bad JSON data is reported: %r" % r.stdout)
    finally:
        await c.close()


def test_tail_cli(srv, binary):
    room = "execution:" + str(uuid.uuid4())
    # Port and secret from the environment, to cover TIDINGS_* there too.
    env = dict(os.environ, TIDINGS_PORT=str(srv.port),
               TIDINGS_JWT_SECRET=srv.secret)
    p = subprocess.Popen([binary, "tail", room, "--sub", "tailer", "--rooms",
                          "execution:*", "--count", "2", "--timeout", "20"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env, preexec_fn=die_with_parent)
    try:
        out = LineReader(p.stdout)
        out.wait_for(lambda l: '"subscription"' in l and room in l,
                     "tail's subscription to " + room, 10)
        o1 = publish(srv, room, "execution_update", {"step": 1},
                     "status_changed")
        o2 = publish(srv, room, "node_update", {"step": 2}, "status_changed")
        try:
            rc = p.wait(20)
        except subprocess.TimeoutExpired:
            raise AssertionError("`tidings tail --count 2` still running; "
                                 "output %r" % out.lines)
        lines = out.rest()
        check_eq(rc, 0, "`tidings tail` exit code (stderr %r)"
                 % p.stderr.read())
        events = [json.loads(l) for l in lines
                  if l.startswith("{") and '"offset"' in l
                  and '"subscription"' not in l]
        check_eq([(e["type"], e["offset"], e["data"]) for e in events],
                 [("execution_update", o1, {"step": 1}),
                  ("node_update", o2, {"step": 2})],
                 "events printed by `tidings tail`")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)


async def test_demo_cli(srv, binary):
    exec_id = "demo-" + str(uuid.uuid4())
    room = "execution:" + exec_id
    c = await ws_connect(srv)
    try:
        await c.subscribe(room)
        loop = asyncio.get_running_loop()
        r = await loop.run_in_executor(None, lambda: run_cli(
            binary, "demo", "--port", str(srv.port), "--api-key", srv.api_key,
            "--execution-id", exec_id, "--nodes", "2", "--interval-ms", "10",
            timeout=30))
        check_eq(r.returncode, 0, "`tidings demo` exit code (stderr %r)"
                 % r.stderr)
        expected = ["execution_update", "node_update", "node_update",
                    "execution_update", "node_update", "node_update",
                    "execution_update"]
        frames = []
        for _ in expected:
            frames.append(await c.recv_until(
                lambda f: f.get("room_id") == room, "demo event", 10))
        check_eq([f.get("type") for f in frames], expected,
                 "demo event types")
        check_eq([f.get("offset") for f in frames], list(range(1, 8)),
                 "demo offsets")
        check(all(f.get("event") == "status_changed" for f in frames),
              "demo events carry event=status_changed")
        last = frames[-1]["data"]
        check_eq((last.get("execution_id"), last.get("status"),
                  last.get("completed_nodes"), last.get("total_nodes"),
                  last.get("progress_percentage")),
                 (exec_id, "completed", 2, 2, 100),
                 "final execution_update")
        node = frames[1]["data"]
        for k in ("execution_id", "node_execution_id", "node_id",
                  "node_name", "status", "message"):
            check(k in node, "node_update data lacks %s (seed shape): %r"
                  % (k, node))
        check_eq([f["data"]["status"] for f in frames[1:3]],
                 ["running", "completed"], "node statuses")
    finally:
        await c.close()


async def test_token_cli(srv, binary):
    r = run_cli(binary, "token", "--jwt-secret", srv.secret, "--sub",
                "alice", "--rooms", "execution:*", timeout=10)
    check_eq(r.returncode, 0, "`tidings token` exit code")
    tok = r.stdout.strip()
    check_eq(len(tok.split(".")), 3, "`tidings token` prints one JWT")
    head, body, sig = tok.split(".")
    want = hmac.new(srv.secret.encode(), (head + "." + body).encode(),
                    hashlib.sha256).digest()
    check_eq(sig, b64url(want), "HS256 signature of the minted token")
    check_eq(json.loads(b64url_decode(head)).get("alg"), "HS256",
             "token header alg")
    p = jwt_payload(tok)
    now = time.time()
    check_eq((p.get("sub"), p.get("rooms")), ("alice", ["execution:*"]),
             "token claims")
    check(p.get("exp", 0) > now and p.get("iat", now + 99) <= now + 1,
          "token exp/iat: %r" % p)
    check(p.get("role") != "admin", "no admin role unless asked")
    c = await WsClient.connect(srv.ws_url(tok), "cli-token")
    try:
        f = await c.recv()
        check_eq(f.get("type"), "connection", "CLI token accepted")
        r2 = await c.subscribe("execution:abc")
        check_eq(r2.get("event"), "subscribed", "CLI token grants its rooms")
        r2 = await c.subscribe("workflow:abc")
        check_eq(r2.get("type"), "error", "CLI token grants only its rooms")
    finally:
        await c.close()
    r = run_cli(binary, "token", "--jwt-secret", srv.secret, "--sub", "root",
                "--admin", timeout=10)
    check_eq(jwt_payload(r.stdout.strip()).get("role"), "admin",
             "`tidings token --admin`")
    check(p.get("plan") is None, "no plan claim unless asked: %r" % p)
    r = run_cli(binary, "token", "--jwt-secret", srv.secret, "--sub", "bob",
                "--plan", "pro", timeout=10)
    check_eq(jwt_payload(r.stdout.strip()).get("plan"), "pro",
             "`tidings token --plan pro`")
    r = run_cli(binary, "token", timeout=10)
    check(r.returncode != 0, "`tidings token` without a secret must fail")


def test_codes_cli(binary):
    r = run_cli(binary, "codes", timeout=10)
    check_eq(r.returncode, 0, "`tidings codes` exit code")
    for s in ("1008", "1009", "4001", "4029", "Access denied to room",
              "RATE_LIMITED", "Authentication timeout", "Invalid token"):
        check(s in r.stdout, "`tidings codes` lacks %r" % s)


async def test_restart_keeps_offsets(binary):
    tmp = Tmp()
    try:
        room = "execution:" + str(uuid.uuid4())
        srv = Server(binary, memory=False, data_dir=tmp.dir)
        try:
            offs = [publish(srv, room, "execution_update", {"i": i})
                    for i in range(3)]
            check_eq(offs, [1, 2, 3], "offsets before the restart")
            c = await ws_connect(srv)
            r = await c.subscribe(room)
            epoch = r.get("epoch")
            check_eq(r.get("offset"), 3, "room position in the subscription "
                     "reply")
            await c.close()
            rc = srv.stop()
            check_eq(rc, 0, "exit code after SIGTERM")
            check(any("stopped" in l for l in srv.stdout_lines),
                  "a clean stop is announced: %r" % srv.stdout_lines[-3:])
        finally:
            srv.cleanup()
        check(os.path.exists(os.path.join(tmp.dir, "node-1.sqlite")),
              "history file %s/node-1.sqlite" % tmp.dir)
        srv = Server(binary, memory=False, data_dir=tmp.dir)
        try:
            c = await ws_connect(srv)
            r = await c.subscribe(room)
            check_eq(r.get("offset"), 3, "room position after the restart")
            check_eq(r.get("epoch"), epoch,
                     "epoch after a clean restart with --durability full")
            off = publish(srv, room, "execution_update", {"i": 3})
            check_eq(off, 4, "first offset after the restart")
            f = await c.recv_type("execution_update")
            check_eq((f.get("offset"), f.get("data")), (4, {"i": 3}),
                     "event after the restart")
            await c.close()
            # Another room starts at 1: offsets are per room.
            check_eq(publish(srv, room + "-other", "t", {}), 1,
                     "offsets are per room")
        finally:
            srv.cleanup()
    finally:
        tmp.cleanup()


def main():
    binary = tidings_bin()
    runner = Runner("test_cli")
    runner.run("serve_help", test_serve_help, binary)
    runner.run("codes", test_codes_cli, binary)
    runner.run("config_by_env", test_config_by_env, binary)
    runner.run("config_file_and_precedence", test_config_file_and_precedence,
               binary)
    try:
        srv = Server(binary)
    except AssertionError as e:
        print("FAIL server start: %s" % e)
        runner.failures.append("server_start")
        runner.finish()
    runner.servers.append(srv)
    runner.run("token", test_token_cli, srv, binary)
    runner.run("publish", test_publish_cli, srv, binary)
    runner.run("tail", test_tail_cli, srv, binary)
    runner.run("demo", test_demo_cli, srv, binary)
    runner.servers.remove(srv)
    srv.cleanup()
    runner.run("restart_keeps_offsets", test_restart_keeps_offsets, binary)
    runner.finish()


if __name__ == "__main__":
    main()
