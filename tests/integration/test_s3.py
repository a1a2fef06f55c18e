#!/usr/bin/python3
"""Seed S3's client flows against a real `tidings serve`, transcribed from
shared/seeds/003_590584de0a6c15bd.txt: the operation progress socket
`/ws/operations/{id}?token=` (current_state first, the seed's message
formats, status_update at the end, pings), the OperationProgressClient's
reconnect (fixed 3 s, 5 attempts) getting current_state again, the close
1008 reasons, the per-user and per-operation limits, ignored malformed
frames, and the directory scan socket `/ws/scan/{id}` (scan, progress,
completed, error, cancel, escapes refused, disabled without a root).

usage: /usr/bin/python3 test_s3.py <path to tidings>
"""

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import websockets  # noqa: E402
from harness import (Restartable, Runner, Server, WsClient, check, check_eq,  # noqa: E402
                     http, mint_token, tidings_bin)


def create_operation(srv, owner, op_id=None):
    op_id = op_id or "op-" + uuid.uuid4().hex[:12]
    r = http("POST", srv.url("/api/v1/operations"),
             body={"id": op_id, "kind": "operation", "owner": owner,
                   "meta": {"source_path": "/test/documents"}},
             headers={"Authorization": "Bearer " + srv.api_key})
    check_eq(r.status, 201, "create operation: %r" % r)
    return op_id


def send_update(srv, op_id, message_type, data):
    """What the seed's CeleryTaskWithOperationUpdates.send_update does."""
    r = http("POST", srv.url("/api/v1/operations/%s/events" % op_id),
             body={"type": message_type, "data": data},
             headers={"Authorization": "Bearer " + srv.api_key})
    check_eq(r.status, 200, "operation event %s: %r" % (message_type, r))


def op_url(srv, op_id, token):
    return "ws://127.0.0.1:%d/ws/operations/%s?token=%s" % (srv.port, op_id,
                                                           token)


# -- "Automated Testing": the seed's test_operation_progress -------------------

async def test_operation_progress(srv):
    token = mint_token("test@example.com")
    operation_id = create_operation(srv, "test@example.com")

    async def updates():
        await asyncio.sleep(0.5)
        send_update(srv, operation_id, "operation_started",
                    {"status": "processing", "type": "index",
                     "operation_id": operation_id, "total_files": 2})
        send_update(srv, operation_id, "scanning_documents",
                    {"status": "scanning", "source_path": "/test/documents"})
        send_update(srv, operation_id, "scanning_completed",
                    {"status": "scanning_completed", "total_files_found": 2,
                     "new_documents_registered": 2, "scan_duration": 0.1})
        send_update(srv, operation_id, "file_completed",
                    {"processed_files": 1, "total_files": 2})
        send_update(srv, operation_id, "document_processed",
                    {"processed": 2, "failed": 0, "total": 2,
                     "current_file": "/test/documents/b.pdf",
                     "progress_percent": 100.0})
        send_update(srv, operation_id, "operation_completed",
                    {"status": "completed", "result": {"documents": 2}})

    feeder = asyncio.ensure_future(updates())
    uri = f"ws://127.0.0.1:{srv.port}/ws/operations/{operation_id}?token={token}"
    messages_received = []
    async with websockets.connect(uri, ping_interval=None) as websocket:
        start_time = datetime.now()
        while (datetime.now() - start_time).seconds < 30:
            try:
                message = await asyncio.wait_for(websocket.recv(), timeout=1.0)
                data = json.loads(message)
                messages_received.append(data)
                print(f"[{data['timestamp']}] {data['type']}: "
                      f"{data.get('data', {})}"[:160])
                if data["type"] == "status_update" and \
                        data["data"]["status"] in ["completed", "failed"]:
                    break
            except asyncio.TimeoutError:
                await websocket.send(json.dumps({"type": "ping"}))
    await feeder
    message_types = [msg["type"] for msg in messages_received]
    assert "current_state" in message_types, \
        "Should receive current state on connect"
    assert "operation_started" in message_types or \
        "scanning_documents" in message_types
    check_eq(message_types[0], "current_state", "first frame")
    check_eq(message_types[-1], "status_update", "last frame")
    # file_completed and scanning_completed did not end the operation.
    check_eq(message_types.count("status_update"), 1, "one status_update")
    check_eq(message_types[-2], "operation_completed", "before status_update")


# -- the TypeScript OperationProgressClient, with its reconnect ----------------

