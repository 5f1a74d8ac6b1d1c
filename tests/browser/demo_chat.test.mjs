// The demo page in Chromium against the real `duplex serve`: two people chat,
// one goes offline, misses messages and types while offline, comes back and
// sees everything exactly once, in order; the dashboard plots live stats.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, screenshot, serverUrl } from './lib.mjs';

const WAIT = 10_000;
const ROOM = 'lobby';
const messagesOf = (room) => `ol[data-room="${room}"] li[data-testid="message"]`;

async function login(browser, name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (err) => console.error(`[${name}] page error:`, err.message));
  await page.goto(`${serverUrl()}/?name=${name}`);
  await page.click('[data-testid="login-button"]');
  await page.waitForSelector('[data-testid="status"][data-state="connected"]');
  return { context, page, name };
}

async function say(page, text) {
  await page.fill('[data-testid="message-input"]', text);
  await page.press('[data-testid="message-input"]', 'Enter');
}

// [{text, state}] of the room's messages, in page order.
function readMessages(page, room = ROOM) {
  return page.$$eval(messagesOf(room), (items) => items.map((li) => ({
    text: li.querySelector('[data-testid="message-text"]').textContent,
    name: li.querySelector('[data-testid="message-name"]').textContent,
    state: li.dataset.state,
    offset: li.dataset.offset ? Number(li.dataset.offset) : null,
  })));
}

async function waitForTexts(page, texts, what) {
  try {
    await page.waitForFunction(([selector, expected]) => {
      const seen = [...document.querySelectorAll(selector)]
        .filter((li) => li.dataset.state === 'sent')
        .map((li) => li.querySelector('[data-testid="message-text"]').textContent);
      return expected.every((t) => seen.includes(t));
    }, [messagesOf(ROOM), texts], { timeout: WAIT });
  } catch (err) {
    throw new Error(`${what}: ${err.message}\nseen: ${JSON.stringify(await readMessages(page))}`);
  }
}

function presenceUsers(page) {
  return page.$$eval('[data-testid="presence-user"]', (items) => items.map((li) => li.dataset.user));
}

