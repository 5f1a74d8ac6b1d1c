#!/usr/bin/env node
// Interop client built on Node `ws` (tests/interop/node_modules): runs a fixed
// set of checks against a WebSocket echo server.
//
// Usage: node node_client.js URL [--ca-file FILE] [--deflate] [--quick]
//            [--no-context-takeover] [--window-bits N]
//            [--server-window-bits N] [--client-window-bits N]
//
// --quick skips the 16 MiB message. The deflate options shape the
// permessage-deflate offer (they imply --deflate): --no-context-takeover offers
// server_ and client_no_context_takeover, --server-window-bits /
// --client-window-bits offer server_ / client_max_window_bits=N, --window-bits
// N sets both. (Node's zlib quietly uses a 9-bit window when asked for a raw
// deflate window of 8, so a peer must inflate such data with at least 9 bits.)
//
// Prints one line per check ("ok - ..."); on the first failure prints
// "FAIL - ..." and exits 1. Exit 0 when every check passed.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const WebSocket = require('ws');

const MAX_PAYLOAD = 64 * 1024 * 1024;
const STEP_TIMEOUT_MS = 15000;

class CheckFailed extends Error {}

let current = 'connect'; // the check in progress, for unexpected errors
function begin(name) {
  current = name;
}

function usage(msg) {
  if (msg) process.stderr.write(`node_client.js: ${msg}\n`);
  process.stderr.write('usage: node node_client.js URL [--ca-file FILE] [--deflate] [--quick]\n' +
    '         [--no-context-takeover] [--window-bits N] [--server-window-bits N] [--client-window-bits N]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const opts = {
    url: null, caFile: null, deflate: false, quick: false,
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
    if (a === '--ca-file') opts.caFile = value();
    else if (a === '--deflate') opts.deflate = true;
    else if (a === '--quick') opts.quick = true;
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
    else if (a.startsWith('-')) usage(`unknown argument ${a}`);
    else if (opts.url === null) opts.url = a;
    else usage(`unexpected argument ${a}`);
  }
  if (!opts.url) usage('missing URL');
  return opts;
}

function ok(name) {
  process.stdout.write(`ok - ${name}\n`);
}

function describe(msg) {
  const n = msg.data.length;
  const kind = msg.binary ? 'binary' : 'text';
  if (n <= 40) return `${kind} ${JSON.stringify(msg.binary ? msg.data.toString('hex') : msg.data.toString('utf8'))}`;
  return `${kind} of ${n} bytes`;
}

