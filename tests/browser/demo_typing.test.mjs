// The chat demo's typing indicators and "new since you were last here" divider,
// in Chromium against the real `duplex serve`: typing on one page shows on the
// other (never on the typist's own), goes away a few seconds after the last
// keystroke and at once on send or when the typist leaves, is throttled, and
// never enters the room's history; a page opened again in the same browser
// marks where the messages it has not shown begin.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, screenshot, serverUrl } from './lib.mjs';

const WAIT = 10_000;
const runId = Date.now().toString(36);
const ROOM = `typing-${runId}`;
const TYPING = '[data-testid="typing"]';

async function open(context, name, room) {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (err) => console.error(`[${name}] page error:`, err.message));
  await page.goto(`${serverUrl()}/?name=${name}&room=${room}`);
  await page.click('[data-testid="login-button"]');
  await page.waitForSelector('[data-testid="status"][data-state="connected"]');
  await page.waitForSelector(`[data-testid="room"][data-room="${room}"].active`);
  return page;
}

async function login(browser, name, room = ROOM) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  return { context, page: await open(context, name, room), name };
}

const typingText = (page) => page.textContent(TYPING);

// Empties the message box (which tells the others "stopped typing" and lets
// the next keystroke announce at once), then types `text`.
async function retype(page, text) {
  await page.fill('[data-testid="message-input"]', '');
  await page.type('[data-testid="message-input"]', text, { delay: 20 });
}

async function waitForTyping(page, text, timeout = WAIT) {
  await page.waitForFunction(([sel, t]) => document.querySelector(sel).textContent === t, [TYPING, text], { timeout })
    .catch(async (err) => { throw new Error(`typing "${text}": ${err.message}; shows "${await typingText(page)}"`); });
}

async function apiPost(path, body) {
  const response = await fetch(`${serverUrl()}${path}`, {
    method: 'POST',
    headers: { 'X-API-Key': process.env.DUPLEX_API_KEY || '' },
    body: JSON.stringify(body),
  });
  const answer = await response.text();
  assert.equal(response.status, 200, `${path}: ${answer}`);
  return JSON.parse(answer);
}

