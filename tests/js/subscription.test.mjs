// Subscriptions of web/client/duplex.js against a scripted fake WebSocket: reply
// matching, dedupe by offset, resubscribe with recovery, gaps, presence.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flush } from './fakes.mjs';
import { makeClient, message } from './harness.mjs';

function recorder() {
  const log = { messages: [], subscribed: [], gaps: [], joins: [], leaves: [], unsubscribed: [], errors: [] };
  const handlers = {
    onMessage: (m) => log.messages.push(m),
    onSubscribed: (c) => log.subscribed.push(c),
    onGap: (g) => log.gaps.push(g),
    onJoin: (j) => log.joins.push(j),
    onLeave: (l) => log.leaves.push(l),
    onUnsubscribed: (u) => log.unsubscribed.push(u),
    onError: (e) => log.errors.push(e),
  };
  return { log, handlers, offsets: () => log.messages.map((m) => m.offset) };
}

test('subscribe before connect is sent after authenticate; replies are matched by id', async () => {
  const h = makeClient();
  const a = recorder();
  const b = recorder();
  const subA = h.client.subscribe('chat:a', a.handlers);
  const subB = h.client.subscribe('chat:b', b.handlers);
  assert.equal(subA.state, 'subscribing');
  const ws = await h.connect();
  const [cmdA, cmdB] = ws.allOf('subscribe');
  assert.deepEqual(cmdA, { type: 'subscribe', channel: 'chat:a', id: cmdA.id });
  assert.equal(cmdB.channel, 'chat:b');
  assert.notEqual(cmdA.id, cmdB.id);
  // Replies out of order still land on the right subscription.
  ws.reply(cmdB.id, { channel: 'chat:b', epoch: 'eb', offset: 7, recoverable: true });
  ws.reply(cmdA.id, { channel: 'chat:a', epoch: 'ea', offset: 3, recoverable: false });
  assert.equal(subA.state, 'subscribed');
  assert.deepEqual([subA.epoch, subA.offset, subA.recoverable], ['ea', 3, false]);
  assert.deepEqual([subB.epoch, subB.offset, subB.recoverable], ['eb', 7, true]);
  assert.equal(a.log.subscribed[0].resubscribed, false);
  await subA.ready();
});

test('messages: delivered with data, info and position; duplicates and old offsets dropped', async () => {
  const h = makeClient();
  const ws = await h.connect();
  const r = recorder();
  const sub = h.client.subscribe('chat:a', r.handlers);
  h.answerSubscribe(ws, 'chat:a', { epoch: 'e1', offset: 10 });
  ws.receive(message('chat:a', 'e1', 9));    // before the subscription: dropped
  ws.receive(message('chat:a', 'e1', 10));   // equal to the position: dropped
  ws.receive({ ...message('chat:a', 'e1', 11, { text: 'hi' }), info: { user: '42', client: 'c9' } });
  ws.receive(message('chat:a', 'e1', 11));   // duplicate
  ws.receive(message('chat:a', 'e1', 12));
  ws.receive(message('chat:b', 'e1', 13));   // not subscribed
  assert.deepEqual(r.offsets(), [11, 12]);
  assert.deepEqual(r.log.messages[0], {
    channel: 'chat:a', data: { text: 'hi' }, offset: 11, epoch: 'e1', recovered: false, info: { user: '42', client: 'c9' },
  });
  assert.equal(sub.offset, 12);
});

test('pushes arriving before the subscribe reply are held, then delivered after it without duplicates', async () => {
  const h = makeClient();
  const ws = await h.connect();
  const r = recorder();
  h.client.subscribe('chat:a', r.handlers);
  ws.receive(message('chat:a', 'e1', 5));
  ws.receive(message('chat:a', 'e1', 6));
  assert.deepEqual(r.offsets(), []);
  h.answerSubscribe(ws, 'chat:a', { epoch: 'e1', offset: 5 });
  assert.deepEqual(r.offsets(), [6]);
});

test('after a reconnect: resubscribe with recover and the last position; recovered then live, none twice', async () => {
  const h = makeClient();
  let ws = await h.connect();
  const r = recorder();
  const sub = h.client.subscribe('chat:a', r.handlers);
  h.answerSubscribe(ws, 'chat:a', { epoch: 'e1', offset: 40 });
  ws.receive(message('chat:a', 'e1', 41));
  ws.serverClose(1006);
  assert.equal(sub.state, 'subscribing');
  ws = await h.reconnectNow();
  await h.accept();
  const cmd = ws.lastOf('subscribe');
  assert.deepEqual(cmd, { type: 'subscribe', channel: 'chat:a', recover: true, epoch: 'e1', offset: 41, id: cmd.id });
  // A live message racing the reply overlaps the recovered range.
  ws.receive(message('chat:a', 'e1', 45));
  ws.receive(message('chat:a', 'e1', 46));
  ws.reply(cmd.id, {
    channel: 'chat:a', epoch: 'e1', offset: 45, recoverable: true, recovered: true,
    publications: [42, 43, 44, 45].map((offset) => ({ offset, data: { n: offset } })),
  });
  ws.receive(message('chat:a', 'e1', 46));
  ws.receive(message('chat:a', 'e1', 47));
  assert.deepEqual(r.offsets(), [41, 42, 43, 44, 45, 46, 47]);
  assert.deepEqual(r.log.messages.map((m) => m.recovered), [false, true, true, true, true, false, false]);
  assert.equal(r.log.gaps.length, 0);
  assert.deepEqual(r.log.subscribed.map((s) => [s.resubscribed, s.recovered]), [[false, false], [true, true]]);
  assert.deepEqual([sub.epoch, sub.offset], ['e1', 47]);
});