function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new CheckFailed(`${what}: nothing within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

// Connection wrapper with an awaitable message queue.
class Conn {
  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiters = [];
    this.closed = null; // {code, reason}
    ws.on('message', (data, isBinary) => {
      const msg = { data: Buffer.isBuffer(data) ? data : Buffer.concat(data), binary: isBinary };
      const w = this.waiters.shift();
      if (w) w.resolve(msg);
      else this.queue.push(msg);
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString('utf8') };
      for (const w of this.waiters.splice(0)) {
        w.reject(new CheckFailed(`${current}: connection closed while waiting for the echo (code ${code}, reason ${JSON.stringify(this.closed.reason)})`));
      }
    });
    ws.on('error', (err) => {
      this.lastError = err;
    });
  }

  recv(what) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.closed) {
      return Promise.reject(new CheckFailed(`${what}: connection already closed (code ${this.closed.code})`));
    }
    const p = new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
    return withTimeout(p, STEP_TIMEOUT_MS, what);
  }

  send(data, options) {
    return new Promise((resolve, reject) => {
      this.ws.send(data, options, (err) => {
        if (!err) resolve();
        else if (this.closed) reject(new CheckFailed(`${current}: connection closed while sending (code ${this.closed.code}, reason ${JSON.stringify(this.closed.reason)})`));
        else reject(new CheckFailed(`${current}: send failed: ${err.message}`));
      });
    });
  }
}

function expectEcho(name, sent, got) {
  if (sent.binary !== got.binary || !sent.data.equals(got.data)) {
    const why = sent.binary !== got.binary ? ' (wrong message type)' : '';
    throw new CheckFailed(`${name}: sent ${describe(sent)}, got ${describe(got)}${why}`);
  }
  ok(name);
}

async function roundtrip(conn, name, data, binary) {
  begin(name);
  const sent = { data: Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8'), binary };
  await conn.send(sent.data, { binary });
  expectEcho(name, sent, await conn.recv(name));
}

async function run({ url, caFile, deflate, quick, noContextTakeover, serverWindowBits, clientWindowBits }) {
  const pmd = { threshold: 0 };
  if (noContextTakeover) pmd.serverNoContextTakeover = pmd.clientNoContextTakeover = true;
  if (serverWindowBits !== undefined) pmd.serverMaxWindowBits = serverWindowBits;
  if (clientWindowBits !== undefined) pmd.clientMaxWindowBits = clientWindowBits;
  const ws = new WebSocket(url, {
    perMessageDeflate: deflate ? pmd : false,
    maxPayload: MAX_PAYLOAD,
    ca: caFile ? fs.readFileSync(caFile) : undefined,
    handshakeTimeout: STEP_TIMEOUT_MS,
  });
  const conn = new Conn(ws);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', (err) => reject(new CheckFailed(`connect to ${url}: ${err.message}`)));
    ws.once('unexpected-response', (req, res) => {
      reject(new CheckFailed(`connect to ${url}: unexpected HTTP response ${res.statusCode}`));
    });
  });
  ok(`connected to ${url}`);

  try {
    const ext = ws.extensions || '';
    if (deflate && !ext.includes('permessage-deflate')) {
      throw new CheckFailed(`permessage-deflate was offered but not negotiated (extensions: ${JSON.stringify(ext)})`);
    }
    if (!deflate && ext) {
      throw new CheckFailed(`no extension was offered but the server negotiated ${JSON.stringify(ext)}`);
    }
    ok(deflate ? 'permessage-deflate negotiated' : 'no extensions negotiated');

    await roundtrip(conn, 'text message', 'hello, wörld ✓ 🌍', false);
    await roundtrip(conn, 'binary message', Buffer.from([...Array(256).keys()]), true);
    await roundtrip(conn, 'empty text message', '', false);
    await roundtrip(conn, 'empty binary message', Buffer.alloc(0), true);
    for (const n of [125, 126, 65535, 65536]) {
      await roundtrip(conn, `binary message of ${n} bytes`, crypto.randomBytes(n), true);
    }
    if (!quick) await roundtrip(conn, 'binary message of 16 MiB', crypto.randomBytes(16 * 1024 * 1024), true);

    // Fragmented text, frames split on character boundaries.
    begin('fragmented text message');
    const parts = ['fragmented ', 'text ', 'message ', '€ ✓ 🌍'].map((s) => Buffer.from(s, 'utf8'));
    for (let i = 0; i < parts.length; i++) {
      await conn.send(parts[i], { binary: false, fin: i === parts.length - 1 });
    }
    expectEcho('fragmented text message (4 frames)', { data: Buffer.concat(parts), binary: false },
      await conn.recv('fragmented text message'));

    // Fragmented binary, one empty fragment in the middle.
    begin('fragmented binary message');
    const bparts = [crypto.randomBytes(1000), Buffer.alloc(0), crypto.randomBytes(3000)];
    for (let i = 0; i < bparts.length; i++) {
      await conn.send(bparts[i], { binary: true, fin: i === bparts.length - 1 });
    }
    expectEcho('fragmented binary message (3 frames, one empty)', { data: Buffer.concat(bparts), binary: true },
      await conn.recv('fragmented binary message'));

    // Fragmented text with multi-byte UTF-8 sequences split across frames.
    begin('fragmented text with UTF-8 split across frames');
    const text = 'split: é € 🌍 ✓ done';
    const raw = Buffer.from(text, 'utf8');
    const cuts = [
      raw.indexOf(Buffer.from('é')) + 1, // inside the 2-byte sequence
      raw.indexOf(Buffer.from('€')) + 2, // inside the 3-byte sequence
      raw.indexOf(Buffer.from('🌍')) + 1, // inside the 4-byte sequence
    ];
    const chunks = [raw.subarray(0, cuts[0]), raw.subarray(cuts[0], cuts[1]),
      raw.subarray(cuts[1], cuts[2]), raw.subarray(cuts[2])];
    for (let i = 0; i < chunks.length; i++) {
      await conn.send(chunks[i], { binary: false, fin: i === chunks.length - 1 });
    }
    expectEcho('fragmented text with UTF-8 split across frames', { data: raw, binary: false },
      await conn.recv('fragmented text with split UTF-8'));

    // Ping with a payload; wait for the pong carrying the same payload.
    begin('ping');
    const payload = Buffer.from('duplex-ping-\x00\xff', 'latin1');
    const pong = new Promise((resolve, reject) => {
      const onPong = (data) => {
        if (data.equals(payload)) {
          ws.off('pong', onPong);
          resolve();
        }
      };
      ws.on('pong', onPong);
      ws.once('close', (code) => reject(new CheckFailed(`ping: connection closed while waiting for the pong (code ${code})`)));
    });
    ws.ping(payload);
    await withTimeout(pong, STEP_TIMEOUT_MS, `ping: pong with payload ${payload.toString('hex')}`);
    ok('ping with payload answered by a matching pong');
  } catch (e) {
    ws.terminate();
    throw e;
  }

  // Client-initiated close; an echo server replies with the same code.
  begin('close');
  const closed = conn.closed
    ? Promise.resolve()
    : new Promise((resolve) => ws.once('close', () => resolve()));
  ws.close(4001, 'bye');
  await withTimeout(closed, STEP_TIMEOUT_MS, 'close: closing handshake');
  if (conn.closed.code !== 4001) {
    throw new CheckFailed(`close: sent 4001 'bye', peer answered code ${conn.closed.code} reason ${JSON.stringify(conn.closed.reason)}`);
  }
  ok(`close 4001 echoed by the server (reason ${JSON.stringify(conn.closed.reason)})`);
}

const started = Date.now();
run(parseArgs(process.argv.slice(2))).then(
  () => {
    process.stdout.write(`node_client: all checks passed in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    process.exit(0);
  },
  (err) => {
    const msg = err instanceof CheckFailed ? err.message : `${current}: unexpected ${err.stack || err}`;
    process.stdout.write(`FAIL - ${msg}\n`);
    process.exit(1);
  },
);