describe('demo page: typing indicators and the read-up-to divider', { timeout: 60_000 }, () => {
  let browser;
  let alice;
  let bob;
  let carol;

  before(async () => { browser = await launchChromium(); });
  after(async () => {
    if (bob) await screenshot(bob.page, 'typing-bob');
    await browser?.close();
  });

  it('typing on one page shows on the other, not on its own; it goes away after the timeout', async () => {
    alice = await login(browser, 'alice');
    bob = await login(browser, 'bob');
    await alice.page.waitForSelector('[data-testid="presence-user"][data-user="bob"]');
    assert.equal(await typingText(bob.page), '');

    await alice.page.type('[data-testid="message-input"]', 'hel', { delay: 30 });
    await waitForTyping(bob.page, 'alice is typing…');
    assert.equal(await typingText(alice.page), '', 'the typist sees its own typing');
    await screenshot(bob.page, 'typing-shown');

    // Keystrokes for 2.5 s: at most one announcement per 2 s (the first at once, one more after 2 s).
    const start = Date.now();
    while (Date.now() - start < 2500) await alice.page.type('[data-testid="message-input"]', 'l', { delay: 100 });
    const sent = await alice.page.evaluate(() => window.duplexDemo.typingPublished.map((p) => ({ ...p })));
    const typing = sent.filter((p) => p.data.typing === true);
    assert.ok(typing.length >= 1 && typing.length <= 2, `announcements in 2.6 s of typing: ${JSON.stringify(sent)}`);
    for (let i = 1; i < typing.length; i++) assert.ok(typing[i].at - typing[i - 1].at >= 2000, JSON.stringify(typing));
    assert.ok(typing.every((p) => p.channel === `typing:${ROOM}`));

    // Stopped typing, nothing sent: gone a few seconds after the last keystroke.
    const lastKey = Date.now();
    await waitForTyping(bob.page, '', 8000);
    const after = Date.now() - lastKey;
    assert.ok(after >= 1000 && after <= 7000, `indicator went away ${after} ms after the last keystroke`);
  });

  it('sending ends it at once; two and three typists are named and counted', async () => {
    await alice.page.fill('[data-testid="message-input"]', '');
    await alice.page.type('[data-testid="message-input"]', 'on its way', { delay: 20 });
    await waitForTyping(bob.page, 'alice is typing…');
    const pressed = Date.now();
    await alice.page.press('[data-testid="message-input"]', 'Enter');
    await bob.page.waitForSelector(`ol[data-room="${ROOM}"] li[data-testid="message"]:has-text("on its way")`);
    await waitForTyping(bob.page, '', 1000);
    assert.ok(Date.now() - pressed < 1500, 'the indicator outlived the message');

    carol = await login(browser, 'carol');
    await retype(alice.page, 'a');
    await retype(carol.page, 'c');
    await waitForTyping(bob.page, 'alice and carol are typing…');
    await waitForTyping(alice.page, 'carol is typing…');
    await waitForTyping(carol.page, 'alice is typing…');
    const dave = await login(browser, 'dave');
    try {
      assert.equal(await typingText(dave.page), '');
      for (const s of [alice, bob, carol]) await retype(s.page, s.name[0]);
      await waitForTyping(dave.page, '3 people are typing…');
    } finally {
      await dave.context.close();
    }
  });

  it('a typist who leaves is gone at once, not at the timeout', async () => {
    await retype(alice.page, 'a');
    await retype(carol.page, 'c');
    await waitForTyping(bob.page, 'alice and carol are typing…');
    const closed = Date.now();
    await carol.context.close();
    carol = null;
    await waitForTyping(bob.page, 'alice is typing…', 3000);
    assert.ok(Date.now() - closed < 3000, `carol's indicator outlived her by ${Date.now() - closed} ms`);
  });

  it('typing never enters the room\'s history', async () => {
    const late = await login(browser, 'erin');
    try {
      await late.page.waitForSelector(`ol[data-room="${ROOM}"] li[data-testid="message"]:has-text("on its way")`);
      const history = await late.page.evaluate((room) => window.duplexDemo.rooms.get(room).sub.history({ limit: 100 }), ROOM);
      assert.deepEqual(history.publications.map((p) => p.data.text), ['on its way'],
        `the room's history: ${JSON.stringify(history.publications)}`);
      assert.ok(history.publications.every((p) => !('typing' in p.data)));
      // The typing channel itself keeps nothing: its namespace has no history (error 108).
      const typingHistory = await late.page.evaluate((room) => window.duplexDemo.client.history(`typing:${room}`)
        .then((r) => ({ ok: r }), (e) => ({ error: e.code })), ROOM);
      assert.equal(typingHistory.error, 108, `history of typing:${ROOM}: ${JSON.stringify(typingHistory)}`);
      const texts = await late.page.$$eval(`ol[data-room="${ROOM}"] li[data-testid="message"] [data-testid="message-text"]`,
        (t) => t.map((x) => x.textContent));
      assert.deepEqual(texts, ['on its way']);
    } finally {
      await late.context.close();
    }
  });

  it('"new since you were last here": a page opened again marks the first message it has not shown', async () => {
    const room = `seen-${runId}`;
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    try {
      let page = await open(context, 'frank', room);
      for (const t of ['one', 'two']) await apiPost('/api/publish', { channel: `chat:${room}`, data: { text: t } });
      await page.waitForFunction((r) => document.querySelectorAll(`ol[data-room="${r}"] li[data-testid="message"]`).length === 2, room);
      // First visit: nothing to mark.
      assert.equal(await page.locator('[data-testid="new-divider"]').count(), 0);
      await page.close();

      for (const t of ['three', 'four']) await apiPost('/api/publish', { channel: `chat:${room}`, data: { text: t } });
      page = await open(context, 'frank', room);
      await page.waitForSelector(`ol[data-room="${room}"] [data-testid="new-divider"]`);
      const order = await page.$$eval(`ol[data-room="${room}"] li`, (items) => items
        .filter((li) => li.dataset.testid === 'message' || li.dataset.testid === 'new-divider')
        .map((li) => (li.dataset.testid === 'new-divider' ? '|new|' : li.querySelector('[data-testid="message-text"]').textContent)));
      assert.deepEqual(order, ['one', 'two', '|new|', 'three', 'four']);
      assert.match(await page.textContent('[data-testid="new-divider"]'), /new since you were last here/);
      await screenshot(page, 'new-divider');
      await page.close();

      // Everything was shown: the next visit has no divider.
      page = await open(context, 'frank', room);
      await page.waitForFunction((r) => document.querySelectorAll(`ol[data-room="${r}"] li[data-testid="message"]`).length === 4, room);
      assert.equal(await page.locator('[data-testid="new-divider"]').count(), 0);
      await page.close();
    } finally {
      await context.close();
    }
  });
});