class OperationProgressClient:
    def __init__(self, base, token):
        self.base = base
        self.ws = None
        self.reconnectAttempts = 0
        self.maxReconnectAttempts = 5
        self.reconnectDelay = 3000
        self.token = token
        self.log = []
        self.opens = 0
        self.closes = []
        self.done = asyncio.Event()
        self.operationId = None

    def connect(self, operationId):
        self.operationId = operationId
        wsUrl = f"{self.base}/ws/operations/{operationId}?token={self.token}"
        asyncio.ensure_future(self._run(wsUrl))

    async def _run(self, wsUrl):
        try:
            self.ws = await websockets.connect(wsUrl, ping_interval=None)
        except OSError:
            return self.onclose(1006, "")
        self.opens += 1             # onopen
        self.reconnectAttempts = 0
        try:
            async for message in self.ws:
                self.handleMessage(json.loads(message))
            code, reason = self.ws.close_code, self.ws.close_reason
        except websockets.ConnectionClosed as e:
            code, reason = e.code, e.reason
        self.onclose(code, reason)

    def onclose(self, code, reason):
        self.closes.append((code, reason))
        # Reconnect on abnormal closure
        if code != 1000 and self.reconnectAttempts < self.maxReconnectAttempts:
            self.reconnect()

    def handleMessage(self, data):
        t = data["type"]
        if t == "current_state":
            self.log.append(("state", data["data"]["status"],
                             data["data"]["progress"]["completed"]))
        elif t == "operation_started":
            self.log.append(("started", data["total_files"]))
        elif t == "file_processing":
            self.log.append(("processing", data["current_file"],
                             data["processed_files"], data["total_files"]))
        elif t == "file_completed":
            self.log.append(("progress", data["processed_files"],
                             data["total_files"]))
        elif t == "operation_completed":
            self.log.append(("completed",))
            self.disconnect()
        elif t == "error":
            self.log.append(("error", data["message"]))

    def reconnect(self):
        self.reconnectAttempts += 1
        asyncio.get_event_loop().call_later(
            self.reconnectDelay / 1000.0,
            lambda: self.connect(self.operationId))

    def disconnect(self):
        if self.ws is not None and self.ws.open:
            asyncio.ensure_future(self.ws.close(1000, "Client disconnect"))
            self.done.set()


async def wait_for(pred, what, timeout):
    deadline = time.monotonic() + timeout
    while not pred():
        check(time.monotonic() < deadline, "timed out waiting for " + what)
        await asyncio.sleep(0.05)


async def test_reconnect_gets_current_state(restartable):
    srv = restartable.start()
    op = create_operation(srv, "ana")
    client = OperationProgressClient("ws://127.0.0.1:%d" % srv.port,
                                     mint_token("ana"))
    client.connect(op)
    await wait_for(lambda: client.log, "first current_state", 5)
    check_eq(client.log[0], ("state", "pending", None), "first state")
    send_update(srv, op, "operation_started",
                {"operation_id": op, "operation_type": "index",
                 "total_files": 42})
    send_update(srv, op, "file_processing",
                {"current_file": "/documents/report.pdf",
                 "processed_files": 10, "total_files": 42,
                 "status": "Processing"})
    send_update(srv, op, "file_completed",
                {"processed_files": 11, "total_files": 42})
    await wait_for(lambda: len(client.log) == 4, "three updates", 5)
    check_eq(client.log[1:], [("started", 42),
                              ("processing", "/documents/report.pdf", 10, 42),
                              ("progress", 11, 42)], "updates")
    restartable.kill()          # abnormal closure: 1006
    await asyncio.sleep(0.3)
    srv = restartable.start()   # same port, same history
    await wait_for(lambda: client.opens == 2, "reconnect after 3 s", 15)
    await wait_for(lambda: len(client.log) == 5, "current_state again", 5)
    # Still processing: file_completed ended a file, not the operation.
    check_eq(client.log[4], ("state", "Processing", 11), "state after reconnect")
    check_eq(client.closes[0][0], 1006, "first close was abnormal")
    send_update(srv, op, "operation_completed",
                {"operation_id": op, "status": "completed",
                 "message": "Operation completed successfully"})
    await asyncio.wait_for(client.done.wait(), 5)
    check_eq(client.log[-1], ("completed",), "completed")
    await wait_for(lambda: len(client.closes) == 2, "client's own close", 5)
    check_eq(client.closes[1][0], 1000, "client closed normally")
    check_eq(client.opens, 2, "no reconnect after a normal close")


# -- refusals, limits, malformed input -----------------------------------------

async def expect_refused(url, reason):
    c = await WsClient.connect(url, "refused")
    code, got, frames = await c.expect_close()
    check_eq((code, got), (1008, reason), "close for %s" % reason)
    check_eq(frames, [], "no frames before a refusal")


