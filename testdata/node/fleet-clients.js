#!/usr/bin/env node
// Socket.IO clients for wsgate's fleet tests (cmd/wsgate/e2e_sio_test.go):
// many clients from one process, to stay within the file limit.
//
//   node fleet-clients.js --url http://127.0.0.1:PORT [--n 500] [--v2]
//        [--path /socket.io] [--timeout 30000] [--batch 25] [--every 20]
//
// Each client is a socket.io-client (4, or 2 with --v2) with default
// transports (polling, then upgrade to websocket), its own Manager
// (forceNew: one Engine.IO session each) and no cookie jar. Clients start in
// batches of --batch every --every ms. A client is done when it connected,
// saw its transport become websocket (or gave up after 10 s), and got the
// ack of one "echo" event. Then one JSON line goes to stdout:
//
//   {"phase":"connect","n":500,"connected":500,"upgraded":500,"acked":500,
//    "nodes":{"a":167,...},"errors":[...],"ms":1234}
//
// After that, each line "round" on stdin makes every client (waiting for it
// to be connected again, up to --timeout) send one more echo, and prints
//
//   {"phase":"round","acked":N,"nodes":{...},"clients":[[node0,node,disconnects,upgraded],...],"errors":[...]}
//
// where node0 is the node of the client's first ack. "quit" (or EOF) closes
// every client and exits.
'use strict';
const readline = require('readline');

function arg(name, def) {
  const i = process.argv.indexOf('--' + name);
  if (i < 0) return def;
  const v = process.argv[i + 1];
  return v === undefined || v.startsWith('--') ? true : v;
}

const url = arg('url');
const n = Number(arg('n', 500));
const v2 = arg('v2', false) === true;
const path = arg('path', '/socket.io');
const timeout = Number(arg('timeout', 30000));
const batch = Number(arg('batch', 25));
const every = Number(arg('every', 20));
if (!url) {
  console.error('fleet-clients: --url is required');
  process.exit(2);
}

const ioc = v2 ? require('socket.io-client-v2') : require('socket.io-client').io;

const errors = [];
function fail(i, what) {
  if (errors.length < 20) errors.push(`client ${i}: ${what}`);
}

function transportName(s) {
  const e = s.io && s.io.engine;
  return e && e.transport ? e.transport.name : '';
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// waitFor polls cond every 20 ms until it holds (true) or ms pass (false).
async function waitFor(cond, ms) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await sleep(20);
  }
  return true;
}

function echo(s, i, ms) {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(null), ms);
    s.emit('echo', 'hello ' + i, (reply) => {
      clearTimeout(t);
      resolve(reply && reply.node ? reply.node : null);
    });
  });
}

const clients = [];

async function runClient(i) {
  const c = { s: null, connected: false, upgraded: false, node0: null, disconnects: 0 };
  clients[i] = c;
  const s = ioc(url, { path, forceNew: true, reconnection: true, timeout: timeout });
  c.s = s;
  s.on('connect', () => { c.connected = true; });
  s.on('disconnect', () => { c.disconnects++; });
  s.on('connect_error', (e) => { if (!c.connected) fail(i, 'connect_error ' + (e && e.message)); });
  if (!(await waitFor(() => s.connected, timeout))) {
    fail(i, 'not connected');
    return;
  }
  c.upgraded = await waitFor(() => transportName(s) === 'websocket', 10000);
  if (!c.upgraded) fail(i, 'no upgrade; transport ' + transportName(s));
  c.node0 = await echo(s, i, timeout);
  if (!c.node0) fail(i, 'no ack');
}

function count(list) {
  const nodes = {};
  for (const x of list) if (x) nodes[x] = (nodes[x] || 0) + 1;
  return nodes;
}

async function connectPhase() {
  const start = Date.now();
  const running = [];
  for (let i = 0; i < n; i++) {
    running.push(runClient(i));
    if ((i + 1) % batch === 0) await sleep(every);
  }
  await Promise.all(running);
  const cs = clients;
  return {
    phase: 'connect',
    n,
    connected: cs.filter((c) => c.connected).length,
    upgraded: cs.filter((c) => c.upgraded).length,
    acked: cs.filter((c) => c.node0).length,
    nodes: count(cs.map((c) => c.node0)),
    errors: errors.splice(0),
    ms: Date.now() - start,
  };
}

// roundTrip sends one echo once the client is connected; an echo lost
// because the client disconnected meanwhile (its node died) is sent again
// after the reconnect, up to 3 times. An echo lost without a disconnect is
// not retried.
async function roundTrip(c, i) {
  for (let attempt = 0; attempt < 3; attempt++) {
    if (!(await waitFor(() => c.s.connected, timeout))) {
      fail(i, 'not connected in round');
      return null;
    }
    await waitFor(() => transportName(c.s) === 'websocket', 10000);
    const before = c.disconnects;
    const node = await echo(c.s, i, 10000);
    if (node) return node;
    if (c.disconnects === before) break;
  }
  fail(i, 'no ack in round');
  return null;
}

async function round() {
  const nodes = await Promise.all(clients.map((c, i) => roundTrip(c, i)));
  return {
    phase: 'round',
    acked: nodes.filter((x) => x).length,
    nodes: count(nodes),
    clients: clients.map((c, i) => [c.node0, nodes[i], c.disconnects, transportName(c.s) === 'websocket']),
    errors: errors.splice(0),
  };
}

function quit() {
  for (const c of clients) if (c && c.s) c.s.close();
  setTimeout(() => process.exit(0), 100);
}

(async () => {
  process.stdout.write(JSON.stringify(await connectPhase()) + '\n');
  const rl = readline.createInterface({ input: process.stdin });
  let busy = Promise.resolve();
  rl.on('line', (line) => {
    busy = busy.then(async () => {
      if (line.trim() === 'round') process.stdout.write(JSON.stringify(await round()) + '\n');
      else if (line.trim() === 'quit') quit();
    });
  });
  rl.on('close', () => { busy.then(quit); });
})();
