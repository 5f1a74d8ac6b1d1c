// web/client/duplex.js on Node with the `ws` package against the real server:
// subscribe, publish, presence, history, idempotency, recovery, offline queue.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from '../interop/node_modules/ws/wrapper.mjs';
import { Duplex } from '../../web/client/duplex.js';
import { demoToken, waitFor, websocketUrl } from './lib.mjs';

const channel = `chat:node-${Date.now().toString(36)}`;

async function connected(user) {
  const client = new Duplex(websocketUrl(), { getToken: () => demoToken(user), WebSocket, backoffCap: 1000 });
  const received = [];
  const sub = client.subscribe(channel, { onMessage: (m) => received.push(m) });
  client.connect();
  await sub.ready();
  assert.equal(client.state, 'connected');
  return { client, sub, received };
}

test('Node client (ws) against duplex serve', { timeout: 30_000 }, async (t) => {
  const ada = await connected('ada');
  const bo = await connected('bo');
  t.after(() => { ada.client.disconnect(); bo.client.disconnect(); });
  assert.equal(ada.client.user, 'ada');
  assert.equal(ada.client.transport, 'websocket');

  await t.test('publish reaches every subscriber with publisher info', async () => {
    const ack = await ada.client.publish(channel, { text: 'one', name: 'ada' });
    assert.equal(typeof ack.epoch, 'string');
    assert.ok(ack.offset >= 1);
    assert.equal(ack.duplicate, false);
    await waitFor(() => bo.received.length === 1 && ada.received.length === 1, 5000, 'both receive');
    assert.deepEqual(bo.received[0].data, { text: 'one', name: 'ada' });
    assert.equal(bo.received[0].offset, ack.offset);
    assert.equal(bo.received[0].info.user, 'ada');
  });

  await t.test('presence lists both; history returns the message', async () => {
    const presence = await bo.sub.presence();
    assert.deepEqual(presence.clients.map((c) => c.user).sort(), ['ada', 'bo']);
    const history = await bo.sub.history({ limit: 10 });
    assert.deepEqual(history.publications.map((p) => p.data.text), ['one']);
  });

  await t.test('the same idempotency key is applied once', async () => {
    const first = await ada.client.publish(channel, { text: 'once' }, { idempotencyKey: `k-${channel}` });
    const again = await ada.client.publish(channel, { text: 'once' }, { idempotencyKey: `k-${channel}` });
    assert.equal(again.duplicate, true);
    assert.equal(again.offset, first.offset);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(bo.received.filter((m) => m.data.text === 'once').length, 1);
  });

  await t.test('after a reconnect the subscription recovers what was missed; queued publishes go out', async () => {
    bo.client.disconnect();
    const queued = bo.client.publish(channel, { text: 'from bo while away' });
    assert.equal(bo.client.queued, 1);
    for (const n of [1, 2, 3]) await ada.client.publish(channel, { text: `missed ${n}` });
    const before = bo.received.length;
    bo.client.connect();
    const ack = await queued;
    await waitFor(() => bo.received.length >= before + 4, 5000, 'bo recovers 3 and gets his own');
    const texts = bo.received.slice(before).map((m) => m.data.text);
    assert.deepEqual(texts, ['missed 1', 'missed 2', 'missed 3', 'from bo while away']);
    assert.deepEqual(bo.received.slice(before, before + 3).map((m) => m.recovered), [true, true, true]);
    assert.equal(bo.received[bo.received.length - 1].offset, ack.offset);
    const offsets = bo.received.map((m) => m.offset);
    assert.equal(new Set(offsets).size, offsets.length, 'no duplicates');
  });
});

// docs/CLIENT-JS.md: onJoin fires for your own connection too (join_leave on).
test('onJoin fires for the joining connection itself', { timeout: 15_000 }, async (t) => {
  const client = new Duplex(websocketUrl(), { getToken: () => demoToken('self'), WebSocket, backoffCap: 1000 });
  t.after(() => client.disconnect());
  const joins = [];
  const sub = client.subscribe(`${channel}-self`, { onJoin: (who) => joins.push(who) });
  client.connect();
  await sub.ready();
  await waitFor(() => joins.some((who) => who.client === client.clientId), 5000, 'our own join');
  assert.equal(joins.find((who) => who.client === client.clientId).user, 'self');
});
