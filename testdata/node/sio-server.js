// A Socket.IO 4 (Engine.IO 4) test server for wsgate and wsbench tests.
//
//   node sio-server.js PORT NODE_NAME [HOST]
//
// Answers the "echo" event with an ack naming itself: ack({node, data}).
// Every Engine.IO handshake response carries "X-Node: NODE_NAME".
// Prints "listening PORT" on stdout once ready; exits on SIGTERM/SIGINT or
// when stdin closes (so a test that dies does not leave it behind).
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 3000);
const name = process.argv[3] || `node-${port}`;
const host = process.argv[4] || "127.0.0.1";

const httpServer = http.createServer((req, res) => {
  if (req.url === "/health") {
    res.writeHead(200, { "Content-Type": "text/plain", "X-Node": name });
    res.end("ok\n");
    return;
  }
  res.writeHead(404, { "X-Node": name });
  res.end("not found\n");
});

const io = new Server(httpServer, { cors: { origin: "*" } });
io.engine.on("initial_headers", (headers) => { headers["X-Node"] = name; });
io.engine.on("headers", (headers) => { headers["X-Node"] = name; });

io.on("connection", (socket) => {
  socket.on("echo", (data, ack) => {
    if (typeof ack === "function") ack({ node: name, data });
  });
  socket.on("whoami", (ack) => { if (typeof ack === "function") ack(name); });
});

httpServer.listen(port, host, () => {
  console.log(`listening ${httpServer.address().port}`);
});

const stop = () => { io.close(); httpServer.close(); process.exit(0); };
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.resume();
