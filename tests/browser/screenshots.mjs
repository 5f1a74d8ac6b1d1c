// The README's screenshots of the demo pages: the chat and the whiteboard, on
// a desktop (1280×800) and a phone (390×844), written to docs/images/.
// Run by hand after a change to the pages (not part of `make test`):
//
//   node tests/browser/screenshots.mjs            # uses build/duplex
//   DUPLEX=/path/to/duplex node tests/browser/screenshots.mjs
//
// It starts `duplex serve --config config/demo.toml` on a free loopback port
// with the memory engine (nothing is written to ./data), signs in two users
// per page, makes some traffic and some drawings, and stops the server. Each
// PNG must stay under 150 KB (the script fails otherwise).
import { spawn } from 'node:child_process';
import { mkdirSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { HERE, launchChromium } from './lib.mjs';

const ROOT = join(HERE, '..', '..');
const OUT = join(ROOT, 'docs', 'images');
const DUPLEX = process.env.DUPLEX || join(ROOT, 'build', 'duplex');
const MAX_BYTES = 150 * 1024;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

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

async function startServer() {
  const port = await freePort();
  const child = spawn(DUPLEX, ['serve', '--config', join(ROOT, 'config', 'demo.toml'), '--listen', `127.0.0.1:${port}`,
    '--engine', 'memory', '--log-level', 'warn'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (child.exitCode != null) throw new Error(`duplex serve exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/duplex.js`)).ok) return { child, url };
    } catch { /* not yet */ }
    await sleep(100);
  }
  child.kill('SIGTERM');
  throw new Error(`duplex serve did not answer on ${url}`);
}

async function openPage(browser, url, viewport, touch = false) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, hasTouch: touch, isMobile: touch });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (err) => console.error('page error:', err.message));
  await page.goto(url);
  return { context, page };
}

async function signIn(page, ready) {
  await page.click('[data-testid="login-button"]');
  await page.waitForSelector('[data-testid="status"][data-state="connected"]');
  if (ready) await page.waitForSelector(ready);
}

async function shoot(page, name) {
  const path = join(OUT, `${name}.png`);
  await page.screenshot({ path, animations: 'disabled', caret: 'hide' });
  const bytes = statSync(path).size;
  console.log(`${path}: ${(bytes / 1024).toFixed(0)} KB`);
  if (bytes > MAX_BYTES) throw new Error(`${name}.png is ${bytes} bytes, over ${MAX_BYTES}`);
}

async function say(page, text) {
  await page.fill('[data-testid="message-input"]', text);
  await page.press('[data-testid="message-input"]', 'Enter');
  await sleep(150);
}

// A path in board fractions, drawn with the mouse.
async function draw(page, points, color) {
  if (color) await page.click(`[data-testid="color"][data-color="${color}"]`);
  const box = await page.locator('[data-testid="board"]').boundingBox();
  const at = ([x, y]) => [box.x + x * box.width, box.y + y * box.height];
  await page.mouse.move(...at(points[0]));
  await page.mouse.down();
  for (const p of points.slice(1)) await page.mouse.move(...at(p));
  await page.mouse.up();
  await page.waitForFunction(() => window.__board.sending() === 0 && window.__board.local().length === 0);
}

const circle = (cx, cy, r, n = 48) => Array.from({ length: n + 1 }, (_, i) =>
  [cx + r * Math.cos((2 * Math.PI * i) / n), cy + r * Math.sin((2 * Math.PI * i) / n)]);
const line = (a, b, n = 12) => Array.from({ length: n + 1 }, (_, i) => [a[0] + ((b[0] - a[0]) * i) / n, a[1] + ((b[1] - a[1]) * i) / n]);
const polyline = (...corners) => corners.slice(1).flatMap((c, i) => line(corners[i], c).slice(i ? 1 : 0));
const wave = (y, x0, x1, amplitude, turns, n = 80) => Array.from({ length: n }, (_, i) => {
  const t = i / (n - 1);
  return [x0 + (x1 - x0) * t, y + amplitude * Math.sin(t * turns * 2 * Math.PI)];
});

