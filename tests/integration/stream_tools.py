"""Raw-socket clients for the HTTP fallbacks: an SSE reader (chunked
transfer decoding and the text/event-stream format, as a browser's
EventSource parses it) and a gap/duplicate checker shared by the SSE and
long-poll tests. Every read is bounded."""

import json
import socket
import time
import urllib.parse

from harness import check


class SseError(AssertionError):
    pass


class SseStream:
    """One GET on a fresh socket; events are parsed as they arrive.

    `events()` yields dicts {event, id, data} (comments as {comment}),
    `retry` holds the last retry hint. Close the socket at any time to force
    a reconnect."""

    def __init__(self, port, path, token=None, bearer=None,
                 last_event_id=None, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        if token is not None:
            path += ("&" if "?" in path else "?") + "token=" + \
                urllib.parse.quote(token, safe="")
        lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port,
                 "Accept: text/event-stream", "Cache-Control: no-cache"]
        if bearer:
            lines.append("Authorization: Bearer " + bearer)
        if last_event_id is not None:
            lines.append("Last-Event-ID: " + last_event_id)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.raw = b""
        self.body = b""        # decoded, not yet parsed
        self.ended = False     # the last chunk arrived (or EOF)
        self.retry = None
        self._queue = []
        self.status, self.headers = self._read_head(timeout)
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "")
        self.error_body = None
        if self.status != 200:
            n = int(self.headers.get("content-length", "0"))
            deadline = time.monotonic() + timeout
            while len(self.raw) < n:
                self._recv(deadline)
            self.error_body = self.raw[:n].decode()

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("sse read timed out")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.raw += chunk

    def _read_head(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.raw:
            self._recv(deadline)
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers

    def _dechunk(self):
        if not self.chunked:
            self.body += self.raw
            self.raw = b""
            return
        while True:
            eol = self.raw.find(b"\r\n")
            if eol < 0:
                return
            size = int(self.raw[:eol], 16)
            if size == 0:
                self.ended = True
                self.raw = b""
                return
            if len(self.raw) < eol + 2 + size + 2:
                return
            self.body += self.raw[eol + 2:eol + 2 + size]
            self.raw = self.raw[eol + 2 + size + 2:]

    def _blocks(self):
        out = []
        while b"\n\n" in self.body:
            block, self.body = self.body.split(b"\n\n", 1)
            ev = {"event": "message", "id": None, "data": []}
            comment = None
            for line in block.decode("utf-8").split("\n"):
                if line.startswith(":"):
                    comment = line[1:].strip()
                    continue
                field, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if field == "event":
                    ev["event"] = value
                elif field == "id":
                    ev["id"] = value
                elif field == "data":
                    ev["data"].append(value)
                elif field == "retry":
                    self.retry = int(value)
            if ev["data"]:
                ev["data"] = "\n".join(ev["data"])
                out.append(ev)
            elif comment is not None:
                out.append({"comment": comment})
        return out

    def next(self, timeout=5.0, comments=False):
        """The next event (or comment); raises on timeout or end."""
        deadline = time.monotonic() + timeout
        while True:
            self._queue += self._blocks()
            while self._queue:
                ev = self._queue.pop(0)
                if "comment" in ev and not comments:
                    continue
                return ev
            if self.ended:
                raise EOFError("stream ended")
            try:
                self._recv(deadline)
            except EOFError:
                self.ended = True
            self._dechunk()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def parse_cursor(text):
    epoch, _, off = text.rpartition(":")
    return epoch, int(off)


class GapChecker:
    """Offsets one client saw across reconnects: must be 1..N exactly once
    each, in order."""

    def __init__(self, name):
        self.name = name
        self.offsets = []

    def add(self, offset):
        self.offsets.append(offset)

    def verdict(self, total):
        dups = len(self.offsets) - len(set(self.offsets))
        want = list(range(1, total + 1))
        missing = sorted(set(want) - set(self.offsets))
        out_of_order = sum(1 for a, b in zip(self.offsets, self.offsets[1:])
                           if b <= a)
        return {"client": self.name, "seen": len(self.offsets),
                "duplicates": dups, "gaps": len(missing),
                "out_of_order": out_of_order,
                "first_missing": missing[:5]}

    def check(self, total):
        v = self.verdict(total)
        check(v["duplicates"] == 0 and v["gaps"] == 0 and
              v["out_of_order"] == 0 and v["seen"] == total,
              "%s: %s" % (self.name, json.dumps(v)))
        return v