test('recovered:false calls onGap with old and new positions and moves to the new epoch', async () => {
  const h = makeClient();
  let ws = await h.connect();
  const r = recorder();
  const sub = h.client.subscribe('chat:a', r.handlers);
  h.answerSubscribe(ws, 'chat:a', { epoch: 'e1', offset: 40 });
  ws.serverClose(1001);
  ws = await h.reconnectNow();
  await h.accept();
  const cmd = h.answerSubscribe(ws, 'chat:a', { epoch: 'e2', offset: 3, recovered: false, publications: [] });
  assert.equal(cmd.recover, true);
  assert.equal(r.log.gaps.length, 1);
  assert.deepEqual(
    [r.log.gaps[0].previousEpoch, r.log.gaps[0].previousOffset, r.log.gaps[0].epoch, r.log.gaps[0].offset, r.log.gaps[0].recovered],
    ['e1', 40, 'e2', 3, false],
  );
  assert.deepEqual([sub.epoch, sub.offset], ['e2', 3]);
  ws.receive(message('chat:a', 'e2', 4));
  assert.deepEqual(r.offsets(), [4]);
});

test('a live message from a new epoch is delivered and reported as a gap', async () => {
  const h = makeClient();
  const ws = await h.connect();
  const r = recorder();
  h.client.subscribe('chat:a', r.handlers);
  h.answerSubscribe(ws, 'chat:a', { epoch: 'e1', offset: 40 });
  ws.receive(message('chat:a', 'e2', 1));
  assert.deepEqual(r.offsets(), [1]);
  assert.equal(r.log.gaps.length, 1);
});

test('subscribe errors end the subscription and reject ready()', async () => {
  const h = makeClient();
  const ws = await h.connect();
  const r = recorder();
  const sub = h.client.subscribe('secret:x', r.handlers);
  const ready = sub.ready();
  const cmd = ws.lastOf('subscribe');
  ws.replyError(cmd.id, 103, 'permission denied');
  await assert.rejects(ready, { code: 103 });
  assert.equal(sub.state, 'unsubscribed');
  assert.equal(r.log.errors[0].code, 103);
  assert.equal(h.client.getSubscription('secret:x'), null);
  // The channel can be subscribed again.
  h.client.subscribe('secret:x', {});
});

test('a second subscribe to the same channel throws', async () => {
  const h = makeClient();
  h.client.subscribe('chat:a', {});
  assert.throws(() => h.client.subscribe('chat:a', {}), { code: 105 });
});

test('subscribe token: string or async function, sent in the subscribe command', async () => {
  const h = makeClient();
  const ws = await h.connect();
  h.client.subscribe('vip:a', { token: 'SUBTOKEN' });
  assert.equal(ws.lastOf('subscribe').token, 'SUBTOKEN');
  h.client.subscribe('vip:b', { token: async (channel) => `for-${channel}` });
  await flush();
  assert.equal(ws.lastOf('subscribe').token, 'for-vip:b');
});

test('join and leave reach the subscription handlers', async () => {
  const h = makeClient();
  const ws = await h.connect();
  const r = recorder();
  h.client.subscribe('chat:a', r.handlers);
  h.answerSubscribe(ws, 'chat:a', { epoch: 'e1', offset: 0 });
  const who = { client: 'c2', user: 'ada', info: { name: 'Ada' } };
  ws.receive({ type: 'join', channel: 'chat:a', client: who });
  ws.receive({ type: 'leave', channel: 'chat:a', client: who });
  assert.deepEqual(r.log.joins, [{ channel: 'chat:a', ...who }]);
  assert.deepEqual(r.log.leaves, [{ channel: 'chat:a', ...who }]);
});

