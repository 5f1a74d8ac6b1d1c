// The whiteboard page (web/demo/whiteboard.html) in Chromium against the real
// `duplex serve`: strokes drawn on one page appear on the others with the same
// points (the board model window.__board builds, and the canvas pixels), at
// most ~30 publishes a second however fast the mouse moves; cursors follow
// and vanish when their page closes; a page opened late (while a stroke is
// being drawn, with more history than one read returns) replays the board
// exactly; "clear board" clears every page; mouse and touch; the layout at
// 390×844 and 1280×800, and a resize that keeps every stroke.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, screenshot, serverUrl, waitFor } from './lib.mjs';

const WAIT = 10_000;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const runId = Date.now().toString(36);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function open(browser, name, boardName, viewport = DESKTOP, contextOptions = {}) {
  const context = await browser.newContext({ viewport, ...contextOptions });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const failed = [];
  page.on('response', (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`); });
  page.on('pageerror', (err) => failed.push(`page error: ${err.message}`));
  await page.goto(`${serverUrl()}/whiteboard.html?name=${name}&board=${boardName}`);
  return { context, page, failed, name };
}

async function signIn(s) {
  await s.page.click('[data-testid="login-button"]');
  await s.page.waitForSelector('[data-testid="status"][data-state="connected"]');
  await s.page.waitForSelector('[data-testid="board-app"][data-ready="true"]');
}

async function join(browser, name, boardName, viewport, contextOptions) {
  const s = await open(browser, name, boardName, viewport, contextOptions);
  await signIn(s);
  return s;
}

const strokes = (s) => s.page.evaluate(() => window.__board.strokes());

// A wavy line across the board, in board fractions.
function wave(n, y0, amplitude = 0.05, x0 = 0.1, x1 = 0.9) {
  return Array.from({ length: n }, (_, i) => {
    const t = i / (n - 1);
    return [x0 + (x1 - x0) * t, y0 + amplitude * Math.sin(t * 6 * Math.PI)];
  });
}

async function boardBox(page) {
  return page.locator('[data-testid="board"]').boundingBox();
}

// Mouse moves every `stepMs`, as a hand would (not all at once).
async function drawMouse(page, points, stepMs = 6) {
  const box = await boardBox(page);
  const at = ([x, y]) => [box.x + x * box.width, box.y + y * box.height];
  await page.mouse.move(...at(points[0]));
  await page.mouse.down();
  for (const p of points.slice(1)) {
    await page.mouse.move(...at(p));
    if (stepMs) await sleep(stepMs);
  }
  await page.mouse.up();
}

// Every own stroke back from the hub, nothing left to send.
async function settled(s) {
  await s.page.waitForFunction(() => window.__board.sending() === 0 && window.__board.local().length === 0
    && window.__board.strokes().every((x) => x.ended));
}

async function converged(pages, what, count) {
  let models = [];
  await waitFor(async () => {
    models = await Promise.all(pages.map(strokes));
    const json = models.map((m) => JSON.stringify(m));
    return json.every((j) => j === json[0]) && (count == null || models[0].length === count);
  }, WAIT, `${what} (${JSON.stringify(models.map((m) => m.map((x) => `${x.id}:${x.points.length}`)))})`);
  return models[0];
}

async function apiPublish(channel, data) {
  const response = await fetch(`${serverUrl()}/api/publish`, {
    method: 'POST',
    headers: { 'X-API-Key': process.env.DUPLEX_API_KEY || '' },
    body: JSON.stringify({ channel, data }),
  });
  assert.equal(response.status, 200, await response.text());
}

// Publishes per any one-second window, and the smallest gap between two.
function rateOf(published, from) {
  const times = published.filter(([t]) => t >= from).map(([t]) => t);
  let most = 0;
  for (let i = 0; i < times.length; i++) {
    let j = i;
    while (j < times.length && times[j] - times[i] < 1000) j++;
    most = Math.max(most, j - i);
  }
  let gap = Infinity;
  for (let i = 1; i < times.length; i++) gap = Math.min(gap, times[i] - times[i - 1]);
  return { count: times.length, perSecond: most, gap };
}

describe('whiteboard: strokes, cursors, replay, clear, layout', { timeout: 90_000 }, () => {
  let browser;
  before(async () => { browser = await launchChromium(); });
  after(async () => { await browser?.close(); });

  it('strokes drawn on one page appear on the other with the same points; cursors come and go', async () => {
    const boardName = `pair-${runId}`;
    const alice = await join(browser, 'alice', boardName);
    const bob = await join(browser, 'bob', boardName);
    try {
      // A hand: 100 mouse moves, one every few milliseconds.
      const started = Date.now();
      const firstPoints = wave(100, 0.3);
      await drawMouse(alice.page, firstPoints);
      await alice.page.click('[data-testid="color"]:nth-child(3)');
      await alice.page.click('[data-testid="width"]:nth-child(3)');
      // A very fast one: 150 moves within one task of the page. They leave in
      // a few chunks, not in 150 publishes.
      await settled(alice);
      const box0 = await boardBox(alice.page);
      await alice.page.mouse.move(box0.x + 0.1 * box0.width, box0.y + 0.7 * box0.height);
      await alice.page.mouse.down();
      const burstFrom = Date.now();
      await alice.page.evaluate(({ box, n }) => {
        const board = document.querySelector('[data-testid="board"]');
        const pointerId = window.__board.pointerId();
        for (let i = 1; i <= n; i++) {
          const t = i / n;
          board.dispatchEvent(new PointerEvent('pointermove', {
            pointerId, isPrimary: true, pointerType: 'mouse', buttons: 1, bubbles: true,
            clientX: box.x + (0.1 + 0.8 * t) * box.width, clientY: box.y + (0.7 + 0.1 * Math.sin(t * 6 * Math.PI)) * box.height,
          }));
        }
      }, { box: box0, n: 150 });
      await alice.page.mouse.up();
      await settled(alice);
      const burst = (await alice.page.evaluate(() => window.__board.published))
        .filter(([t, channel]) => t >= burstFrom && channel.startsWith('board:')).length;
      assert.ok(burst <= 5, `publishes for a stroke of 150 moves in one task: ${burst}`);
      const model = await converged([alice, bob], 'bob sees alice\'s strokes', 2);
      assert.equal(new Set(model.map((x) => x.id)).size, 2);
      assert.ok(model.every((x) => x.user === 'alice'));
      assert.notEqual(model[0].color, model[1].color, 'the colour picked');
      assert.ok(model[1].width > model[0].width, 'the width picked');

      // The points are where the mouse went (board fractions, 1/10000 units).
      const P = 10000;
      const first = model[0].points;
      assert.ok(first.length / 2 >= 80, `points kept: ${first.length / 2}`);
      const near = (value, expected) => Math.abs(value / P - expected) < 0.004;
      assert.ok(near(first[0], firstPoints[0][0]) && near(first[1], firstPoints[0][1]), `first point ${first.slice(0, 2)}`);
      const last = firstPoints[firstPoints.length - 1];
      assert.ok(near(first[first.length - 2], last[0]) && near(first[first.length - 1], last[1]),
        `last point ${first.slice(-2)}`);

      assert.ok(model[1].points.length / 2 >= 150, `points of the fast stroke: ${model[1].points.length / 2}`);
      // Never over 30 publishes a second, whatever the hand does.
      const rate = rateOf(await alice.page.evaluate(() => window.__board.published), started);
      assert.ok(rate.perSecond <= 30, `publishes in one second: ${rate.perSecond}`);
      assert.ok(rate.gap >= 33, `smallest gap between publishes: ${rate.gap} ms`);

      // Bob's canvas has the ink where the points are.
      const inked = await bob.page.evaluate((pts) => {
        let hits = 0;
        for (let i = 0; i < pts.length; i += 2) if (window.__board.inkAt(pts[i], pts[i + 1])) hits++;
        return hits / (pts.length / 2);
      }, first);
      assert.ok(inked > 0.95, `bob's canvas is painted at ${inked * 100}% of the stroke's points`);

      // Cursors: alice hovers, bob sees her name at that place, in the colour of her name.
      const box = await boardBox(alice.page);
      await alice.page.mouse.move(box.x + 0.25 * box.width, box.y + 0.6 * box.height);
      const cursor = await waitFor(async () => (await bob.page.evaluate(() => window.__board.cursors()))
        .find((c) => c.user === 'alice' && !c.hidden && Math.abs(c.x - 2500) < 50 && Math.abs(c.y - 6000) < 50),
      WAIT, 'alice\'s cursor on bob\'s page');
      assert.equal(await bob.page.textContent(`[data-testid="cursor"][data-user="alice"]`), 'alice');
      assert.ok(await bob.page.isVisible(`[data-testid="cursor"][data-user="alice"]`));
      assert.equal(cursor.color, await alice.page.getAttribute('[data-testid="color"]:nth-child(1)', 'data-color'));
      assert.equal(await alice.page.$(`[data-testid="cursor"]`), null, 'no cursor of one\'s own');
      await bob.page.waitForSelector('[data-testid="board-user"][data-user="alice"]');
      await screenshot(bob.page, 'whiteboard-pair');

      // Alice closes her page: her cursor and her name leave bob's board.
      await alice.context.close();
      await bob.page.waitForSelector(`[data-testid="cursor"][data-user="alice"]`, { state: 'detached' });
      await bob.page.waitForSelector('[data-testid="board-user"][data-user="alice"]', { state: 'detached' });
      assert.equal((await strokes(bob)).length, 2, 'the strokes stay');
      assert.deepEqual(alice.failed, []);
      assert.deepEqual(bob.failed, []);
    } finally {
      await alice.context.close().catch(() => {});
      await bob.context.close();
    }
  });

  it('a page opened late replays the board exactly, also while a stroke is drawn; clear clears every page', async () => {
    const boardName = `late-${runId}`;
    // More history than one read returns (250): a stroke of 300 chunks from a backend.
    for (let i = 0; i < 300; i++) {
      await apiPublish(`board:${boardName}`, { t: 's', id: 'from-api', i, p: [100 + 20 * i, 9000 + (i % 7) * 10], ...(i === 0 ? { c: '#8e44ad', w: 70 } : {}), ...(i === 299 ? { e: 1 } : {}) });
    }
    const alice = await join(browser, 'alice', boardName);
    let carol;
    let dave;
    try {
      await drawMouse(alice.page, wave(30, 0.2));
      await settled(alice);
      // A long stroke in progress: carol opens the board in the middle of it.
      const box = await boardBox(alice.page);
      const long = wave(120, 0.5, 0.15);
      await alice.page.mouse.move(box.x + long[0][0] * box.width, box.y + long[0][1] * box.height);
      await alice.page.mouse.down();
      // Carol's history requests reach the hub 300 ms late, so alice's live
      // chunks pass her subscribe reply's offset while she replays: some are
      // in her history reads too, and must be applied once.
      const opening = open(browser, 'carol', boardName).then(async (s) => {
        await s.page.routeWebSocket(/\/connection\/websocket/, (ws) => {
          const server = ws.connectToServer();
          ws.onMessage((message) => {
            if (String(message).includes('"type":"history"')) setTimeout(() => server.send(message), 300);
            else server.send(message);
          });
          server.onMessage((message) => ws.send(message));
        });
        await signIn(s);
        return s;
      });
      let ready = false;
      opening.then(() => { ready = true; }, () => {});
      let movesAfterCarol = 0;
      const until = Date.now() + WAIT;
      for (let i = 1; i < long.length && Date.now() < until; i++) {
        await alice.page.mouse.move(box.x + long[i][0] * box.width, box.y + long[i][1] * box.height);
        await sleep(10);
        if (ready) movesAfterCarol++;
        if (i === long.length - 1 && !ready) { i = 0; long.reverse(); }  // keep drawing until carol is in
      }
      await alice.page.mouse.up();
      carol = await opening;
      assert.ok(movesAfterCarol > 5, `the stroke went on after carol joined (${movesAfterCarol} moves)`);
      await settled(alice);
      const model = await converged([alice, carol], 'carol replays the board', 3);
      assert.deepEqual(model.map((x) => x.user), ['', 'alice', 'alice']);
      assert.equal(model[0].points.length, 600, 'the backend\'s stroke, all 300 chunks');
      const stats = await carol.page.evaluate(() => ({ ...window.__board.stats }));
      assert.equal(stats.duplicates, 0, JSON.stringify(stats));
      assert.equal(stats.missing, 0, JSON.stringify(stats));
      assert.ok(stats.replayed > 250, `replayed from history in more than one read: ${JSON.stringify(stats)}`);
      assert.ok(stats.held > 0, `live chunks held while replaying: ${JSON.stringify(stats)}`);
      assert.ok(stats.applied > stats.replayed, `and then live: ${JSON.stringify(stats)}`);
      assert.ok(await carol.page.evaluate(() => window.__board.inkPixels()) > 0);

      // Clear, from carol: both boards and canvases are empty.
      await carol.page.click('[data-testid="clear"]');
      await converged([alice, carol], 'the clear on both pages', 0);
      for (const s of [alice, carol]) {
        await waitFor(() => s.page.evaluate(() => window.__board.inkPixels() === 0), WAIT, `${s.name}'s canvas cleared`);
      }
      // After the clear: one stroke; dave, opening now, replays the clear too.
      await drawMouse(carol.page, wave(20, 0.4), 4);
      await settled(carol);
      dave = await join(browser, 'dave', boardName);
      const after = await converged([alice, carol, dave], 'one stroke after the clear', 1);
      assert.equal(after[0].user, 'carol');
      assert.equal(await dave.page.evaluate(() => window.__board.stats.duplicates), 0);
      for (const s of [alice, carol, dave]) assert.deepEqual(s.failed, [], s.name);
    } finally {
      await alice.context.close();
      await carol?.context.close();
      await dave?.context.close();
    }
  });

  for (const [label, viewport, other] of [['phone', PHONE, DESKTOP], ['desktop', DESKTOP, PHONE]]) {
    it(`${label} ${viewport.width}×${viewport.height}: board and toolbar in view, no scrolling, ${label === 'phone' ? 'touch' : 'mouse'} input, resize keeps the strokes`, async () => {
      const touch = label === 'phone';
      const s = await join(browser, `layout_${label}`, `layout-${label}-${runId}`, viewport,
        touch ? { hasTouch: true, isMobile: true, deviceScaleFactor: 2 } : {});
      try {
        const geometry = () => s.page.evaluate(() => {
          const rect = (id) => document.querySelector(`[data-testid="${id}"]`).getBoundingClientRect().toJSON();
          const root = document.scrollingElement;
          return {
            viewport: { width: innerWidth, height: innerHeight },
            board: rect('board'), toolbar: rect('toolbar'), clear: rect('clear'), me: rect('me'),
            scrollsX: root.scrollWidth > root.clientWidth + 1, scrollsY: root.scrollHeight > root.clientHeight + 1,
            topbarOverflows: (() => { const t = document.querySelector('[data-testid="topbar"]'); return t.scrollWidth > t.clientWidth + 1; })(),
          };
        });
        const inView = (box, g, what) => assert.ok(box.top >= 0 && box.left >= 0 && box.bottom <= g.viewport.height + 0.5
          && box.right <= g.viewport.width + 0.5 && box.width > 0 && box.height > 0, `${what} out of view: ${JSON.stringify(box)}`);
        let g = await geometry();
        inView(g.board, g, 'the board');
        inView(g.toolbar, g, 'the toolbar');
        inView(g.clear, g, 'the clear button');
        inView(g.me, g, 'the user name');
        assert.equal(g.scrollsX, false, 'horizontal scrolling');
        assert.equal(g.scrollsY, false, 'the page scrolls');
        assert.equal(g.topbarOverflows, false, 'the header overflows');
        assert.ok(Math.abs(g.board.width - g.board.height) < 1, 'the board is square');
        assert.ok(g.board.width >= Math.min(g.viewport.width, g.viewport.height) * 0.8 || g.board.width >= 600,
          `the board is small: ${g.board.width}`);

        if (touch) {
          // A finger, through Chromium's touch input: pointer events of type touch.
          const cdp = await s.context.newCDPSession(s.page);
          const box = await boardBox(s.page);
          const points = wave(25, 0.5, 0.1).map(([x, y]) => ({ x: box.x + x * box.width, y: box.y + y * box.height }));
          await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [points[0]] });
          for (const p of points.slice(1)) {
            await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: [p] });
            await sleep(8);
          }
          await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
        } else {
          await drawMouse(s.page, wave(25, 0.5, 0.1));
        }
        await settled(s);
        const before = await strokes(s);
        assert.equal(before.length, 1, 'one stroke drawn');
        assert.ok(before[0].points.length >= 40, `points: ${before[0].points.length / 2}`);
        await screenshot(s.page, `whiteboard-${label}`);

        // Resized to the other shape: the same strokes, painted at the same board places.
        await s.page.setViewportSize(other);
        await s.page.waitForFunction((w) => Math.abs(document.querySelector('[data-testid="board"]').getBoundingClientRect().width - w) > 10,
          g.board.width);
        g = await geometry();
        inView(g.board, g, 'the board after the resize');
        assert.equal(g.scrollsX, false, 'horizontal scrolling after the resize');
        assert.deepEqual(await strokes(s), before);
        await waitFor(() => s.page.evaluate((pts) => {
          let hits = 0;
          for (let i = 0; i < pts.length; i += 2) if (window.__board.inkAt(pts[i], pts[i + 1])) hits++;
          return hits === pts.length / 2;
        }, before[0].points), WAIT, 'the stroke repainted after the resize');
        assert.deepEqual(s.failed, []);
      } finally {
        await s.context.close();
      }
    });
  }
});
