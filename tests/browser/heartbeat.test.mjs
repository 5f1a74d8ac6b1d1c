// web/client/duplex.js in Chromium when the network dies without a close: the
// heartbeat must notice (a browser sees no TCP keepalives or WebSocket pings).
// A frozen server (SIGSTOP) is a dead network as far as the page can tell.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { demoToken, launchChromium, serverUrl, websocketUrl } from './lib.mjs';

test('heartbeat timeout: a silent connection is closed and the client reconnects and recovers', { timeout: 40_000 }, async (t) => {
  const pid = Number(process.env.DUPLEX_SERVER_PID);
  assert.ok(pid > 0, 'DUPLEX_SERVER_PID is set by run.sh');
  const browser = await launchChromium();
  let frozen = false;
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(10_000);
    await page.goto(`${serverUrl()}/`);
    const token = await demoToken('heartbeat');
    await page.evaluate(async ({ url, token: tok }) => {
      const { Duplex } = await import('/duplex.js');
      const log = [];
      // Browser online/offline events off: only the heartbeat can find out.
      const client = new Duplex(url, {
        token: tok, network: null, pingInterval: 500, pingTimeout: 1000,
        backoffBase: 200, backoffCap: 1000, connectTimeout: 1500,
      });
      client.on('disconnected', (e) => log.push(['disconnected', e.reason]));
      client.on('connected', () => log.push(['connected']));
      const sub = client.subscribe('chat:heartbeat', {
        onSubscribed: (ctx) => log.push(['subscribed', ctx.resubscribed, ctx.recovered]),
      });
      window.hb = { client, log, sub };
      client.connect();
      await sub.ready();
    }, { url: websocketUrl(), token });

    process.kill(pid, 'SIGSTOP');
    frozen = true;
    await page.waitForFunction(() => window.hb.log.some((e) => e[0] === 'disconnected'), null, { timeout: 5000 });
    const reason = await page.evaluate(() => window.hb.log.find((e) => e[0] === 'disconnected')[1]);
    assert.equal(reason, 'heartbeat timeout');
    process.kill(pid, 'SIGCONT');
    frozen = false;

    await page.waitForFunction(() => window.hb.log.filter((e) => e[0] === 'subscribed').length >= 2, null, { timeout: 10_000 });
    const log = await page.evaluate(() => window.hb.log);
    t.diagnostic(JSON.stringify(log));
    const resubscribed = log.filter((e) => e[0] === 'subscribed')[1];
    assert.deepEqual(resubscribed, ['subscribed', true, true], 'resubscribed with recovery, nothing lost');
    assert.equal(await page.evaluate(() => window.hb.client.state), 'connected');
    await page.evaluate(() => window.hb.client.disconnect());
  } finally {
    if (frozen) process.kill(pid, 'SIGCONT');
    await browser.close();
  }
});

// What Chromium does to an open WebSocket under context.setOffline(true): the
// demo test relies on the client's 'offline' listener either way; this records it.
test('Chromium and setOffline: observed behaviour of an open WebSocket', { timeout: 30_000 }, async (t) => {
  const browser = await launchChromium();
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${serverUrl()}/`);
    const token = await demoToken('rawsocket');
    await page.evaluate(async ({ url, token: tok }) => {
      const ws = new WebSocket(url, 'duplex.v1');
      window.raw = { closed: null, replies: 0 };
      ws.onmessage = () => { window.raw.replies++; };
      ws.onclose = (e) => { window.raw.closed = e.code; };
      await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
      ws.send(JSON.stringify({ type: 'authenticate', id: 1, token: tok }));
      window.raw.ws = ws;
    }, { url: websocketUrl(), token });
    await page.waitForFunction(() => window.raw.replies === 1);
    await context.setOffline(true);
    const online = await page.evaluate(() => navigator.onLine);
    await page.evaluate(() => window.raw.ws.send(JSON.stringify({ type: 'ping', id: 2 })));
    await page.waitForTimeout(1000);
    const raw = await page.evaluate(() => ({ closed: window.raw.closed, replies: window.raw.replies }));
    t.diagnostic(`navigator.onLine=${online}; socket closed=${raw.closed}; ping answered while offline=${raw.replies === 2}`);
    assert.equal(online, false, 'setOffline makes navigator.onLine false (the client\'s offline listener relies on it)');
  } finally {
    await browser.close();
  }
});
