#!/usr/bin/env node
// A Socket.IO node for wsgate's fleet tests (cmd/wsgate/e2e_sio_test.go).
//
//   node fleet-server.js --name NAME [--port 0] [--v2] [--path /socket.io]
//
// Socket.IO 4 (Engine.IO 4), or 2 (Engine.IO 3) with --v2, on 127.0.0.1. It
// answers the event "echo" with an ack {node: NAME, msg}. Once listening it
// prints one JSON line {"listening": PORT} on stdout. GET /health answers 200
// (wsgate's default active health check); other paths outside Socket.IO's
// get 404.
'use strict';
const http = require('http');

function arg(name, def) {
  const i = process.argv.indexOf('--' + name);
  if (i < 0) return def;
  const v = process.argv[i + 1];
  return v === undefined || v.startsWith('--') ? true : v;
}

const name = arg('name', 'node');
const port = Number(arg('port', 0));
const v2 = arg('v2', false) === true;
const path = arg('path', '/socket.io');

const server = http.createServer((req, res) => {
  res.writeHead(req.url === '/health' ? 200 : 404, { 'Content-Type': 'text/plain' });
  res.end(req.url === '/health' ? 'ok ' + name + '\n' : 'not found\n');
});
let io;
if (v2) {
  io = require('socket.io-v2')(server, { path });
} else {
  const { Server } = require('socket.io');
  io = new Server(server, { path });
}
io.on('connection', (socket) => {
  socket.on('echo', (msg, ack) => {
    if (typeof ack === 'function') ack({ node: name, msg });
  });
});
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ listening: server.address().port }) + '\n');
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