async def test_refusals(srv):
    op = create_operation(srv, "owner")
    await expect_refused(op_url(srv, op, "not-a-token"), "Invalid token")
    await expect_refused("ws://127.0.0.1:%d/ws/operations/%s" % (srv.port, op),
                         "Authentication required")
    await expect_refused(op_url(srv, "no-such-op", mint_token("owner")),
                         "Operation not found")
    await expect_refused(op_url(srv, op, mint_token("stranger")),
                         "You don't have access to this operation")
    # The room ACL grants too.
    c = await WsClient.connect(op_url(srv, op, mint_token(
        "auditor", ["operation:*"])), "auditor")
    check_eq((await c.recv())["type"], "current_state", "granted by ACL")
    await c.close()


async def test_connection_limits(srv_limits):
    srv = srv_limits  # --s3-user-connections 2 --s3-operation-connections 3
    op = create_operation(srv, "lim")
    open_ = []
    try:
        for i in range(2):
            c = await WsClient.connect(op_url(srv, op, mint_token("lim")),
                                       "lim-%d" % i)
            await c.recv_type("current_state")
            open_.append(c)
        await expect_refused(op_url(srv, op, mint_token("lim")),
                             "User connection limit exceeded")
        c = await WsClient.connect(op_url(srv, op, mint_token(
            "other", ["operation:*"])), "other")
        await c.recv_type("current_state")
        open_.append(c)
        await expect_refused(op_url(srv, op, mint_token(
            "third", ["operation:*"])), "Operation connection limit exceeded")
        await open_.pop(0).close()
        await asyncio.sleep(0.3)
        c = await WsClient.connect(op_url(srv, op, mint_token("lim")), "again")
        await c.recv_type("current_state")
        open_.append(c)
    finally:
        for c in open_:
            await c.close()


async def test_malformed_ignored(srv):
    op = create_operation(srv, "mal")
    control = await WsClient.connect(op_url(srv, op, mint_token("mal")),
                                     "control")
    bad = await WsClient.connect(op_url(srv, op, mint_token("mal")), "bad")
    try:
        await control.recv_type("current_state")
        await bad.recv_type("current_state")
        for n, junk in enumerate(["{not json", "[]", '{"type":"subscribe"}',
                                  '{"type":42}', "\u00e9" * 100,
                                  json.dumps({"action": "scan"})]):
            await bad.send(junk)
            send_update(srv, op, "file_completed",
                        {"processed_files": n, "total_files": 9})
            for c in (control, bad):
                f = await c.recv_type("file_completed")
                check_eq(f["processed_files"], n, "%s keeps receiving"
                         % c.name)
        await bad.send({"type": "ping"})
        await bad.recv_type("pong")
        check(not [f for f in bad.seen if f.get("type") == "error"],
              "S3 ignores unknown frames: %r" % bad.seen)
    finally:
        await control.close()
        await bad.close()


# -- "Directory Scan WebSocket" ------------------------------------------------

class ScanTree:
    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="tidings-scan-it-")
        docs = os.path.join(self.root, "documents")
        os.makedirs(os.path.join(docs, "subfolder"))
        with open(os.path.join(docs, "file1.pdf"), "wb") as f:
            f.write(b"x" * 1024)
        with open(os.path.join(docs, "subfolder", "file.txt"), "wb") as f:
            f.write(b"y" * 10)
        os.symlink("/etc", os.path.join(docs, "etc-link"))
        os.symlink("/etc", os.path.join(self.root, "outside"))
        big = os.path.join(self.root, "big")
        for d in range(40):
            sub = os.path.join(big, "d%02d" % d)
            os.makedirs(sub)
            for i in range(500):
                open(os.path.join(sub, "f%03d" % i), "w").close()

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


async def test_scan_flow(srv_scan, tree):
    # const scanId = crypto.randomUUID(); new WebSocket(`.../ws/scan/${scanId}`)
    scan_id = str(uuid.uuid4())
    ws = await WsClient.connect("ws://127.0.0.1:%d/ws/scan/%s"
                                % (srv_scan.port, scan_id), "scan")
    try:
        await ws.send({"action": "scan", "path": "/documents",
                       "recursive": True})
        # "/documents" is not below the root: absolute paths must name it.
        err = await ws.recv_type("error")
        check(err["message"], "error message: %r" % err)
        await ws.send({"action": "scan",
                       "path": os.path.join(tree.root, "documents"),
                       "recursive": True})
        done = await ws.recv_type("completed", timeout=10)
        paths = sorted(f["path"] for f in done["files"])
        real = os.path.realpath(os.path.join(tree.root, "documents"))
        check_eq(paths, [real + "/file1.pdf", real + "/subfolder/file.txt"],
                 "scanned files (links not followed)")
        check_eq(done["count"], 2, "count")
        check_eq(done["total_size"], 1034, "total_size")
        pdf = [f for f in done["files"] if f["path"].endswith(".pdf")][0]
        check_eq(pdf["size"], 1024, "size")
        check_eq(pdf["extension"], ".pdf", "extension")
        check(pdf["modified"].endswith("Z"), "modified: %r" % pdf)
        check(isinstance(done["warnings"], list), "warnings list")
        # Relative to the root works too; not recursive: one file.
        await ws.send({"action": "scan", "path": "documents",
                       "recursive": False})
        done = await ws.recv_type("completed", timeout=10)
        check_eq(done["count"], 1, "non-recursive count")
        # A big tree streams progress frames before completing.
        await ws.send({"action": "scan", "path": "big", "recursive": True})
        done = await ws.recv_type("completed", timeout=30)
        check_eq(done["count"], 20000, "big count")
        progress = [f for f in ws.seen if f.get("type") == "progress"]
        check(progress, "progress frames during a big scan")
        p = progress[-1]
        check(isinstance(p["scanned"], int) and p["total"] >= p["scanned"]
              and p["current_path"].startswith(os.path.realpath(tree.root)),
              "progress frame: %r" % p)
    finally:
        await ws.close()


