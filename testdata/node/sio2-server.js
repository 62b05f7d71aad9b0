// A Socket.IO 2 (Engine.IO 3) test server: the same contract as
// sio-server.js, for clients that speak EIO=3.
//
//   node sio2-server.js PORT NODE_NAME [HOST]
"use strict";
const http = require("http");
const socketio = require("socket.io-v2");

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

const io = socketio(httpServer, { handlePreflightRequest: false });
io.engine.on("initial_headers", (headers) => { headers["X-Node"] = name; });
io.engine.on("headers", (headers) => { headers["X-Node"] = name; });

io.on("connection", (socket) => {
  socket.on("echo", (data, ack) => {
    if (typeof ack === "function") ack({ node: name, data });
  });
});

httpServer.listen(port, host, () => {
  console.log(`listening ${httpServer.address().port}`);
});

const stop = () => { io.close(); httpServer.close(); process.exit(0); };
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.resume();
