'use strict';
// Socket.IO 4.8 peer for scripts/bench.sh.
//
//   Socket.IO  /socket.io/ (Engine.IO v4, websocket or polling). The client
//              emits `join` with a room name; the server joins it and emits
//              `joined` with the room. Publishes arrive as `event` with the
//              published JSON as the argument.
//   HTTP       POST /publish/<room>  JSON body -> io.to(room).emit("event",
//              body); answers 200 {"ok":true}. GET /healthz answers 200.
//
// SIO_RECOVERY=1 enables connectionStateRecovery (the "socketio-recovery"
// variant): the server keeps each session's rooms and the packets it missed
// for SIO_RECOVERY_MS (default 120000) so a client that reconnects with its
// pid and last offset gets them replayed. Without it Socket.IO has no
// history at all.
//
// Options (env): PORT (default 8200), HOST (default 127.0.0.1).

const http = require('http');
const { Server } = require('socket.io');

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 8200);
const recovery = ['1', 'true', 'yes', 'on'].includes(String(process.env.SIO_RECOVERY || '').toLowerCase());
const maxBody = 1 << 20;

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
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString());
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' });
      return res.end('{"error":"invalid json"}');
    }
    // Encoded once by the adapter and written to every socket of the room.
    io.to(room).emit('event', body);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
});
server.keepAliveTimeout = 120000;

const options = {
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
  maxHttpBufferSize: 64 * 1024,
};
if (recovery) {
  options.connectionStateRecovery = {
    maxDisconnectionDuration: Number(process.env.SIO_RECOVERY_MS || 120000),
    skipMiddlewares: true,
  };
}
const io = new Server(server, options);

io.on('connection', (socket) => {
  socket.on('join', (room) => {
    if (typeof room !== 'string' || room.length === 0 || room.length > 200) return;
    socket.join(room);
    socket.emit('joined', room);
  });
});

server.listen(port, host, () => {
  console.log(`socket.io peer listening on ${host}:${port} pid ${process.pid} recovery ${recovery}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    io.close();
    process.exit(0);
  });
}