async function main() {
  mkdirSync(OUT, { recursive: true });
  const { child, url } = await startServer();
  const browser = await launchChromium();
  try {
    // --- the chat: two people talking; the dashboard has a few seconds of figures.
    const ada = await openPage(browser, `${url}/?name=ada`, DESKTOP);
    await signIn(ada.page);
    const grace = await openPage(browser, `${url}/?name=grace`, PHONE, true);
    await signIn(grace.page);
    await say(ada.page, 'Morning! Is the new build on staging?');
    await say(grace.page, 'Deployed 5 minutes ago — try the whiteboard page');
    await say(ada.page, 'Opening it now');
    await fetch(`${url}/api/publish`, {
      method: 'POST', headers: { 'X-API-Key': 'dev-api-key' },
      body: JSON.stringify({ channel: 'chat:lobby', data: { text: 'Build 1.4.2 is live on staging', name: 'ci-bot' } }),
    });
    await say(grace.page, 'Cursors and strokes show up instantly here');
    // Some traffic for the dashboard: a backend publishing on chat:random at a
    // varying rate, to a third page that is in that room, for 40 s.
    const linus = await openPage(browser, `${url}/?name=linus&room=random`, DESKTOP);
    await signIn(linus.page);
    const until = Date.now() + 40_000;
    for (let i = 0; Date.now() < until; i++) {
      const rate = 6 + 5 * Math.sin(i / 25);
      await fetch(`${url}/api/publish`, {
        method: 'POST', headers: { 'X-API-Key': 'dev-api-key' },
        body: JSON.stringify({ channel: 'chat:random', data: { text: `tick ${i}`, name: 'load' } }),
      });
      await sleep(1000 / rate);
    }
    await shoot(ada.page, 'chat-desktop');
    await shoot(grace.page, 'chat-phone');
    await ada.context.close();
    await grace.context.close();
    await linus.context.close();

    // --- the whiteboard: ada draws on the desktop, grace on her phone points at it.
    const board = `${url}/whiteboard.html?board=demo`;
    const adaBoard = await openPage(browser, `${board}&name=ada`, DESKTOP);
    await signIn(adaBoard.page, '[data-testid="board-app"][data-ready="true"]');
    const graceBoard = await openPage(browser, `${board}&name=grace`, PHONE, true);
    await signIn(graceBoard.page, '[data-testid="board-app"][data-ready="true"]');
    await draw(adaBoard.page, circle(0.78, 0.2, 0.08), '#c77700');                       // the sun
    await draw(adaBoard.page, polyline([0.18, 0.75], [0.18, 0.5], [0.4, 0.5], [0.4, 0.75], [0.18, 0.75]), '#3461d6');
    await draw(adaBoard.page, polyline([0.14, 0.52], [0.29, 0.33], [0.44, 0.52]), '#c0392b');  // the roof
    await draw(adaBoard.page, polyline([0.26, 0.75], [0.26, 0.62], [0.32, 0.62], [0.32, 0.75]), '#3461d6');
    await draw(adaBoard.page, wave(0.86, 0.05, 0.95, 0.02, 4), '#1f9d55');               // grass
    await adaBoard.page.click('[data-testid="width"]:nth-child(1)');
    await draw(adaBoard.page, wave(0.3, 0.48, 0.62, 0.015, 1.5, 30), '#1d2330');          // birds
    await draw(adaBoard.page, wave(0.24, 0.55, 0.66, 0.012, 1.5, 30), '#1d2330');
    // Grace's finger draws a path to the door.
    const phoneBox = await graceBoard.page.locator('[data-testid="board"]').boundingBox();
    await graceBoard.page.click('[data-testid="width"]:nth-child(3)');
    const cdp = await graceBoard.context.newCDPSession(graceBoard.page);
    const path = line([0.7, 0.75], [0.36, 0.72], 20).map(([x, y]) => ({ x: phoneBox.x + x * phoneBox.width, y: phoneBox.y + y * phoneBox.height }));
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [path[0]] });
    for (const p of path.slice(1)) await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: [p] });
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
    await graceBoard.page.waitForFunction(() => window.__board.sending() === 0 && window.__board.local().length === 0);
    // Ada's mouse rests beside the sun, linus points at the door: their
    // cursors on the other screens (a lifted finger shows none).
    const linusBoard = await openPage(browser, `${board}&name=linus`, DESKTOP);
    await signIn(linusBoard.page, '[data-testid="board-app"][data-ready="true"]');
    const hover = async (p, x, y) => {
      const b = await p.locator('[data-testid="board"]').boundingBox();
      await p.mouse.move(b.x + x * b.width, b.y + y * b.height);
    };
    await hover(adaBoard.page, 0.64, 0.3);
    await hover(linusBoard.page, 0.33, 0.66);
    await graceBoard.page.waitForSelector('[data-testid="cursor"][data-user="ada"]');
    await graceBoard.page.waitForSelector('[data-testid="cursor"][data-user="linus"]');
    await adaBoard.page.waitForSelector('[data-testid="cursor"][data-user="linus"]');
    await sleep(300);
    await shoot(adaBoard.page, 'whiteboard-desktop');
    await shoot(graceBoard.page, 'whiteboard-phone');
  } finally {
    await browser.close();
    child.kill('SIGTERM');
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
