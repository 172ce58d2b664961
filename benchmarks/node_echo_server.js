// A fast WebSocket echo server for the benchmarks (python -m benchmarks).
//
// Echoes every data message back with its opcode (text stays text, binary
// stays binary) and counts what it receives and sends. On the same port:
//
//   GET /stats           the counters as JSON
//   GET /latency         with --record-latency: percentiles (ms) of the time from
//                        receiving each message to sending its echo ("echo"), and
//                        from accepting each TCP connection to writing its 101
//                        ("handshake"): the server-side truth the clients' figures
//                        are compared with
//   GET /latency/messages with --record-messages: every echoed message as
//                        [client port, its number on that connection (1, 2, ...),
//                        received at (ms on the server's monotonic clock), held (ms)],
//                        for joining the client's and the server's times per message
//   POST /latency/reset  forget the recorded times (and messages)
//
// Any other plain HTTP request gets 404. Prints "listening <port>" on stdout
// once it accepts connections.
//
// Usage: node node_echo_server.js [--host 127.0.0.1] [--port 0] [--hold-ms 0]
//                                 [--record-latency] [--record-messages] [--deflate]
//   --hold-ms N        hold each echo N ms (setTimeout) before sending it
//   --record-latency   record the times above (off by default: at 100,000
//                      messages/s the recording itself costs the server CPU)
//   --record-messages  also keep each message's record (implies --record-latency)
//   --deflate          accept permessage-deflate (RFC 7692) from clients that offer it
// Needs the "ws" package on NODE_PATH (benchmarks/servers.py installs it into
// benchmarks/.node/ and sets NODE_PATH).

"use strict";

const http = require("http");
const { WebSocketServer } = require("ws");

function option(name, fallback) {
  const index = process.argv.indexOf(name);
  return index >= 0 && index + 1 < process.argv.length ? process.argv[index + 1] : fallback;
}

function number(name, fallback, minimum) {
  const text = option(name, String(fallback));
  const value = Number(text);
  if (!Number.isFinite(value) || value < minimum) {
    process.stderr.write(`node_echo_server: ${name}: ${JSON.stringify(text)} is not a number >= ${minimum}\n`);
    process.exit(2);
  }
  return value;
}

const host = option("--host", "127.0.0.1");
const port = number("--port", 0, 0);
const holdMs = number("--hold-ms", 0, 0);
const recordMessages = process.argv.includes("--record-messages");
const recordLatency = recordMessages || process.argv.includes("--record-latency");
const deflate = process.argv.includes("--deflate");

const counters = {
  connections_opened: 0,
  connections_closed: 0,
  messages_received: 0,
  bytes_received: 0,
  messages_sent: 0,
  bytes_sent: 0,
};

// Recorded times in milliseconds. Capped so that a long run cannot exhaust
// memory; samples past the cap are counted as dropped, and the report says so.
const MAX_SAMPLES = 2_000_000;

class Samples {
  constructor() {
    this.values = new Float64Array(1024);
    this.count = 0;
    this.dropped = 0;
  }

  add(value) {
    if (this.count === this.values.length) {
      if (this.count >= MAX_SAMPLES) {
        this.dropped += 1;
        return;
      }
      const grown = new Float64Array(Math.min(MAX_SAMPLES, this.values.length * 2));
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.count] = value;
    this.count += 1;
  }

  reset() {
    this.count = 0;
    this.dropped = 0;
  }

  // The same rank as Locust's percentiles and the benchmark's: sorted[floor(n * p)].
  summary() {
    const n = this.count;
    if (n === 0) {
      return { count: 0, dropped: this.dropped, p50: null, p95: null, p99: null, min: null, max: null, mean: null };
    }
    const sorted = this.values.slice(0, n).sort();
    const at = (p) => sorted[Math.min(n - 1, Math.floor(n * p))];
    let total = 0;
    for (let i = 0; i < n; i += 1) {
      total += sorted[i];
    }
    return {
      count: n,
      dropped: this.dropped,
      p50: at(0.5),
      p95: at(0.95),
      p99: at(0.99),
      min: sorted[0],
      max: sorted[n - 1],
      mean: total / n,
    };
  }
}

