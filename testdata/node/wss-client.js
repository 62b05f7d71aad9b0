// wss-client.js URL SUITE: one wss connection with Node's TLS (TLS 1.3
// only, SUITE as the only TLS 1.3 cipher suite), certificate not verified
// (a test CA). It reads the backend's greeting, then sends binary messages
// of sizes around the WebSocket length encodings and up to 1 MiB, checks
// each echo byte for byte, closes, and prints one JSON line:
// {"suite": negotiated, "greeting": ..., "echoed": n, "errors": [...]}.
'use strict';
const WebSocket = require('ws');
const crypto = require('crypto');

const [url, suite] = process.argv.slice(2);
const sizes = [0, 1, 125, 126, 65535, 65536, 100000, 1 << 20];
const out = { suite: '', greeting: '', echoed: 0, errors: [] };
const ws = new WebSocket(url, {
  rejectUnauthorized: false,
  minVersion: 'TLSv1.3',
  maxVersion: 'TLSv1.3',
  ciphers: suite, // a TLS 1.3 suite name here limits TLS 1.3 to it
  servername: 'a.test',
});
let i = -1;
let msg = null;
function next() {
  i++;
  if (i >= sizes.length) {
    ws.close(1000);
    return;
  }
  msg = crypto.randomBytes(sizes[i]);
  ws.send(msg, { binary: true });
}
ws.on('open', () => {
  out.suite = ws._socket.getCipher().standardName || ws._socket.getCipher().name;
});
ws.on('message', (data, isBinary) => {
  if (!out.greeting) {
    out.greeting = data.toString();
    next();
    return;
  }
  if (!isBinary || !Buffer.from(data).equals(msg)) {
    out.errors.push(`message ${i} (${sizes[i]} bytes): echo differs (${data.length} bytes)`);
  } else {
    out.echoed++;
  }
  next();
});
ws.on('error', (e) => out.errors.push(String(e)));
ws.on('close', () => {
  console.log(JSON.stringify(out));
  process.exit(0);
});
setTimeout(() => { out.errors.push('timeout'); console.log(JSON.stringify(out)); process.exit(1); }, 30000).unref();
