"""Shared harness for the integration tests: a real `tidings serve` process
and real clients.

Run the scripts with /usr/bin/python3 (Debian's interpreter, which sees the
python3-websockets package). The binary comes from argv[1] or $TIDINGS_BIN.

Every wait here is bounded: frames, closes, process start and exit all take
a timeout, and a failed wait raises AssertionError naming what was awaited.
"""

import asyncio
import atexit
import base64
import concurrent.futures
import hashlib
import hmac
import http.client as http_client
import json
import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

try:
    import websockets
except ImportError:  # pragma: no cover - reported clearly instead
    sys.stderr.write(
        "harness: python3-websockets is missing; run the tests with "
        "/usr/bin/python3 (Debian's interpreter)\n")
    sys.exit(2)

SECRET = "integration-secret-0123456789abcdef"
API_KEY = "integration-api-key-0123456789"
READY_RE = re.compile(
    r"tidings: node (\S+) listening on http://([0-9.]+):(\d+)")

_live_servers = []


def tidings_bin():
    """The tidings executable: argv[1], else $TIDINGS_BIN."""
    path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TIDINGS_BIN")
    if not path:
        sys.stderr.write("usage: %s <path to tidings> (or set TIDINGS_BIN)\n"
                         % sys.argv[0])
        sys.exit(2)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        sys.stderr.write("harness: %s is not an executable file\n" % path)
        sys.exit(2)
    return os.path.abspath(path)


# -- the server process ------------------------------------------------------

def die_with_parent():
    """In the child before exec: SIGKILL it when this script dies, even by
    SIGKILL (a ctest timeout), so no server outlives its test."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; atexit still kills
        pass


class Server:
    """One `tidings serve` on 127.0.0.1 with an ephemeral port.

    `memory=True` uses --memory-store; otherwise history lives in `data_dir`
    (a fresh temporary directory unless one is given, so a restart can reuse
    it). Flags in `extra` are appended; `env` adds environment variables;
    `with_credentials=False` leaves --jwt-secret/--api-key out (for config
    tests that give them another way).
    """

    def __init__(self, binary, extra=(), memory=True, data_dir=None, env=None,
                 with_credentials=True, secret=SECRET, api_key=API_KEY,
                 ready_timeout=20.0):
        self.binary = binary
        self.secret = secret
        self.api_key = api_key
        self.own_dir = None
        if data_dir is None and not memory:
            data_dir = self.own_dir = tempfile.mkdtemp(prefix="tidings-it-")
        self.data_dir = data_dir
        args = [binary, "serve", "--host", "127.0.0.1", "--port", "0"]
        if memory:
            args.append("--memory-store")
        else:
            args += ["--data-dir", data_dir]
        if with_credentials:
            args += ["--jwt-secret", secret, "--api-key", api_key]
        args += list(extra)
        self.args = args
        full_env = dict(os.environ)
        # The tests decide every option; stray TIDINGS_* settings must not.
        for k in list(full_env):
            if k.startswith("TIDINGS_") and k != "TIDINGS_BIN":
                del full_env[k]
        full_env.update(env or {})
        self.stdout_lines = []
        self.stderr_lines = []
        self._ready = threading.Event()
        self.port = None
        self.node = None
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=full_env, text=True,
            start_new_session=True, preexec_fn=die_with_parent)
        _live_servers.append(self)
        self._threads = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + ready_timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None:
                self._join_pumps()
                raise AssertionError(
                    "tidings serve exited with %s before it was ready\n%s"
                    % (self.proc.returncode, self.output_tail()))
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    "tidings serve printed no 'listening' line within %.0fs\n%s"
                    % (ready_timeout, self.output_tail()))

    def _pump_stdout(self):
        for line in self.proc.stdout:
            self.stdout_lines.append(line.rstrip("\n"))
            m = READY_RE.search(line)
            if m and not self._ready.is_set():
                self.node = m.group(1)
                self.port = int(m.group(3))
                self._ready.set()

    def _pump_stderr(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    def _join_pumps(self):
        for t in self._threads:
            t.join(2)

    # addresses
    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def url(self, path):
        return self.base + path

    def ws_url(self, token=None, path="/api/v1/ws"):
        u = "ws://127.0.0.1:%d%s" % (self.port, path)
        if token is not None:
            # Percent-encoded, as a browser's URL API would; JWTs need none.
            u += "?token=" + urllib.parse.quote(token, safe="-_.~")
        return u

    # life
    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=10.0):
        """SIGTERM and wait; returns the exit code (kills after `timeout`)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    "tidings serve did not exit within %.0fs of SIGTERM\n%s"
                    % (timeout, self.output_tail()))
        self._join_pumps()
        self._forget()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._forget()

    def _forget(self):
        if self in _live_servers:
            _live_servers.remove(self)

    def cleanup(self):
        self.kill()
        if self.own_dir:
            shutil.rmtree(self.own_dir, ignore_errors=True)

    def output_tail(self, n=40):
        out = ["--- server command: " + " ".join(self._redacted_args())]
        out.append("--- server stdout (last %d lines):" % n)
        out += self.stdout_lines[-n:]
        out.append("--- server stderr (last %d lines):" % n)
        out += self.stderr_lines[-n:]
        if self.proc.poll() is not None:
            out.append("--- server exit code: %s" % self.proc.returncode)
        return "\n".join(out)

    def _redacted_args(self):
        out, hide = [], False
        for a in self.args:
            out.append("***" if hide else a)
            hide = a in ("--jwt-secret", "--api-key")
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False


