// Shared by the tests that need a running `duplex serve` (started by run.sh,
// which exports DUPLEX_URL and DUPLEX_SERVER_PID).
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS = join(HERE, 'artifacts');

export function serverUrl() {
  const url = process.env.DUPLEX_URL;
  if (!url) throw new Error('DUPLEX_URL is not set: run tests/browser/run.sh');
  return url.replace(/\/$/, '');
}

export function websocketUrl() {
  return `${serverUrl().replace(/^http/, 'ws')}/connection/websocket`;
}

export async function demoToken(user) {
  const response = await fetch(`${serverUrl()}/demo/token?user=${encodeURIComponent(user)}`);
  if (!response.ok) throw new Error(`/demo/token answered ${response.status}`);
  return (await response.json()).token;
}

export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 20_000,
  });
}

export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true, timeout: 5000 }).catch(() => {});
}

// Polls `fn` until it returns a truthy value or `ms` elapse.
export async function waitFor(fn, ms, what) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
