// A fast WebSocket echo server for benchmarks/echo_throughput.py.
//
// Echoes every data message back with its opcode (text stays text, binary
// stays binary) and counts what it receives and sends. GET /stats on the same
// port answers the counters as JSON; any other plain HTTP request gets 404.
// Prints "listening <port>" on stdout once it accepts connections.
//
// Usage: node node_echo_server.js [--host 127.0.0.1] [--port 0]
// Needs the "ws" package on NODE_PATH (echo_throughput.py installs it into
// benchmarks/.node/ and sets NODE_PATH).

"use strict";

const http = require("http");
const { WebSocketServer } = require("ws");

function option(name, fallback) {
  const index = process.argv.indexOf(name);
  return index >= 0 && index + 1 < process.argv.length ? process.argv[index + 1] : fallback;
}

const host = option("--host", "127.0.0.1");
const port = Number(option("--port", "0"));

const counters = {
  connections_opened: 0,
  connections_closed: 0,
  messages_received: 0,
  bytes_received: 0,
  messages_sent: 0,
  bytes_sent: 0,
};

const server = http.createServer((request, response) => {
  if (request.method === "GET" && request.url === "/stats") {
    const body = JSON.stringify({
      ...counters,
      connections_open: counters.connections_opened - counters.connections_closed,
      // process.cpuUsage() covers every thread of the process, in microseconds.
      cpu_user_seconds: process.cpuUsage().user / 1e6,
      cpu_system_seconds: process.cpuUsage().system / 1e6,
    });
    response.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) });
    response.end(body);
    return;
  }
  response.writeHead(404, { "Content-Type": "text/plain" });
  response.end("not found\n");
});

// No compression: the benchmark measures framing, not zlib.
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 1 << 20 });

wss.on("connection", (socket) => {
  counters.connections_opened += 1;
  socket.on("message", (data, isBinary) => {
    counters.messages_received += 1;
    counters.bytes_received += data.length;
    socket.send(data, { binary: isBinary });
    counters.messages_sent += 1;
    counters.bytes_sent += data.length;
  });
  socket.on("close", () => {
    counters.connections_closed += 1;
  });
  socket.on("error", () => {
    // A client killed mid-frame resets the socket; "close" still follows.
  });
});

server.listen(port, host, () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

function shutdown() {
  for (const client of wss.clients) {
    client.terminate();
  }
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}

process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