describe('demo page: chat, offline queue, recovery, dashboard', { timeout: 90_000 }, () => {
  let browser;
  let alice;
  let bob;
  const runId = Date.now().toString(36);
  const text = (label) => `${label} ${runId}`;

  before(async () => {
    browser = await launchChromium();
  });

  after(async () => {
    if (alice) await screenshot(alice.page, 'final-alice');
    if (bob) await screenshot(bob.page, 'final-bob');
    await browser?.close();
  });

  it('two people join the lobby and see each other present', async () => {
    alice = await login(browser, 'alice');
    bob = await login(browser, 'bob');
    await alice.page.waitForSelector('[data-testid="presence-user"][data-user="bob"]');
    await bob.page.waitForSelector('[data-testid="presence-user"][data-user="alice"]');
    assert.equal(await alice.page.textContent('[data-testid="transport"]'), 'websocket');
    assert.equal(await alice.page.textContent('[data-testid="room-title"]'), '#lobby');
    // bob joined after alice: alice got a live join push.
    await alice.page.waitForSelector('li[data-testid="notice"]:has-text("bob joined")');
  });

  it('each sees the other\'s messages, in the same order', async () => {
    await say(alice.page, text('hello from alice'));
    await waitForTexts(bob.page, [text('hello from alice')], 'bob sees alice');
    await say(bob.page, text('hi alice'));
    await waitForTexts(alice.page, [text('hi alice')], 'alice sees bob');
    await waitForTexts(bob.page, [text('hi alice')], 'bob sees his own message');
    const a = (await readMessages(alice.page)).map((m) => m.text);
    const b = (await readMessages(bob.page)).map((m) => m.text);
    assert.deepEqual(a, b);
    assert.deepEqual(a.slice(-2), [text('hello from alice'), text('hi alice')]);
    await screenshot(alice.page, '1-chatting');
  });

  it('offline: the page shows it, bob sends 10, alice types 2 that stay pending', async () => {
    const before = await readMessages(alice.page);
    await alice.context.setOffline(true);
    await alice.page.waitForSelector('[data-testid="status"][data-state="offline"]');
    const aliceState = await alice.page.evaluate(() => window.duplexDemo.client.state);
    assert.equal(aliceState, 'connecting', 'the client dropped its socket on the offline event');

    for (let i = 1; i <= 10; i++) await say(bob.page, text(`missed ${i}`));
    await waitForTexts(bob.page, Array.from({ length: 10 }, (_, i) => text(`missed ${i + 1}`)), 'bob\'s 10 acknowledged');

    await say(alice.page, text('offline 1'));
    await say(alice.page, text('offline 2'));
    const pending = (await readMessages(alice.page)).filter((m) => m.state === 'pending');
    assert.deepEqual(pending.map((m) => m.text), [text('offline 1'), text('offline 2')]);
    assert.equal(await alice.page.textContent('[data-testid="queued"]'), '2 messages waiting for the connection');
    // Nothing of bob's reached alice while offline.
    const during = await readMessages(alice.page);
    assert.deepEqual(during.filter((m) => m.state === 'sent'), before);
    await screenshot(alice.page, '2-alice-offline');
  });

  it('back online: every missed message exactly once, in order, and the pending ones sent once', async () => {
    await alice.context.setOffline(false);
    await alice.page.waitForSelector('[data-testid="status"][data-state="connected"]');
    const expected = [
      text('hello from alice'), text('hi alice'),
      ...Array.from({ length: 10 }, (_, i) => text(`missed ${i + 1}`)),
      text('offline 1'), text('offline 2'),
    ];
    await waitForTexts(alice.page, expected, 'alice recovers and sends');
    await waitForTexts(bob.page, [text('offline 1'), text('offline 2')], 'bob receives alice\'s queued messages');

    const a = await readMessages(alice.page);
    const b = await readMessages(bob.page);
    assert.deepEqual(a.map((m) => m.text), expected, 'alice: each message once, in order');
    assert.deepEqual(b.map((m) => m.text), expected, 'bob: each message once, in order');
    assert.ok(a.every((m) => m.state === 'sent'), 'no message left pending');
    const offsets = a.map((m) => m.offset);
    assert.deepEqual(offsets, [...offsets].sort((x, y) => x - y));
    assert.equal(new Set(offsets).size, offsets.length);
    assert.deepEqual(b.map((m) => m.offset), offsets, 'both pages agree on the offsets');
    assert.equal(await alice.page.textContent('[data-testid="queued"]'), '');
    // Recovered by the resubscribe itself, not by the page reloading history after a gap.
    assert.equal(await alice.page.locator('li[data-testid="notice"]', { hasText: 'could not be recovered' }).count(), 0);
    await screenshot(alice.page, '3-alice-back');
    await screenshot(bob.page, '3-bob');
  });

  it('rooms: joining another room keeps the lobby and separates messages', async () => {
    await alice.page.fill('[data-testid="room-input"]', `side-${runId}`);
    await alice.page.click('[data-testid="room-join"]');
    await alice.page.waitForSelector(`[data-testid="room"][data-room="side-${runId}"]`);
    assert.equal(await alice.page.textContent('[data-testid="room-title"]'), `#side-${runId}`);
    await say(alice.page, text('side note'));
    await alice.page.waitForSelector(`ol[data-room="side-${runId}"] li[data-testid="message"][data-state="sent"]`);
    const lobby = (await readMessages(bob.page)).map((m) => m.text);
    assert.ok(!lobby.includes(text('side note')));
    await alice.page.click(`[data-testid="room"][data-room="${ROOM}"] button.room`);
    assert.equal(await alice.page.textContent('[data-testid="room-title"]'), '#lobby');
  });

  it('the dashboard plots live figures from stats:node', async () => {
    await bob.page.waitForFunction(() => Number(document.querySelector('[data-testid="chart"]').dataset.points) >= 2,
      null, { timeout: WAIT });
    // alice and bob are both connected: a figure taken since then says so.
    await bob.page.waitForFunction(() => Number(document.querySelector('[data-testid="stat-connections"]').textContent) >= 2,
      null, { timeout: 5000 });
    // The canvas has something drawn on it.
    const inked = await bob.page.evaluate(() => {
      const c = document.querySelector('[data-testid="chart"]');
      const pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) n++;
      return n;
    });
    assert.ok(inked > 500, `chart pixels drawn: ${inked}`);
    await screenshot(bob.page, '4-dashboard');
  });

  it('leaving: bob sees alice leave', async () => {
    assert.ok((await presenceUsers(bob.page)).includes('alice'));
    await alice.context.close();
    alice = null;
    await bob.page.waitForFunction(() => !document.querySelector('[data-testid="presence-user"][data-user="alice"]'),
      null, { timeout: WAIT });
    await bob.page.waitForSelector('li[data-testid="notice"]:has-text("alice left")');
  });

  it('user data is shown as text, never as markup', async () => {
    const evil = `<img src=x onerror="window.__pwned=1"><b>${runId}</b>`;
    await say(bob.page, evil);
    await waitForTexts(bob.page, [evil], 'markup shown literally');
    assert.equal(await bob.page.evaluate(() => window.__pwned), undefined);
    assert.equal(await bob.page.$$eval('ol[data-room] img', (imgs) => imgs.length), 0);
  });
});