test('unsubscribe: client-side sends the command; server-side push ends the subscription', async () => {
  const h = makeClient();
  const ws = await h.connect();
  const r = recorder();
  const sub = h.client.subscribe('chat:a', r.handlers);
  h.answerSubscribe(ws, 'chat:a', { epoch: 'e1', offset: 0 });
  const done = sub.unsubscribe();
  const cmd = ws.lastOf('unsubscribe');
  assert.equal(cmd.channel, 'chat:a');
  ws.reply(cmd.id, {});
  await done;
  assert.equal(r.log.unsubscribed[0].server, false);
  ws.receive(message('chat:a', 'e1', 1));
  assert.deepEqual(r.offsets(), []);

  const r2 = recorder();
  const sub2 = h.client.subscribe('chat:b', r2.handlers);
  h.answerSubscribe(ws, 'chat:b', { epoch: 'e1', offset: 0 });
  ws.receive({ type: 'unsubscribe', channel: 'chat:b', code: 2000, reason: 'unsubscribed by server' });
  assert.equal(sub2.state, 'unsubscribed');
  assert.deepEqual(r2.log.unsubscribed[0], { channel: 'chat:b', code: 2000, reason: 'unsubscribed by server', server: true });
  // Not resubscribed after a reconnect.
  ws.serverClose(1006);
  const ws2 = await h.reconnectNow();
  await h.accept();
  assert.deepEqual(ws2.allOf('subscribe'), []);
});

test('presence and history send the documented commands and resolve with the result', async () => {
  const h = makeClient();
  const ws = await h.connect();
  const sub = h.client.subscribe('chat:a', {});
  h.answerSubscribe(ws, 'chat:a', { epoch: 'e1', offset: 9 });
  const presence = sub.presence();
  const history = sub.history({ limit: 2, since: { epoch: 'e1', offset: 7 }, reverse: true });
  await flush();
  const p = ws.lastOf('presence');
  const hi = ws.lastOf('history');
  assert.deepEqual(p, { type: 'presence', channel: 'chat:a', id: p.id });
  assert.deepEqual(hi, { type: 'history', channel: 'chat:a', limit: 2, since: { epoch: 'e1', offset: 7 }, reverse: true, id: hi.id });
  ws.reply(hi.id, { epoch: 'e1', offset: 9, publications: [{ offset: 9, data: 1 }, { offset: 8, data: 0 }] });
  ws.replyError(p.id, 108, 'not available');
  assert.equal((await history).publications.length, 2);
  await assert.rejects(presence, { code: 108, message: 'not available' });
});

test('presence() while connecting waits for the connection', async () => {
  const h = makeClient();
  h.client.connect();
  const presence = h.client.presence('chat:a');
  const ws = await h.accept();
  await flush();
  const p = ws.lastOf('presence');
  ws.reply(p.id, { clients: [{ client: 'c1', user: 'u1' }] });
  assert.deepEqual(await presence, { clients: [{ client: 'c1', user: 'u1' }] });
});

test('server-side unsubscribe 2500: resubscribes at once from its position and recovers the gap', async () => {
  const h = makeClient();
  const ws = await h.connect();
  const r = recorder();
  const sub = h.client.subscribe('chat:a', r.handlers);
  h.answerSubscribe(ws, 'chat:a', { epoch: 'e1', offset: 0 });
  ws.receive(message('chat:a', 'e1', 1));
  ws.receive(message('chat:a', 'e1', 2));
  const before = ws.allOf('subscribe').length;
  ws.receive({ type: 'unsubscribe', channel: 'chat:a', code: 2500, reason: 'the server lost track of this channel' });
  assert.equal(sub.state, 'subscribing');
  const cmds = ws.allOf('subscribe');
  assert.equal(cmds.length, before + 1);
  const again = cmds[cmds.length - 1];
  assert.deepEqual([again.recover, again.epoch, again.offset], [true, 'e1', 2]);
  ws.reply(again.id, { channel: 'chat:a', epoch: 'e1', offset: 4, recoverable: true, recovered: true,
    publications: [{ offset: 3, data: 3 }, { offset: 4, data: 4 }] });
  assert.equal(sub.state, 'subscribed');
  assert.deepEqual(r.offsets(), [1, 2, 3, 4]);
  assert.deepEqual(r.log.unsubscribed, [], 'not reported as unsubscribed');
  assert.equal(r.log.gaps.length, 0);
});

test('join/leave that overtake the subscribe reply (fallback transports) are held and delivered after it, in order', async () => {
  const h = makeClient();
  const ws = await h.connect();
  const r = recorder();
  const sub = h.client.subscribe('chat:a', r.handlers);
  const cmd = ws.lastOf('subscribe');
  ws.receive({ type: 'join', channel: 'chat:a', client: { client: 'c1', user: 'ada' } });
  ws.receive(message('chat:a', 'e1', 1));
  ws.receive({ type: 'leave', channel: 'chat:a', client: { client: 'c1', user: 'ada' } });
  assert.equal(sub.state, 'subscribing');
  assert.deepEqual([r.log.joins.length, r.log.leaves.length, r.offsets().length], [0, 0, 0]);
  ws.reply(cmd.id, { channel: 'chat:a', epoch: 'e1', offset: 0, recoverable: true });
  assert.equal(sub.state, 'subscribed');
  assert.deepEqual(r.log.joins, [{ channel: 'chat:a', client: 'c1', user: 'ada', info: undefined }]);
  assert.deepEqual(r.log.leaves.map((l) => l.user), ['ada']);
  assert.deepEqual(r.offsets(), [1]);
});
