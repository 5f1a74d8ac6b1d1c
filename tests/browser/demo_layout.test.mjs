// The demo page as a new user meets it, on a desktop (1280×800) and on a phone
// (390×844): the message box in view without scrolling, a header that does not
// clip, one scrolling list, no alarm before anything happened, no 404; then
// what it shows: string and backend messages, timestamps, presence while
// disconnected, "reconnect now", and a dashboard that starts from history and
// shows an outage as a gap.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, screenshot, serverUrl, waitFor } from './lib.mjs';

const WAIT = 10_000;
const VIEWPORTS = [
  { name: 'desktop', width: 1280, height: 800 },
  { name: 'phone', width: 390, height: 844 },
];
const runId = Date.now().toString(36);

async function apiPost(path, body) {
  const response = await fetch(`${serverUrl()}${path}`, {
    method: 'POST',
    headers: { 'X-API-Key': process.env.DUPLEX_API_KEY || '' },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 200, `${path}: ${await response.text()}`);
}

async function open(browser, viewport, name, room) {
  const context = await browser.newContext({ viewport: { width: viewport.width, height: viewport.height } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const failed = [];
  page.on('response', (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`); });
  page.on('pageerror', (err) => failed.push(`page error: ${err.message}`));
  await page.goto(`${serverUrl()}/?name=${name}${room ? `&room=${room}` : ''}`);
  return { context, page, failed, name };
}

async function signIn(session) {
  await session.page.click('[data-testid="login-button"]');
  await session.page.waitForSelector('[data-testid="status"][data-state="connected"]');
}

// Geometry the layout promises, read in the page.
function layout(page) {
  return page.evaluate(() => {
    const rect = (id) => {
      const r = document.querySelector(`[data-testid="${id}"]`).getBoundingClientRect();
      return { top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width, height: r.height };
    };
    const input = document.querySelector('[data-testid="message-input"]');
    const style = getComputedStyle(input);
    const ctx = document.createElement('canvas').getContext('2d');
    ctx.font = style.font;
    const me = document.querySelector('[data-testid="me"]');
    const topbar = document.querySelector('[data-testid="topbar"]');
    const scroller = document.scrollingElement;
    return {
      viewport: { width: innerWidth, height: innerHeight },
      input: rect('message-input'),
      send: rect('send'),
      me: rect('me'),
      meClipped: me.scrollWidth > me.clientWidth + 1,
      topbarOverflows: topbar.scrollWidth > topbar.clientWidth + 1,
      pageScrolls: scroller.scrollHeight > scroller.clientHeight + 1 || scroller.scrollWidth > scroller.clientWidth + 1,
      placeholderWidth: ctx.measureText(input.placeholder).width,
      placeholderRoom: input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight),
      list: { scrollHeight: document.querySelector('[data-testid="message-lists"]').scrollHeight,
              clientHeight: document.querySelector('[data-testid="message-lists"]').clientHeight },
    };
  });
}

function assertInView(box, viewport, what) {
  assert.ok(box.top >= 0 && box.left >= 0 && box.bottom <= viewport.height && box.right <= viewport.width,
    `${what} is out of view: ${JSON.stringify(box)} in ${JSON.stringify(viewport)}`);
  assert.ok(box.width > 0 && box.height > 0, `${what} has no size`);
}

describe('demo page layout and first impressions', { timeout: 90_000 }, () => {
  let browser;
  before(async () => { browser = await launchChromium(); });
  after(async () => { await browser?.close(); });

  for (const viewport of VIEWPORTS) {
    it(`${viewport.name} ${viewport.width}×${viewport.height}: login shows no alarm, then the message box is in view`, async () => {
      const name = `margaret_hamilton_${viewport.name}`;
      const s = await open(browser, viewport, name, `layout-${viewport.name}-${runId}`);
      try {
        // Nothing was tried yet: no red "disconnected" badge.
        assert.equal(await s.page.isVisible('[data-testid="status"]'), false);
        await signIn(s);
        let geometry = await layout(s.page);
        assertInView(geometry.input, geometry.viewport, 'the message box');
        assertInView(geometry.send, geometry.viewport, 'the send button');
        assertInView(geometry.me, geometry.viewport, 'the user name');
        assert.equal(geometry.meClipped, false, 'the user name is clipped');
        assert.equal(geometry.topbarOverflows, false, 'the header overflows');
        assert.equal(geometry.pageScrolls, false, 'the page itself scrolls');
        assert.ok(geometry.placeholderWidth <= geometry.placeholderRoom,
          `the placeholder is cut: ${geometry.placeholderWidth} > ${geometry.placeholderRoom}`);

        // Enough messages to overflow: the list scrolls, the page still does not.
        for (let i = 1; i <= 30; i++) {
          await s.page.fill('[data-testid="message-input"]', `line ${i} ${runId}`);
          await s.page.press('[data-testid="message-input"]', 'Enter');
        }
        await s.page.waitForFunction(() => [...document.querySelectorAll('ol:not([hidden]) li[data-testid="message"]')]
          .filter((li) => li.dataset.state === 'sent').length >= 30);
        geometry = await layout(s.page);
        assert.ok(geometry.list.scrollHeight > geometry.list.clientHeight, 'the list overflows and scrolls');
        assert.equal(geometry.pageScrolls, false, 'the page scrolls around the list');
        assertInView(geometry.input, geometry.viewport, 'the message box after 30 messages');
        // Every message has its time.
        const times = await s.page.$$eval('ol:not([hidden]) li[data-testid="message"] [data-testid="message-time"]', (t) => t.length);
        assert.ok(times >= 30, `timestamps: ${times}`);

        if (viewport.name === 'phone') {
          // Rooms and presence fold away; the button opens them over the chat.
          assert.equal(await s.page.isVisible('[data-testid="presence"]'), false);
          await s.page.click('[data-testid="toggle-sidebar"]');
          await s.page.waitForSelector(`[data-testid="presence-user"][data-user="${name}"]`);
          await s.page.click(`[data-testid="room"][data-room="lobby"] button.room`);
          assert.equal(await s.page.textContent('[data-testid="room-title"]'), '#lobby');
          assert.equal(await s.page.isVisible('[data-testid="sidebar"]'), false, 'choosing a room closes the panel');
          await s.page.click('[data-testid="toggle-dashboard"]');
          await s.page.waitForSelector('[data-testid="chart"]', { state: 'visible' });
          assertInView((await layout(s.page)).input, geometry.viewport, 'the message box with the stats open');
        }
        await screenshot(s.page, `layout-${viewport.name}`);
        assert.deepEqual(s.failed, [], 'failed requests or page errors (favicon?)');
      } finally {
        await s.context.close();
      }
    });
  }

  it('a string is shown as text, a backend message as from the server, both with a time', async () => {
    const room = `show-${runId}`;
    const s = await open(browser, VIEWPORTS[0], 'ruth', room);
    try {
      await signIn(s);
      await s.page.waitForSelector(`[data-testid="room"][data-room="${room}"]`);
      // What `duplex connect --publish` sends for a line that is not JSON.
      await s.page.evaluate((channel) => window.duplexDemo.client.publish(channel, 'plain words'), `chat:${room}`);
      await apiPost('/api/publish', { channel: `chat:${room}`, data: { text: 'hi from the backend' } });
      await s.page.waitForFunction((r) => document.querySelectorAll(`ol[data-room="${r}"] li[data-testid="message"]`).length >= 2, room);
      const shown = await s.page.$$eval(`ol[data-room="${room}"] li[data-testid="message"]`, (items) => items.map((li) => ({
        name: li.querySelector('[data-testid="message-name"]').textContent,
        text: li.querySelector('[data-testid="message-text"]').textContent,
        time: !!li.querySelector('[data-testid="message-time"]'),
      })));
      assert.deepEqual(shown, [
        { name: 'ruth', text: 'plain words', time: true },
        { name: 'server', text: 'hi from the backend', time: true },
      ]);
    } finally {
      await s.context.close();
    }
  });

  it('disconnected: presence is cleared; "reconnect now" skips a long backoff', async () => {
    const s = await open(browser, VIEWPORTS[0], 'grace');
    try {
      await signIn(s);
      await s.page.waitForSelector('[data-testid="presence-user"][data-user="grace"]');
      assert.equal(await s.page.isVisible('[data-testid="reconnect-now"]'), false);
      // A long backoff, then the server drops us with "reconnect".
      await s.page.evaluate(() => {
        const client = window.duplexDemo.client;
        Object.assign(client.options, { backoffBase: 120_000, backoffCap: 120_000 });
        client._random = () => 0.99;  // the delay is a jittered fraction of the cap: make it long for sure
      });
      await apiPost('/api/disconnect', { user: 'grace', reason: 'test', reconnect: true });
      await s.page.waitForSelector('[data-testid="status"][data-state="reconnecting"]');
      assert.equal(await s.page.$$eval('[data-testid="presence-user"]', (u) => u.length), 0, 'presence shown while disconnected');
      assert.equal(await s.page.textContent('[data-testid="presence-count"]'), '—');
      assert.ok(await s.page.isVisible('[data-testid="presence-note"]'));
      await s.page.click('[data-testid="reconnect-now"]');
      await s.page.waitForSelector('[data-testid="status"][data-state="connected"]', { timeout: 5000 });
      await s.page.waitForSelector('[data-testid="presence-user"][data-user="grace"]');
      assert.equal(await s.page.isVisible('[data-testid="reconnect-now"]'), false);
    } finally {
      await s.context.close();
    }
  });

  it('the dashboard starts from history, keeps the channel name as it is, and shows an outage as a gap', async () => {
    const s = await open(browser, VIEWPORTS[0], 'katherine');
    const pid = Number(process.env.DUPLEX_SERVER_PID);
    let frozen = false;
    try {
      // The server has been publishing since run.sh started it: let it keep a few.
      await new Promise((resolve) => setTimeout(resolve, 3000));
      await signIn(s);
      const connectedAt = Date.now();
      await s.page.waitForFunction((t) => window.duplexDemo.stats.length >= 2 && window.duplexDemo.stats[0].time < t - 2000,
        connectedAt, { timeout: 3000 });
      const heading = await s.page.innerText('[data-testid="dashboard"] h2');
      assert.ok(heading.includes('stats:node'), `heading: ${heading}`);
      assert.equal(await s.page.getAttribute('[data-testid="chart"]', 'data-segments'), '1');

      // Freeze the server for 4 s: four figures are never published.
      process.kill(pid, 'SIGSTOP');
      frozen = true;
      await new Promise((resolve) => setTimeout(resolve, 4000));
      process.kill(pid, 'SIGCONT');
      frozen = false;
      await waitFor(async () => (await s.page.getAttribute('[data-testid="chart"]', 'data-segments')) === '2', WAIT,
        'the chart to break the line at the outage');
      await screenshot(s.page, 'dashboard-gap');
    } finally {
      if (frozen) process.kill(pid, 'SIGCONT');
      await s.context.close();
    }
  });
});
