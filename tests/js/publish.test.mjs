// Publishing with web/client/duplex.js: acknowledgements, the offline queue and
// resending with the same idempotency key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flush } from './fakes.mjs';
import { makeClient } from './harness.mjs';

test('publish resolves with the acknowledged position; each publish gets its own random key', async () => {
  const h = makeClient();
  const ws = await h.connect();
  const first = h.client.publish('chat:a', { text: 'hello' });
  const second = h.client.publish('chat:a', { text: 'again' }, { idempotencyKey: 'mine-1' });
  const [p1, p2] = ws.allOf('publish');
  assert.deepEqual(p1.data, { text: 'hello' });
  assert.equal(p1.channel, 'chat:a');
  assert.match(p1.idempotency_key, /^[0-9a-f]{32}$/);
  assert.equal(p2.idempotency_key, 'mine-1');
  ws.reply(p2.id, { epoch: 'e1', offset: 8, duplicate: true });
  ws.reply(p1.id, { epoch: 'e1', offset: 7 });
  assert.deepEqual(await first, { epoch: 'e1', offset: 7, duplicate: false });
  assert.deepEqual(await second, { epoch: 'e1', offset: 8, duplicate: true });
});

test('publish errors reject with the hub code', async () => {
  const h = makeClient();
  const ws = await h.connect();
  const p = h.client.publish('chat:a', 1);
  ws.replyError(ws.lastOf('publish').id, 110, 'too many requests');
  await assert.rejects(p, { name: 'DuplexError', code: 110 });
});

test('publishes while disconnected are queued and sent in order after reconnect, after the resubscribes', async () => {
  const h = makeClient();
  let ws = await h.connect();
  h.client.subscribe('chat:a', {});
  h.answerSubscribe(ws, 'chat:a', { epoch: 'e1', offset: 0 });
  ws.serverClose(1006);
  let resolved = 0;
  const promises = [1, 2, 3].map((n) => h.client.publish('chat:a', { n }).then((r) => { resolved++; return r; }));
  assert.equal(h.client.queued, 3);
  await flush();
  assert.equal(resolved, 0);
  ws = await h.reconnectNow();
  await h.accept();
  const types = ws.sent.map((c) => c.type);
  assert.deepEqual(types, ['authenticate', 'subscribe', 'publish', 'publish', 'publish']);
  const publishes = ws.allOf('publish');
  assert.deepEqual(publishes.map((c) => c.data.n), [1, 2, 3]);
  assert.equal(new Set(publishes.map((c) => c.idempotency_key)).size, 3);
  assert.equal(h.client.queued, 0);
  publishes.forEach((c, i) => ws.reply(c.id, { epoch: 'e1', offset: i + 1 }));
  assert.deepEqual((await Promise.all(promises)).map((r) => r.offset), [1, 2, 3]);
});

test('a publish cut off by a disconnect is resent with the same idempotency key, in the original order', async () => {
  const h = makeClient();
  let ws = await h.connect();
  const inflight = h.client.publish('chat:a', 'first');
  const key = ws.lastOf('publish').idempotency_key;
  ws.serverClose(1006);                     // no ack received
  const later = h.client.publish('chat:a', 'second');
  ws = await h.reconnectNow();
  await h.accept();
  const [again, next] = ws.allOf('publish');
  assert.equal(again.data, 'first');
  assert.equal(again.idempotency_key, key);
  assert.equal(next.data, 'second');
  ws.reply(again.id, { epoch: 'e1', offset: 5, duplicate: true });
  ws.reply(next.id, { epoch: 'e1', offset: 6 });
  assert.deepEqual(await inflight, { epoch: 'e1', offset: 5, duplicate: true });
  assert.equal((await later).offset, 6);
});

test('a key survives several failed connections', async () => {
  const h = makeClient();
  await h.connect();
  h.ws.serverClose(1006);
  const p = h.client.publish('chat:a', 'x');
  const keys = [];
  for (let i = 0; i < 3; i++) {
    const ws = await h.reconnectNow();
    await h.accept();
    keys.push(ws.lastOf('publish').idempotency_key);
    ws.serverClose(1006);
  }
  assert.equal(new Set(keys).size, 1);
  const ws = await h.reconnectNow();
  await h.accept();
  ws.reply(ws.lastOf('publish').id, { epoch: 'e1', offset: 1 });
  assert.equal((await p).offset, 1);
});

test('the queue is bounded by maxQueued', async () => {
  const h = makeClient({ maxQueued: 2 });
  h.client.publish('chat:a', 1);
  h.client.publish('chat:a', 2);
  await assert.rejects(h.client.publish('chat:a', 3), { code: 'queue_full' });
  assert.equal(h.client.queued, 2);
});

test('clearQueue rejects what is queued', async () => {
  const h = makeClient();
  const p = h.client.publish('chat:a', 1);
  h.client.clearQueue('signed out');
  await assert.rejects(p, { code: 'disconnected', message: 'signed out' });
  assert.equal(h.client.queued, 0);
});
