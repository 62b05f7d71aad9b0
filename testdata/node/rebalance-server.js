#!/usr/bin/env node
// A Socket.IO 4 node for wsgate's rebalancing test with Socket.IO clients
// (cmd/wsgate/e2e_rebalance_sio_test.go), counting on the server side what
// the test asserts: connected sessions, sessions per client, emits received.
//
//   node rebalance-server.js --name NAME [--port 0]
//
// Clients connect with auth {c: INDEX} (rebalance-clients.js). On connect
// the node emits "hello" NAME. The event "e" (c, seq) is recorded and acked
// with NAME. HTTP, outside /socket.io/:
//
//   GET /health    200 (wsgate's active health check)
//   GET /stats     {"name","connected","engine","transports":{..},"connects",
//                   "disconnects":{reason:n},"received","dups","errors":[..]}
//   GET /sessions  {"name","sessions":[[c, sid, connectedNow], ...],
//                   "received":{c: [[from, to], ...]}}  (seq ranges, inclusive)
//
// connected is io.of('/').sockets.size: Socket.IO sessions connected now;
// engine is io.engine.clientsCount. Once listening it prints one JSON line
// {"listening": PORT} on stdout.
'use strict';
const http = require('http');
const { Server } = require('socket.io');

function arg(name, def) {
  const i = process.argv.indexOf('--' + name);
  if (i < 0) return def;
  const v = process.argv[i + 1];
  return v === undefined || v.startsWith('--') ? true : v;
}

const name = arg('name', 'node');
const port = Number(arg('port', 0));

let connects = 0;
const disconnects = {};
const sessions = []; // [c, sid, socket]
const received = new Map(); // c -> Set of seq
let nReceived = 0;
let dups = 0;
const errors = []; // samples: disconnects other than a transport close

function json(res, v) {
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(v));
}

function ranges(set) {
  const xs = Array.from(set).sort((a, b) => a - b);
  const out = [];
  for (const x of xs) {
    const last = out[out.length - 1];
    if (last && last[1] + 1 === x) last[1] = x;
    else out.push([x, x]);
  }
  return out;
}

const server = http.createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('ok ' + name + '\n');
    return;
  }
  if (req.url === '/stats') {
    const transports = {};
    for (const s of io.of('/').sockets.values()) {
      const t = s.conn.transport.name;
      transports[t] = (transports[t] || 0) + 1;
    }
    json(res, {
      name,
      connected: io.of('/').sockets.size,
      engine: io.engine.clientsCount,
      transports,
      connects,
      disconnects,
      received: nReceived,
      dups,
      errors,
    });
    return;
  }
  if (req.url === '/sessions') {
    const rec = {};
    for (const [c, set] of received) rec[c] = ranges(set);
    json(res, {
      name,
      sessions: sessions.map(([c, sid, s]) => [c, sid, s.connected]),
      received: rec,
    });
    return;
  }
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('not found\n');
});

const io = new Server(server, { path: '/socket.io' });
io.on('connection', (socket) => {
  connects++;
  const c = socket.handshake.auth && Number.isInteger(socket.handshake.auth.c) ? socket.handshake.auth.c : -1;
  sessions.push([c, socket.conn.id, socket]);
  socket.emit('hello', name);
  socket.on('e', (ci, seq, ack) => {
    let set = received.get(ci);
    if (!set) received.set(ci, (set = new Set()));
    if (set.has(seq)) dups++;
    else {
      set.add(seq);
      nReceived++;
    }
    if (typeof ack === 'function') ack(name);
  });
  socket.on('disconnect', (reason, desc) => {
    disconnects[reason] = (disconnects[reason] || 0) + 1;
    if (reason !== 'transport close' && reason !== 'client namespace disconnect' && errors.length < 10) {
      errors.push(`client ${c} sid ${socket.conn.id}: ${reason}: ${desc && (desc.message || desc.description || desc)}`);
    }
  });
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ listening: server.address().port }) + '\n');
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
