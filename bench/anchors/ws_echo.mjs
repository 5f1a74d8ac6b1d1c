#!/usr/bin/env node
// An anchor for scripts/bench-compare: the Node `ws` library's echo server,
// as its README writes one. Text comes back as text, binary as binary;
// permessage-deflate off; no pings.
//
//   node bench/anchors/ws_echo.mjs [--port P] [--host H]   (port 0 picks a free one)
//
// Prints "listening on ws://HOST:PORT". `ws` is resolved from
// tests/interop/node_modules (npm ci there installs it).
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../tests/interop/package.json', import.meta.url));
const { WebSocketServer } = require('ws');

let port = 0;
let host = '127.0.0.1';
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--port' && i + 1 < args.length) port = Number(args[++i]);
  else if (args[i] === '--host' && i + 1 < args.length) host = args[++i];
  else {
    console.error('usage: ws_echo.mjs [--port P] [--host H]');
    process.exit(2);
  }
}
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error('ws_echo.mjs: bad port');
  process.exit(2);
}

const wss = new WebSocketServer({ host, port, perMessageDeflate: false, maxPayload: 100 * 1024 * 1024 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => ws.terminate());
});
wss.on('listening', () => {
  console.log(`listening on ws://${host}:${wss.address().port}`);
});
wss.on('error', (err) => {
  console.error(`ws_echo.mjs: ${err.message}`);
  process.exit(1);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