def _kill_leftovers():
    for s in list(_live_servers):
        s.kill()


atexit.register(_kill_leftovers)
for _sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_sig, lambda n, f: sys.exit(128 + n))


# -- tokens ------------------------------------------------------------------

def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_jwt(header, payload, secret=SECRET):
    head = b64url(json.dumps(header, separators=(",", ":")))
    body = b64url(json.dumps(payload, separators=(",", ":")))
    signing_input = (head + "." + body).encode()
    sig = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return head + "." + body + "." + b64url(sig)


def mint_token(sub, rooms=(), admin=False, secret=SECRET, ttl=3600,
               iat=None, exp=None, extra=None):
    now = int(time.time())
    payload = {"sub": sub, "rooms": list(rooms),
               "iat": now if iat is None else iat,
               "exp": (now + ttl) if exp is None else exp}
    if admin:
        payload["role"] = "admin"
    payload.update(extra or {})
    return sign_jwt({"alg": "HS256", "typ": "JWT"}, payload, secret)


def jwt_payload(token):
    return json.loads(b64url_decode(token.split(".")[1]))


# -- HTTP --------------------------------------------------------------------

class HttpReply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError("expected a JSON body, got %r (status %d)"
                                 % (self.body[:300], self.status))

    def __repr__(self):
        return "HTTP %d %r" % (self.status, self.body[:300])


def http(method, url, body=None, headers=None, timeout=10.0):
    """One request; any status is returned, never raised."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    req = urllib.request.Request(url, data=body, method=method,
                                 headers=dict(headers or {}))
    if body is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return HttpReply(r.status, r.headers, r.read().decode("utf-8",
                                                                  "replace"))
    except urllib.error.HTTPError as e:
        return HttpReply(e.code, e.headers,
                         e.read().decode("utf-8", "replace"))
    except (OSError, urllib.error.URLError,
            http_client.HTTPException) as e:
        raise AssertionError("%s %s failed: %s: %s"
                             % (method, url.split("?")[0], type(e).__name__,
                                e))


def raw_http(port, request, timeout=10.0):
    """Sends raw request bytes; returns (status, headers text, body) read
    until the server closes or the Content-Length is complete."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(request if isinstance(request, bytes) else request.encode())
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head, body = data.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    break
    finally:
        s.close()
    if b"\r\n\r\n" not in data:
        raise AssertionError("raw http: no complete response head: %r"
                             % data[:300])
    head, body = data.split(b"\r\n\r\n", 1)
    head = head.decode("latin-1")
    status = int(head.split(" ", 2)[1])
    return status, head, body.decode("utf-8", "replace")