const echoTimes = new Samples();
// One flat array of 4 numbers per message (see GET /latency/messages), capped like the samples.
let messageRecords = [];
let messagesDropped = 0;
const CLIENT_PORT = Symbol("clientPort");
const MESSAGE_NUMBER = Symbol("messageNumber");
const handshakeTimes = new Samples();
const ACCEPTED_AT = Symbol("acceptedAt");
const STARTED = process.hrtime.bigint();

function elapsedMs(since) {
  return Number(process.hrtime.bigint() - since) / 1e6;
}

function sendJson(response, status, body) {
  const text = JSON.stringify(body);
  response.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  response.end(text);
}

const server = http.createServer((request, response) => {
  if (request.method === "GET" && request.url === "/stats") {
    // process.cpuUsage() covers every thread of the process, in microseconds.
    const cpu = process.cpuUsage();
    sendJson(response, 200, {
      ...counters,
      connections_open: counters.connections_opened - counters.connections_closed,
      cpu_user_seconds: cpu.user / 1e6,
      cpu_system_seconds: cpu.system / 1e6,
      hold_ms: holdMs,
      pid: process.pid,
    });
    return;
  }
  if (request.method === "GET" && request.url === "/latency") {
    sendJson(response, 200, {
      recording: recordLatency,
      hold_ms: holdMs,
      echo: echoTimes.summary(),
      handshake: handshakeTimes.summary(),
    });
    return;
  }
  if (request.method === "GET" && request.url === "/latency/messages") {
    const messages = [];
    for (let i = 0; i < messageRecords.length; i += 4) {
      messages.push(messageRecords.slice(i, i + 4));
    }
    sendJson(response, 200, { recording: recordMessages, dropped: messagesDropped, messages });
    return;
  }
  if (request.method === "POST" && request.url === "/latency/reset") {
    messageRecords = [];
    messagesDropped = 0;
    echoTimes.reset();
    handshakeTimes.reset();
    sendJson(response, 200, { reset: true });
    return;
  }
  response.writeHead(404, { "Content-Type": "text/plain" });
  response.end("not found\n");
});

if (recordLatency) {
  // The TCP connection as accepted from the kernel, before any byte of the upgrade is read.
  server.on("connection", (socket) => {
    socket[ACCEPTED_AT] = process.hrtime.bigint();
  });
}

// No compression: the benchmark measures framing, not zlib.
// --deflate: accept permessage-deflate when a client offers it (ws's defaults: context takeover,
// 15-bit windows, messages of 1 KiB and more compressed; threshold 0 here: every message).
const wss = new WebSocketServer({
  server,
  perMessageDeflate: deflate ? { threshold: 0 } : false,
  maxPayload: 1 << 20,
});

function echo(socket, data, isBinary, receivedAt, number) {
  if (socket.readyState !== socket.OPEN) {
    return;
  }
  socket.send(data, { binary: isBinary });
  counters.messages_sent += 1;
  counters.bytes_sent += data.length;
  if (receivedAt !== undefined) {
    // ws writes small frames to the socket synchronously: this is when the echo left.
    const held = elapsedMs(receivedAt);
    echoTimes.add(held);
    if (recordMessages) {
      if (messageRecords.length >= 4 * MAX_SAMPLES) {
        messagesDropped += 1;
      } else {
        messageRecords.push(socket[CLIENT_PORT], number, Number(receivedAt - STARTED) / 1e6, held);
      }
    }
  }
}

wss.on("connection", (socket, request) => {
  counters.connections_opened += 1;
  // ws emits "connection" right after writing the 101 response.
  if (recordLatency && request.socket[ACCEPTED_AT] !== undefined) {
    handshakeTimes.add(elapsedMs(request.socket[ACCEPTED_AT]));
  }
  socket[CLIENT_PORT] = request.socket.remotePort;
  socket[MESSAGE_NUMBER] = 0;
  socket.on("message", (data, isBinary) => {
    const receivedAt = recordLatency ? process.hrtime.bigint() : undefined;
    counters.messages_received += 1;
    counters.bytes_received += data.length;
    // Numbered on arrival: the echoes leave in the same order (equal holds, FIFO timers).
    socket[MESSAGE_NUMBER] += 1;
    if (holdMs > 0) {
      setTimeout(echo, holdMs, socket, data, isBinary, receivedAt, socket[MESSAGE_NUMBER]);
    } else {
      echo(socket, data, isBinary, receivedAt, socket[MESSAGE_NUMBER]);
    }
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
