#!/usr/bin/env node
// Socket.IO 4 clients that keep emitting with acks and reconnect, for
// wsgate's rebalancing test (cmd/wsgate/e2e_rebalance_sio_test.go), with
// rebalance-server.js nodes behind wsgate. Many clients in one process.
//
//   node rebalance-clients.js --url http://127.0.0.1:PORT [--n 3000]
//        [--transports websocket|default] [--ramp 500] [--rate 1] [--every 1000]
//
// Client i is a socket.io-client with its own Manager (forceNew), auth
// {c: i}, reconnection on with reconnectionDelay 600 ms,
// randomizationFactor 2/3 and reconnectionDelayMax 1000 ms: socket.io's
// backoff is delay × (1 ± factor), so a client reconnects 0.2–1 s after it
// lost its connection. --transports websocket connects by WebSocket only;
// default is socket.io's polling, then upgrade to websocket. Clients start
// at --ramp per second.
//
// Once connected a client emits "e" (i, seq) --rate times per second, each
// with an ack callback. socket.io-client sends an emit made while
// disconnected after the reconnect (its send buffer); an emit handed to a
// transport that then closes before the ack came back is "in flight at a
// close": socket.io-client drops its ack callback at the disconnect, and
// this script records the seq as such.
//
// Every --every ms one JSON line goes to stdout:
//
//   {"phase":"tick","t":ms,"n":..,"connected":..,"websocket":..,
//    "nodes":{node: connected clients},"emitted":..,"acked":..,
//    "pending":..,"inflight":..,"buffered":..,"disconnects":..,
//    "reasons":{reason: n},"codes":{closeCode: n},"connectErrors":..}
//
// The line "stop" on stdin stops the emits, waits (up to 20 s) for the
// pending acks, and prints the same fields with "phase":"final" and
// "odd" (the event logs of up to 10 clients that saw something else than
// clean moves, or are not on websocket) and "clients": [[i, emitted, [unacked seqs not in flight at a close],
// [seqs in flight at a close], [[sid, node], ...]], ...]. "quit" (or EOF)
// closes every client and exits.
'use strict';
const readline = require('readline');
const { io: ioc } = require('socket.io-client');

function arg(name, def) {
  const i = process.argv.indexOf('--' + name);
  if (i < 0) return def;
  const v = process.argv[i + 1];
  return v === undefined || v.startsWith('--') ? true : v;
}

const url = arg('url');
const n = Number(arg('n', 3000));
const transports = arg('transports', 'websocket') === 'websocket' ? ['websocket'] : ['polling', 'websocket'];
const ramp = Number(arg('ramp', 500));
const rate = Number(arg('rate', 1));
const every = Number(arg('every', 1000));
if (!url) {
  console.error('rebalance-clients: --url is required');
  process.exit(2);
}

const start = Date.now();
const clients = [];
const reasons = {};
const codes = {};
let connectErrors = 0;
let emitting = true;
const connectErrorSamples = [];

function bump(m, k) {
  m[k] = (m[k] || 0) + 1;
}

function newClient(i) {
  const s = ioc(url, {
    path: '/socket.io',
    forceNew: true,
    transports,
    auth: { c: i },
    reconnection: true,
    reconnectionDelay: 600,
    randomizationFactor: 2 / 3,
    reconnectionDelayMax: 1000,
    timeout: 20000,
  });
  const c = {
    i,
    s,
    node: '',
    sids: [],
    seq: 0,
    pending: new Map(), // seq -> emitted while disconnected
    inflight: [],
    acked: 0,
    buffered: 0,
    disconnects: 0,
    timer: null,
    odd: false, // saw something other than a clean move: kept in "odd"
    events: [], // the last 30: [ms, what]
  };
  const ev = (what) => {
    c.events.push([Date.now() - start, what]);
    if (c.events.length > 30) c.events.shift();
  };
  c.ev = ev;
  s.io.on('open', () => {
    const e = s.io.engine;
    ev('open ' + e.id + ' ' + (e.transport && e.transport.name));
    e.on('upgrade', (tr) => ev('upgrade ' + tr.name));
    e.on('upgradeError', (err) => { c.odd = true; ev('upgradeError ' + (err && err.message)); });
    e.on('close', (reason, desc) => ev('engine close ' + reason + ' ' + (desc && desc.context && desc.context.code)));
  });
  s.on('hello', (node) => {
    ev('hello ' + node);
    c.node = node;
    c.sids.push([s.io.engine.id, node]);
  });
  s.on('connect', () => {
    if (c.timer || !emitting) return;
    // First connect: start emitting, at a random phase.
    setTimeout(() => {
      if (!emitting) return;
      emit(c);
      c.timer = setInterval(() => emit(c), 1000 / rate);
    }, Math.random() * (1000 / rate));
  });
  s.on('disconnect', (reason, desc) => {
    c.disconnects++;
    c.node = '';
    ev('disconnect ' + reason + ' ' + (desc && desc.context && desc.context.code));
    if (reason !== 'transport close') c.odd = true;
    bump(reasons, reason);
    const code = desc && desc.context && desc.context.code;
    bump(codes, code === undefined ? 'none' : String(code));
    // What is still in the send buffer goes out after the reconnect; every
    // other pending emit was handed to the transport that just closed, and
    // socket.io-client drops its ack callback now (Socket._clearAcks).
    const kept = new Set();
    for (const p of s.sendBuffer) if (p.data && p.data[0] === 'e') kept.add(p.data[2]);
    for (const seq of Array.from(c.pending.keys())) {
      if (!kept.has(seq)) {
        c.pending.delete(seq);
        c.inflight.push(seq);
      }
    }
  });
  s.on('connect_error', (e) => {
    c.odd = true;
    ev('connect_error ' + (e && e.message));
    connectErrors++;
    if (connectErrorSamples.length < 10) connectErrorSamples.push(`client ${i}: ${e && e.message}`);
  });
  return c;
}