def get(srv, path, bearer=None, timeout=10.0):
    headers = {"Authorization": "Bearer " + bearer} if bearer else {}
    return http("GET", srv.url(path), headers=headers, timeout=timeout)


def publish_raw(srv, body, key=None):
    k = srv.api_key if key is None else key
    headers = {"Authorization": "Bearer " + k} if k else {}
    return http("POST", srv.url("/api/v1/publish"), body=body,
                headers=headers)


def publish(srv, room, type_, data, event=None, key=None):
    """Publishes through the API; asserts 200 and returns the offset."""
    body = {"room_id": room, "type": type_, "data": data}
    if event is not None:
        body["event"] = event
    r = publish_raw(srv, body, key)
    check(r.status == 200, "publish to %s: expected 200, got %r" % (room, r))
    j = r.json()
    check(j.get("room_id") == room and isinstance(j.get("offset"), int),
          "publish reply must be {room_id, offset}, got %r" % j)
    return j["offset"]


def metrics(srv):
    """/metrics parsed into {name: value} (unlabelled samples)."""
    r = get(srv, "/metrics")
    check(r.status == 200, "GET /metrics: %r" % r)
    out = {}
    for line in r.body.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) >= 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return out


def wait_until(pred, timeout, what, interval=0.05):
    """Bounded poll, for state that nothing signals (metrics counters)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (timeout, what))
        time.sleep(interval)


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def check_eq(actual, expected, what):
    if actual != expected:
        raise AssertionError("%s: expected %r, got %r"
                             % (what, expected, actual))


# -- WebSocket client (python3-websockets) ------------------------------------

class Closed(Exception):
    """The server closed the connection while a frame was awaited."""

    def __init__(self, code, reason):
        super().__init__("connection closed: code %s reason %r"
                         % (code, reason))
        self.code = code
        self.reason = reason


class WsClient:
    """A JSON WebSocket client with bounded reads.

    Frames read while waiting for a particular one are kept in `seen` so a
    test can assert on everything that arrived.
    """

    def __init__(self, ws, name):
        self.ws = ws
        self.name = name
        self.seen = []

    @classmethod
    async def connect(cls, url, name="client", timeout=5.0, **kw):
        kw.setdefault("ping_interval", None)
        kw.setdefault("max_size", 16 * 1024 * 1024)
        kw.setdefault("close_timeout", 2)
        try:
            ws = await asyncio.wait_for(
                websockets.connect(url, open_timeout=timeout, **kw),
                timeout + 1)
        except asyncio.TimeoutError:
            raise AssertionError("%s: WebSocket handshake with %s took more "
                                 "than %.0fs" % (name, _strip_token(url),
                                                 timeout))
        return cls(ws, name)

    async def send(self, msg):
        if isinstance(msg, (dict, list)):
            msg = json.dumps(msg)
        await self.ws.send(msg)

    async def recv_raw(self, timeout=5.0):
        try:
            return await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError("%s: no frame within %.1fs" %
                                 (self.name, timeout))
        except websockets.ConnectionClosed as e:
            raise Closed(e.code, e.reason)

    async def recv(self, timeout=5.0):
        text = await self.recv_raw(timeout)
        try:
            frame = json.loads(text)
        except (ValueError, TypeError):
            raise AssertionError("%s: frame is not JSON: %r"
                                 % (self.name, text[:300]))
        self.seen.append(frame)
        return frame

    async def recv_until(self, pred, what, timeout=5.0, max_frames=10000):
        """The first frame satisfying `pred`, skipping others (bounded in
        time and in the number of frames)."""
        deadline = time.monotonic() + timeout
        skipped = []
        for _ in range(max_frames):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                f = await self.recv(left)
            except AssertionError:
                break
            except Closed as c:
                raise AssertionError(
                    "%s: closed (%s %r) while waiting for %s; skipped %s"
                    % (self.name, c.code, c.reason, what, _short(skipped)))
            if pred(f):
                return f
            skipped.append(f)
        raise AssertionError("%s: no %s within %.1fs; got instead: %s"
                             % (self.name, what, timeout, _short(skipped)))

    async def recv_type(self, type_, timeout=5.0, **fields):
        def pred(f):
            return f.get("type") == type_ and all(
                f.get(k) == v for k, v in fields.items())
        what = "frame of type %r%s" % (type_, (" with %r" % fields)
                                        if fields else "")
        return await self.recv_until(pred, what, timeout)

    async def expect_close(self, timeout=5.0):
        """Reads until the server closes; returns (code, reason, frames)."""
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    "%s: not closed within %.1fs; frames meanwhile: %s"
                    % (self.name, timeout, _short(frames)))
            try:
                text = await asyncio.wait_for(self.ws.recv(), left)
            except asyncio.TimeoutError:
                continue
            except websockets.ConnectionClosed as e:
                return e.code, e.reason, frames
            try:
                frames.append(json.loads(text))
            except (ValueError, TypeError):
                frames.append(text)

    async def subscribe(self, room, timeout=5.0):
        await self.send({"type": "subscribe", "room_id": room})
        return await self.recv_until(
            lambda f: (f.get("type") == "subscription"
                       and f.get("room_id") == room)
            or (f.get("type") == "error" and f.get("room_id") == room),
            "subscription reply for %s" % room, timeout)

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 5)
        except Exception:
            pass


def _strip_token(url):
    return re.sub(r"token=[^&]*", "token=***", url)


def _short(frames, n=8):
    text = [json.dumps(f)[:200] if not isinstance(f, str) else f[:200]
            for f in frames[-n:]]
    more = "" if len(frames) <= n else " (+%d earlier)" % (len(frames) - n)
    return "[" + ", ".join(text) + "]" + more


# -- raw WebSocket client ----------------------------------------------------

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class RawWs:
    """A WebSocket client written by hand on a socket: sends frames of any
    size and opcode (masked or not), reads whatever the server sends, and
    can choose never to read at all (a slow consumer)."""

    def __init__(self, port, path="/api/v1/ws", rcvbuf=None, timeout=5.0,
                 headers=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # Before connect, so the window the server sees is small.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port,
                 "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: 13"]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if time.monotonic() > deadline:
                raise AssertionError("raw ws: no handshake reply")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError("raw ws: connection closed during "
                                     "handshake; got %r" % self.buf)
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        head = head.decode("latin-1")
        self.status_line = head.split("\r\n")[0]
        check(" 101 " in self.status_line + " ",
              "raw ws: expected 101, got %r" % head[:300])
        want = base64.b64encode(hashlib.sha1(
            (key + WS_GUID).encode()).digest()).decode()
        check(("sec-websocket-accept: " + want.lower())
              in head.lower(), "raw ws: bad Sec-WebSocket-Accept in %r"
              % head[:300])

    # sending
    def send_frame(self, payload, opcode=OP_TEXT, fin=True, mask=True,
                   rsv=0):
        if isinstance(payload, str):
            payload = payload.encode()
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload)
        head = bytes([b0])
        mbit = 0x80 if mask else 0
        if n < 126:
            head += bytes([mbit | n])
        elif n < 65536:
            head += bytes([mbit | 126]) + struct.pack("!H", n)
        else:
            head += bytes([mbit | 127]) + struct.pack("!Q", n)
        if mask:
            mkey = os.urandom(4)
            head += mkey
            payload = bytes(b ^ mkey[i % 4] for i, b in enumerate(payload)) \
                if n < 65536 else _mask_large(payload, mkey)
        self.sock.sendall(head + payload)

    def send_json(self, obj):
        self.send_frame(json.dumps(obj))

    def send_close(self, code=1000, reason=b""):
        try:
            self.send_frame(struct.pack("!H", code) + reason, OP_CLOSE)
        except OSError:
            pass

    # reading
    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("frame read timed out")
            self.sock.settimeout(left)
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise EOFError("connection closed by peer")
            self.buf += chunk

    def recv_frame(self, timeout=5.0):
        """(fin, opcode, payload) of the next frame."""
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._fill(4, deadline)
            n = struct.unpack("!H", self.buf[2:4])[0]
            pos = 4
        elif n == 127:
            self._fill(10, deadline)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            pos = 10
        check(not (b1 & 0x80), "raw ws: server frames must not be masked")
        self._fill(pos + n, deadline)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv_json(self, timeout=5.0):
        """The next text message as JSON (answers pings on the way)."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.01, deadline - time.monotonic())
            fin, op, payload = self.recv_frame(left)
            if op == OP_PING:
                self.send_frame(payload, OP_PONG)
                continue
            if op == OP_CLOSE:
                code, reason = _close_payload(payload)
                raise Closed(code, reason)
            check(op == OP_TEXT and fin,
                  "raw ws: expected a whole text frame, got opcode %d" % op)
            return json.loads(payload)

    def recv_until(self, pred, what, timeout=5.0):
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                f = self.recv_json(deadline - time.monotonic())
            except (socket.timeout, TimeoutError):
                break
            if pred(f):
                return f
            seen.append(f)
        raise AssertionError("raw ws: no %s within %.1fs; got %s"
                             % (what, timeout, _short(seen)))

    def read_until_close(self, timeout=10.0):
        """Drains frames until a close frame; returns (code, reason,
        text_frames_seen). code is None when the TCP connection ended
        without a close frame."""
        deadline = time.monotonic() + timeout
        texts = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("raw ws: no close frame within %.1fs "
                                     "(%d text frames read)"
                                     % (timeout, texts))
            try:
                fin, op, payload = self.recv_frame(left)
            except (EOFError, ConnectionResetError, BrokenPipeError):
                return None, "", texts
            except (socket.timeout, TimeoutError):
                continue
            if op == OP_CLOSE:
                code, reason = _close_payload(payload)
                # Complete the closing handshake, as a client should.
                self.send_close(code if code else 1000)
                return code, reason, texts
            if op == OP_PING:
                try:
                    self.send_frame(payload, OP_PONG)
                except OSError:
                    pass
            elif op in (OP_TEXT, OP_CONT, OP_BINARY):
                texts += 1

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _mask_large(payload, mkey):
    n = len(payload)
    key = (mkey * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")) \
        .to_bytes(n, "big")


def _close_payload(payload):
    if len(payload) >= 2:
        return (struct.unpack("!H", payload[:2])[0],
                payload[2:].decode("utf-8", "replace"))
    return 1005, ""


# -- running a script ----------------------------------------------------------

class Runner:
    """Runs named test functions (sync or async) in order, prints PASS/FAIL
    per test with the server's output on failure, and exits non-zero if any
    failed. A test gets whatever the script passes as `ctx`."""

    def __init__(self, script):
        self.script = script
        self.failures = []
        self.servers = []  # servers whose output to print on failure
        self.seen = {}     # server -> how many stderr lines were checked

    def unexpected_messages(self):
        """Lines CAF printed for a message no handler took, since the last
        call. Such a message means an actor sent to another without taking
        its answer, and CAF's error reply can stop the receiver."""
        found = []
        for s in self.servers:
            lines = list(s.stderr_lines)
            start = self.seen.get(s, 0)
            found += [line for line in lines[start:]
                      if "*** unexpected message" in line]
            self.seen[s] = len(lines)
        return found

    def run(self, name, fn, *args):
        t0 = time.monotonic()
        try:
            res = fn(*args)
            if asyncio.iscoroutine(res):
                asyncio.run(asyncio.wait_for(res, 90))
            bad = self.unexpected_messages()
            check(not bad, "a server printed %r" % bad[:3])
        except Exception as e:  # noqa: BLE001 - reported, not swallowed
            dt = time.monotonic() - t0
            self.failures.append(name)
            print("FAIL %s (%.2fs): %s: %s" % (name, dt, type(e).__name__, e),
                  flush=True)
            if not isinstance(e, AssertionError):
                traceback.print_exc()
            for s in self.servers:
                print(s.output_tail(), flush=True)
            return False
        print("PASS %s (%.2fs)" % (name, time.monotonic() - t0), flush=True)
        return True

    def stop_server(self, srv, name="clean_shutdown"):
        """SIGTERM; the server must exit 0 within the bound (a hang or a
        crash on shutdown is a failure)."""
        if not srv.alive():
            self.failures.append("server_alive")
            print("FAIL server_alive: the server died during the tests\n%s"
                  % srv.output_tail(), flush=True)
            return
        try:
            rc = srv.stop()
        except AssertionError as e:
            self.failures.append(name)
            print("FAIL %s: %s" % (name, e), flush=True)
            return
        if rc != 0:
            self.failures.append(name)
            print("FAIL %s: exit code %s after SIGTERM\n%s"
                  % (name, rc, srv.output_tail()), flush=True)
            return
        print("PASS %s" % name, flush=True)

    def finish(self):
        bad = self.unexpected_messages()
        if bad:
            self.failures.append("unexpected_messages")
            print("FAIL unexpected_messages: a server printed %r" % bad[:3],
                  flush=True)
        for s in self.servers:
            s.cleanup()
        if self.failures:
            print("%s: %d failed: %s" % (self.script, len(self.failures),
                                          ", ".join(self.failures)),
                  flush=True)
            sys.exit(1)
        print("%s: all passed" % self.script, flush=True)
        sys.exit(0)


def run_cli(binary, *args, env=None, timeout=20.0, input_text=None):
    """Runs `tidings <args>`; returns CompletedProcess (text)."""
    full_env = dict(os.environ)
    for k in list(full_env):
        if k.startswith("TIDINGS_") and k != "TIDINGS_BIN":
            del full_env[k]
    full_env.update(env or {})
    try:
        return subprocess.run([binary] + list(args), env=full_env,
                              input=input_text, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("`tidings %s` did not finish within %.0fs; "
                             "stdout %r stderr %r"
                             % (" ".join(args[:3]), timeout, e.stdout,
                                e.stderr))


class LineReader:
    """Collects a child's stdout lines on a thread, for bounded waits."""

    def __init__(self, stream):
        self.q = queue.Queue()
        self.lines = []
        self.t = threading.Thread(target=self._pump, args=(stream,),
                                  daemon=True)
        self.t.start()

    def _pump(self, stream):
        for line in stream:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def wait_for(self, pred, what, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no line with %s within %.1fs; got %r"
                                     % (what, timeout, self.lines[-10:]))
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("output ended before %s; got %r"
                                     % (what, self.lines[-10:]))
            self.lines.append(line)
            if pred(line):
                return line

    def rest(self, timeout=5.0):
        self.t.join(timeout)
        while True:
            try:
                line = self.q.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return self.lines


def parse_iso(ts):
    """Parses the server's ISO 8601 timestamps; asserts the shape."""
    import datetime
    check(isinstance(ts, str), "timestamp must be a string, got %r" % (ts,))
    try:
        t = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        raise AssertionError("timestamp %r is not ISO 8601" % ts)
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return t.timestamp()


def check_recent(ts, what, slack=120.0):
    t = parse_iso(ts)
    check(abs(t - time.time()) < slack,
          "%s timestamp %r is not close to now" % (what, ts))


class Restartable:
    """A server on a fixed port with SQLite history, restarted from one
    thread (the harness ties a server's life to its starting thread)."""

    def __init__(self, binary, runner):
        self.binary = binary
        self.runner = runner
        self.pool = concurrent.futures.ThreadPoolExecutor(1)
        self.srv = None
        self.port = None
        self.data_dir = None

    def start(self):
        return self.pool.submit(self._start).result()

    def _start(self):
        extra = [] if self.port is None else ["--port", str(self.port)]
        deadline = time.monotonic() + 20
        while True:
            try:
                self.srv = Server(self.binary, memory=False,
                                  data_dir=self.data_dir, extra=extra)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.data_dir = self.srv.data_dir
        self.runner.servers = [self.srv]
        self.port = self.srv.port
        return self.srv

    def kill(self):
        self.pool.submit(self.srv.kill).result()

    def cleanup(self):
        if self.srv:
            self.pool.submit(self.srv.cleanup).result()
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
