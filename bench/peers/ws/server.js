'use strict';
// Plain `ws` peer for scripts/bench.sh: the no-history baseline.
//
//   WebSocket  any path; client sends {"type":"subscribe","room":"r"} and gets
//              {"type":"subscribed","room":"r"}; every publish to r is then
//              sent to it verbatim. A `?room=r` query subscribes on connect.
//   HTTP       POST /publish/<room>  body = the message, sent as-is to every
//              socket of the room; answers 200 {"delivered":n}.
//              GET /healthz answers 200 (the script polls it).
//
// No history, no acknowledgement beyond "handed to the sockets": a
// reconnecting client misses what was published meanwhile.
//
// Options (env): PORT (default 8100), HOST (default 127.0.0.1).

const http = require('http');
const { WebSocketServer } = require('ws');

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 8100);
const maxBody = 1 << 20;

// room -> Set of sockets, and socket -> Set of rooms, kept in step.
const rooms = new Map();

function join(ws, room) {
  let set = rooms.get(room);
  if (!set) {
    set = new Set();
    rooms.set(room, set);
  }
  set.add(ws);
  ws.rooms.add(room);
  ws.send(JSON.stringify({ type: 'subscribed', room }));
}

function leaveAll(ws) {
  for (const room of ws.rooms) {
    const set = rooms.get(room);
    if (!set) continue;
    set.delete(ws);
    if (set.size === 0) rooms.delete(room);
  }
  ws.rooms.clear();
}

function publish(room, body) {
  const set = rooms.get(room);
  if (!set) return 0;
  let n = 0;
  for (const ws of set) {
    if (ws.readyState !== ws.OPEN) continue;
    // One encoding for all: ws frames the same Buffer for every socket.
    ws.send(body, { binary: false });
    ++n;
  }
  return n;
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    return res.end('ok\n');
  }
  const m = /^\/publish\/([^/?]+)$/.exec(req.url);
  if (req.method !== 'POST' || !m) {
    res.writeHead(404);
    return res.end();
  }
  const room = decodeURIComponent(m[1]);
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > maxBody) {
      res.writeHead(413);
      res.end();
      req.destroy();
      return;
    }
    chunks.push(c);
  });
  req.on('end', () => {
    if (res.writableEnded) return;
    const n = publish(room, Buffer.concat(chunks));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ delivered: n }));
  });
});
server.keepAliveTimeout = 120000;
server.maxConnections = 0; // no cap beyond the fd limit

const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 64 * 1024 });
wss.on('connection', (ws, req) => {
  ws.rooms = new Set();
  const q = req.url.indexOf('?');
  if (q >= 0) {
    const room = new URLSearchParams(req.url.slice(q + 1)).get('room');
    if (room) join(ws, room);
  }
  ws.on('message', (data) => {
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch {
      return ws.send(JSON.stringify({ type: 'error', error: 'invalid json' }));
    }
    if (msg && msg.type === 'subscribe' && typeof msg.room === 'string') join(ws, msg.room);
    else ws.send(JSON.stringify({ type: 'error', error: 'unknown message' }));
  });
  ws.on('close', () => leaveAll(ws));
  ws.on('error', () => {});
});

server.listen(port, host, () => {
  console.log(`ws peer listening on ${host}:${port} pid ${process.pid}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    for (const ws of wss.clients) ws.terminate();
    process.exit(0);
  });
}