function emit(c) {
  if (!emitting) return;
  const seq = c.seq++;
  const disconnected = !c.s.connected;
  if (disconnected) c.buffered++;
  c.pending.set(seq, disconnected);
  c.s.emit('e', c.i, seq, () => {
    if (c.pending.delete(seq)) c.acked++;
  });
}

function summary(phase) {
  const nodes = {};
  let connected = 0, websocket = 0, emitted = 0, acked = 0, pending = 0, inflight = 0, buffered = 0, disconnects = 0;
  for (const c of clients) {
    if (!c) continue;
    if (c.s.connected) {
      connected++;
      if (c.node) bump(nodes, c.node);
      const e = c.s.io.engine;
      if (e && e.transport && e.transport.name === 'websocket') websocket++;
    }
    emitted += c.seq;
    acked += c.acked;
    pending += c.pending.size;
    inflight += c.inflight.length;
    buffered += c.buffered;
    disconnects += c.disconnects;
  }
  return {
    phase, t: Date.now() - start, n, connected, websocket, nodes, emitted, acked, pending, inflight, buffered,
    disconnects, reasons, codes, connectErrors, errors: connectErrorSamples.splice(0),
  };
}

// oddClients: the event logs of up to 10 clients that saw something other
// than clean moves (another disconnect reason, an upgrade error, a connect
// error) or that are not on websocket now.
function oddClients() {
  const out = [];
  for (const c of clients) {
    if (!c) continue;
    const e = c.s.io.engine;
    const tr = e && e.transport ? e.transport.name : '';
    if (c.odd || (c.s.connected && tr !== 'websocket')) {
      if (out.length < 10) out.push({ i: c.i, connected: c.s.connected, transport: tr, events: c.events });
    }
  }
  return out;
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

async function stop() {
  emitting = false;
  for (const c of clients) if (c && c.timer) clearInterval(c.timer);
  const end = Date.now() + 20000;
  while (Date.now() < end && clients.some((c) => c.pending.size > 0)) await sleep(100);
  const out = summary('final');
  out.clients = clients.map((c) => [c.i, c.seq, Array.from(c.pending.keys()), c.inflight, c.sids]);
  out.odd = oddClients();
  return out;
}

function quit() {
  for (const c of clients) if (c) c.s.close();
  setTimeout(() => process.exit(0), 200);
}

(async () => {
  const ticker = setInterval(() => process.stdout.write(JSON.stringify(summary('tick')) + '\n'), every);
  const rl = readline.createInterface({ input: process.stdin });
  let busy = Promise.resolve();
  rl.on('line', (line) => {
    busy = busy.then(async () => {
      const cmd = line.trim();
      if (cmd === 'odd') {
        process.stdout.write(JSON.stringify({ phase: 'odd', odd: oddClients() }) + '\n');
      } else if (cmd === 'stop') {
        clearInterval(ticker);
        process.stdout.write(JSON.stringify(await stop()) + '\n');
      } else if (cmd === 'quit') quit();
    });
  });
  rl.on('close', () => { busy.then(quit); });
  // Ramp: a batch every 20 ms.
  const perBatch = Math.max(1, Math.round(ramp / 50));
  for (let i = 0; i < n; i += perBatch) {
    for (let j = i; j < Math.min(n, i + perBatch); j++) clients[j] = newClient(j);
    await sleep(20);
  }
})();