async def test_scan_refusals_and_cancel(srv_scan, tree):
    ws = await WsClient.connect("ws://127.0.0.1:%d/ws/scan/x"
                                % srv_scan.port, "scan2")
    try:
        for path in ["../", "documents/../../etc", "/etc", "outside",
                     "documents/etc-link", "documents/../.."]:
            await ws.send({"action": "scan", "path": path, "recursive": True})
            err = await ws.recv_type("error")
            check("not allowed" in err["message"].lower()
                  or "outside" in err["message"].lower(),
                  "escape %r refused: %r" % (path, err))
        await ws.send({"action": "scan"})
        err = await ws.recv_type("error")
        check("path" in err["message"].lower(), "path required: %r" % err)
        await ws.send({"action": "scan", "path": "missing"})
        err = await ws.recv_type("error")
        check("not found" in err["message"].lower(), "not found: %r" % err)
        await ws.send("garbage")
        await ws.recv_type("error")
        # Cancel a running scan: 20000 files take many steps, and the three
        # frames go out back to back, in this order (gather may reorder
        # them), so they reach the actor between its first steps.
        await ws.send({"action": "scan", "path": "big", "recursive": True})
        await ws.send({"action": "scan", "path": "big", "recursive": True})
        await ws.send({"action": "cancel"})
        err = await ws.recv_type("error")
        check("already" in err["message"].lower(), "one scan at a time: %r"
              % err)
        err = await ws.recv_type("error", timeout=10)
        check("cancel" in err["message"].lower(), "cancelled: %r" % err)
        check(not [f for f in ws.seen if f.get("type") == "completed"],
              "no completed frame after cancel")
        await ws.send({"action": "cancel"})
        err = await ws.recv_type("error")
        check("no scan" in err["message"].lower()
              or "not running" in err["message"].lower(),
              "cancel with nothing running: %r" % err)
        # The socket still works after all that.
        await ws.send({"action": "scan", "path": "documents"})
        await ws.recv_type("completed", timeout=10)
    finally:
        await ws.close()


async def test_scan_disabled(srv):
    c = await WsClient.connect("ws://127.0.0.1:%d/ws/scan/abc" % srv.port,
                               "scan-off")
    code, reason, frames = await c.expect_close()
    check_eq((code, reason), (1008, "Directory scans are disabled"),
             "close without --scan-root")


def main():
    binary = tidings_bin()
    runner = Runner("test_s3")
    tree = ScanTree()
    srv = Server(binary)
    srv_limits = Server(binary, extra=["--s3-user-connections", "2",
                                       "--s3-operation-connections", "3"])
    srv_scan = Server(binary, extra=["--scan-root", tree.root,
                                     "--scan-max-files", "50000"])
    runner.servers = [srv, srv_limits, srv_scan]
    try:
        runner.run("operation_progress", test_operation_progress, srv)
        runner.run("refusals", test_refusals, srv)
        runner.run("connection_limits", test_connection_limits, srv_limits)
        runner.run("malformed_ignored", test_malformed_ignored, srv)
        runner.run("scan_disabled", test_scan_disabled, srv)
        runner.run("scan_flow", test_scan_flow, srv_scan, tree)
        runner.run("scan_refusals_and_cancel", test_scan_refusals_and_cancel,
                   srv_scan, tree)
        for s, name in ((srv, "clean_shutdown"),
                        (srv_limits, "clean_shutdown_limits"),
                        (srv_scan, "clean_shutdown_scan")):
            runner.stop_server(s, name)
        restartable = Restartable(binary, runner)
        runner.run("reconnect_gets_current_state",
                   test_reconnect_gets_current_state, restartable)
        restartable.cleanup()
    finally:
        tree.cleanup()
    runner.finish()


if __name__ == "__main__":
    main()
