#!/usr/bin/env node
// Echo server built on Node `ws` (tests/interop/node_modules), used as a peer
// for duplex client interop tests.
//
// Usage: node node_server.js [--host 127.0.0.1] [--port 0]
//                            [--tls-cert F --tls-key F] [--deflate]
//                            [--no-context-takeover] [--window-bits N]
//                            [--server-window-bits N] [--client-window-bits N]
//
// The deflate options shape how permessage-deflate is accepted (they imply
// --deflate): --no-context-takeover answers server_ and client_no_context_takeover,
// --server-window-bits / --client-window-bits answer server_ /
// client_max_window_bits=N (ws declines an offer that did not advertise
// client_max_window_bits when a client bound is configured), --window-bits N
// sets both. (Node's zlib quietly uses a 9-bit window when asked for a raw
// deflate window of 8, so a peer must inflate such data with at least 9 bits.)
//
// Prints exactly one line, "listening on ws://HOST:PORT" (or wss://), once
// ready. Echoes text as text and binary as binary. The text message
// "close-me 4002" makes it close with code 4002 and reason "server bye".
// If the client offers subprotocols, ws selects the first one offered.
// Stops on SIGTERM/SIGINT.
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const { WebSocketServer } = require('ws');

const MAX_PAYLOAD = 64 * 1024 * 1024; // comfortably above the 16 MiB test messages

function usage(msg) {
  if (msg) process.stderr.write(`node_server.js: ${msg}\n`);
  process.stderr.write(
    'usage: node node_server.js [--host H] [--port P] [--tls-cert F --tls-key F] [--deflate]\n' +
    '         [--no-context-takeover] [--window-bits N] [--server-window-bits N] [--client-window-bits N]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const opts = {
    host: '127.0.0.1', port: 0, tlsCert: null, tlsKey: null, deflate: false,
    noContextTakeover: false, serverWindowBits: undefined, clientWindowBits: undefined,
  };
  const bits = (a, v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 8 || n > 15) usage(`${a} needs a value 8..15`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--host') opts.host = value();
    else if (a === '--port') opts.port = Number(value());
    else if (a === '--tls-cert') opts.tlsCert = value();
    else if (a === '--tls-key') opts.tlsKey = value();
    else if (a === '--deflate') opts.deflate = true;
    else if (a === '--no-context-takeover') opts.noContextTakeover = opts.deflate = true;
    else if (a === '--window-bits') {
      opts.serverWindowBits = opts.clientWindowBits = bits(a, value());
      opts.deflate = true;
    } else if (a === '--server-window-bits') {
      opts.serverWindowBits = bits(a, value());
      opts.deflate = true;
    } else if (a === '--client-window-bits') {
      opts.clientWindowBits = bits(a, value());
      opts.deflate = true;
    }
    else if (a === '-h' || a === '--help') usage();
    else usage(`unknown argument ${a}`);
  }
  if (!!opts.tlsCert !== !!opts.tlsKey) usage('--tls-cert and --tls-key go together');
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) usage('bad --port');
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
// threshold 0: compress every message, so the peer's inflater sees them all
const pmd = { threshold: 0 };
if (opts.noContextTakeover) pmd.serverNoContextTakeover = pmd.clientNoContextTakeover = true;
if (opts.serverWindowBits !== undefined) pmd.serverMaxWindowBits = opts.serverWindowBits;
if (opts.clientWindowBits !== undefined) pmd.clientMaxWindowBits = opts.clientWindowBits;
const tls = !!opts.tlsCert;

function plainHttp(req, res) {
  res.writeHead(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket' });
  res.end('WebSocket echo server: upgrade required\n');
}

const server = tls
  ? https.createServer({ cert: fs.readFileSync(opts.tlsCert), key: fs.readFileSync(opts.tlsKey) }, plainHttp)
  : http.createServer(plainHttp);

const wss = new WebSocketServer({
  server,
  maxPayload: MAX_PAYLOAD,
  perMessageDeflate: opts.deflate ? pmd : false,
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.toString('utf8') === 'close-me 4002') {
      ws.close(4002, 'server bye');
      return;
    }
    ws.send(data, { binary: isBinary });
  });
  ws.on('error', (err) => process.stderr.write(`node_server.js: connection error: ${err.message}\n`));
});

server.listen(opts.port, opts.host, () => {
  const { port } = server.address();
  process.stdout.write(`listening on ${tls ? 'wss' : 'ws'}://${opts.host}:${port}\n`);
});

function stop() {
  for (const client of wss.clients) client.terminate();
  wss.close();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
