#!/usr/bin/env node
// close-code-client.js URL N: N WebSocket connections with Node's `ws`, for
// wsgate's close-frame tests (cmd/wsgate/e2e_close_frames_test.go). Each
// reads the backend's greeting and then stays idle. One JSON line goes to
// stdout once all N have their greeting: {"open": N}; then one per
// connection as it closes, with what ws's 'close' event says:
// {"close": i, "code": CODE, "reason": "..."}; errors as {"error": i,
// "message": "..."}. It exits when all N closed (or stdin ends).
'use strict';
const WebSocket = require('ws');

const [url, nArg] = process.argv.slice(2);
const n = Number(nArg || 1);
let greeted = 0;
let closed = 0;

function out(v) {
  process.stdout.write(JSON.stringify(v) + '\n');
}

for (let i = 0; i < n; i++) {
  const ws = new WebSocket(url);
  let hello = false;
  ws.on('message', () => {
    if (hello) return;
    hello = true;
    if (++greeted === n) out({ open: n });
  });
  ws.on('error', (e) => out({ error: i, message: String(e && e.message) }));
  ws.on('close', (code, reason) => {
    out({ close: i, code, reason: reason.toString() });
    if (++closed === n) process.exit(0);
  });
}
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
