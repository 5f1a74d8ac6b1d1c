// Chromium behind nginx (tests/proxy/): a proxy that drops the WebSocket
// Upgrade makes web/client/duplex.js fall back to SSE, which chats with a WebSocket
// client with nothing lost; a correct WebSocket proxy keeps WebSocket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from '../interop/node_modules/ws/wrapper.mjs';
import { Duplex } from '../../web/client/duplex.js';
import { HERE, demoToken, launchChromium, screenshot, serverUrl, waitFor, websocketUrl } from './lib.mjs';

const NGINX = process.env.NGINX || '/usr/sbin/nginx';

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// nginx in the foreground with a filled-in template; returns {url, stop}.
async function startNginx(template) {
  const prefix = mkdtempSync(join(tmpdir(), 'duplex-nginx-'));
  mkdirSync(join(prefix, 'tmp'));
  mkdirSync(join(prefix, 'logs'));
  const port = await freePort();
  const upstream = new URL(serverUrl()).port;
  const conf = readFileSync(join(HERE, '..', 'proxy', template), 'utf8')
    .replaceAll('@PREFIX@', prefix).replaceAll('@LISTEN_PORT@', String(port)).replaceAll('@UPSTREAM_PORT@', upstream);
  writeFileSync(join(prefix, 'nginx.conf'), conf);
  const proc = spawn(NGINX, ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-e', join(prefix, 'error.log')], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${url}/healthz`)).ok, 10_000, `nginx on ${url}`);
  return {
    url,
    stop() {
      proc.kill('SIGTERM');
      rmSync(prefix, { recursive: true, force: true });
    },
  };
}

// The status a WebSocket handshake through the proxy gets (101 if it passes).
function upgradeStatus(url) {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/connection/websocket`, {
      headers: { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Protocol': 'duplex.v1' },
    });
    req.on('response', (res) => { res.resume(); resolve(res.statusCode); });
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve(101); });
    req.on('error', reject);
    req.end();
  });
}

// A page behind the proxy running web/client/duplex.js; messages land in window.received.
async function browserClient(browser, proxyUrl, user, channel, extra = {}) {
  const page = await browser.newPage();
  await page.goto(`${proxyUrl}/healthz`);
  const token = await demoToken(user);
  await page.evaluate(async ({ token, channel, extra }) => {
    const { Duplex } = await import('/duplex.js');
    window.received = [];
    window.client = new Duplex(`${location.origin.replace(/^http/, 'ws')}/connection/websocket`, { token, fallbackTimeout: 3000, backoffCap: 500, ...extra });
    const sub = window.client.subscribe(channel, { onMessage: (m) => window.received.push(m.data.n) });
    window.client.connect();
    await sub.ready();
    window.sub = sub;
  }, { token, channel, extra });
  return page;
}

async function nodeClient(channel) {
  const client = new Duplex(websocketUrl(), { getToken: () => demoToken('node'), WebSocket, backoffCap: 500 });
  const received = [];
  const sub = client.subscribe(channel, { onMessage: (m) => received.push(m.data.n) });
  client.connect();
  await sub.ready();
  return { client, received };
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('behind a proxy that drops the Upgrade the browser falls back to SSE and loses nothing', { timeout: 60_000 }, async (t) => {
  const nginx = await startNginx('nginx-no-upgrade.conf.in');
  t.after(() => nginx.stop());
  assert.equal(await upgradeStatus(nginx.url), 426, 'the proxy really drops the Upgrade');

  const channel = `chat:fallback-${Date.now().toString(36)}`;
  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await browserClient(browser, nginx.url, 'chromium', channel);
  const node = await nodeClient(channel);
  t.after(() => node.client.disconnect());
  try {
    assert.equal(await page.evaluate(() => window.client.transport), 'sse');
    for (const n of range(1, 30)) await node.client.publish(channel, { n });
    await page.evaluate(async (ns) => { for (const n of ns) await window.client.publish(window.sub.channel, { n }); }, range(31, 60));
    await waitFor(async () => (await page.evaluate(() => window.received.length)) >= 60, 15_000, 'the browser receives 60');
    await waitFor(() => node.received.length >= 60, 15_000, 'the node client receives 60');
    assert.deepEqual(await page.evaluate(() => window.received), range(1, 60));
    assert.deepEqual(node.received, range(1, 60));
  } catch (err) {
    await screenshot(page, 'fallback-sse');
    throw err;
  }
});

test('long-polling (forced) behind the same proxy: replies in the POST responses, pushes in the polls, nothing lost', { timeout: 60_000 }, async (t) => {
  const nginx = await startNginx('nginx-no-upgrade.conf.in');
  t.after(() => nginx.stop());
  const channel = `chat:longpoll-${Date.now().toString(36)}`;
  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await browserClient(browser, nginx.url, 'chromium', channel, { transport: 'longpoll' });
  const node = await nodeClient(channel);
  t.after(() => node.client.disconnect());
  try {
    assert.equal(await page.evaluate(() => window.client.transport), 'longpoll');
    for (const n of range(1, 20)) await node.client.publish(channel, { n });
    const offsets = await page.evaluate(async (ns) => {
      const out = [];
      for (const n of ns) out.push((await window.client.publish(window.sub.channel, { n })).offset);
      return out;
    }, range(21, 40));
    assert.deepEqual(offsets, range(21, 40), 'each publish resolved from its POST response with its offset');
    await waitFor(async () => (await page.evaluate(() => window.received.length)) >= 40, 15_000, 'the browser receives 40');
    await waitFor(() => node.received.length >= 40, 15_000, 'the node client receives 40');
    assert.deepEqual(await page.evaluate(() => window.received), range(1, 40));
    assert.deepEqual(node.received, range(1, 40));
    const presence = await page.evaluate(async () => (await window.client.presence(window.sub.channel)).clients.map((c) => c.user).sort());
    assert.deepEqual(presence, ['chromium', 'node']);
  } catch (err) {
    await screenshot(page, 'fallback-longpoll');
    throw err;
  }
});

test('behind a correct WebSocket proxy the browser uses WebSocket', { timeout: 60_000 }, async (t) => {
  const nginx = await startNginx('nginx-websocket.conf.in');
  t.after(() => nginx.stop());
  assert.equal(await upgradeStatus(nginx.url), 101);
  const channel = `chat:proxied-${Date.now().toString(36)}`;
  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await browserClient(browser, nginx.url, 'chromium', channel);
  const node = await nodeClient(channel);
  t.after(() => node.client.disconnect());
  assert.equal(await page.evaluate(() => window.client.transport), 'websocket');
  for (const n of range(1, 10)) await node.client.publish(channel, { n });
  await waitFor(async () => (await page.evaluate(() => window.received.length)) >= 10, 10_000, 'the browser receives 10');
  assert.deepEqual(await page.evaluate(() => window.received), range(1, 10));
});
