// Connection lifecycle of web/client/duplex.js against a scripted fake WebSocket:
// authentication, backoff, disconnect codes, heartbeat, refresh, offline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flush } from './fakes.mjs';
import { makeClient } from './harness.mjs';

test('authenticate is the first command, the token never goes into the URL', async () => {
  const h = makeClient({ token: 'secret-token' });
  h.client.connect();
  assert.equal(h.client.state, 'connecting');
  await flush();
  const ws = h.ws;
  assert.equal(ws.protocol, 'duplex.v1');
  assert.ok(!ws.url.includes('secret-token'));
  assert.equal(ws.sent.length, 0, 'nothing is sent before open');
  ws.open();
  assert.deepEqual(ws.sent, [{ type: 'authenticate', token: 'secret-token', id: ws.sent[0].id }]);
  assert.ok(Number.isInteger(ws.sent[0].id) && ws.sent[0].id > 0);
  ws.reply(ws.sent[0].id, { client: 'abc', user: '42', node: 'n1', ping: 25, expires: 1764000000 });
  assert.equal(h.client.state, 'connected');
  assert.equal(h.client.transport, 'websocket');
  assert.equal(h.client.clientId, 'abc');
  assert.equal(h.client.user, '42');
  assert.deepEqual(h.eventsOf('state').map((s) => s.state), ['connecting', 'connected']);
  assert.equal(h.eventsOf('connected')[0].client, 'abc');
});

test('http URLs are turned into ws URLs', async () => {
  const h = makeClient();
  h.client.url = 'http://127.0.0.1:9/connection/websocket';
  h.client.connect();
  await flush();
  assert.equal(h.ws.url, 'ws://127.0.0.1:9/connection/websocket');
});

test('getToken supplies the token when none is given, and is not called again on reconnect', async () => {
  let calls = 0;
  const h = makeClient({ token: null, getToken: async () => `G${++calls}` });
  const ws = await h.connect();
  assert.equal(ws.sent[0].token, 'G1');
  ws.serverClose(1006);
  (await h.reconnectNow()).open();
  assert.equal(h.ws.sent[0].token, 'G1');
  assert.equal(calls, 1);
});

test('reconnect delays use full jitter within min(cap, base * 2^attempt)', async () => {
  const h = makeClient({ backoffBase: 100, backoffCap: 1000 });
  const ws = await h.connect();
  h.setRandom(0.999999);
  ws.serverClose(1006, 'network');
  const expectedCeilings = [100, 200, 400, 800, 1000, 1000];
  for (const ceiling of expectedCeilings) {
    const [reconnecting] = h.eventsOf('reconnecting').slice(-1);
    assert.equal(reconnecting.delay, Math.floor(0.999999 * ceiling));
    assert.ok(reconnecting.delay < ceiling);
    const before = h.sockets();
    h.clock.advance(reconnecting.delay - 1);
    await flush();
    assert.equal(h.sockets(), before, 'no attempt before the delay');
    h.clock.advance(1);
    await flush();
    assert.equal(h.sockets(), before + 1, 'one attempt at the delay');
    h.ws.serverClose(1006);  // the attempt fails
  }
  // Success resets the attempt counter: the next loss starts at the base again.
  h.clock.advance(1000);
  await h.accept();
  h.setRandom(0.5);
  h.ws.serverClose(1006);
  assert.equal(h.eventsOf('reconnecting').slice(-1)[0].delay, 50);
});

test('random 0 reconnects immediately; the state stays connecting meanwhile', async () => {
  const h = makeClient();
  const ws = await h.connect();
  h.setRandom(0);
  ws.serverClose(1001, 'restart');
  assert.equal(h.client.state, 'connecting');
  assert.deepEqual(h.eventsOf('disconnected')[0], { code: 1001, reason: 'restart', reconnect: true, wasConnected: true });
  h.clock.advance(0);
  await flush();
  assert.equal(h.sockets(), 2);
});

for (const code of [1009, 4500, 4501, 4503]) {
  test(`close code ${code} is final: no reconnect`, async () => {
    const h = makeClient();
    const ws = await h.connect();
    ws.serverClose(code, 'bye');
    assert.equal(h.client.state, 'disconnected');
    assert.equal(h.eventsOf('disconnected')[0].reconnect, false);
    h.clock.advance(120_000);
    await flush();
    assert.equal(h.sockets(), 1);
  });
}

for (const code of [1001, 1006, 1008, 4000, 4001, 4002, 4004, 4005]) {
  test(`close code ${code} reconnects`, async () => {
    const h = makeClient();
    const ws = await h.connect();
    ws.serverClose(code);
    assert.equal(h.eventsOf('disconnected')[0].reconnect, true);
    await h.reconnectNow();
  });
}

test('the disconnect push decides over the close code', async () => {
  const h = makeClient();
  const ws = await h.connect();
  ws.receive({ type: 'disconnect', code: 4005, reason: 'forced', reconnect: false });
  ws.serverClose(4005, 'forced');
  assert.equal(h.client.state, 'disconnected');
  assert.deepEqual(h.eventsOf('disconnected')[0], { code: 4005, reason: 'forced', reconnect: false, wasConnected: true });
});

test('4502 fetches a new token via getToken before reconnecting', async () => {
  const tokens = ['old', 'new'];
  const h = makeClient({ token: null, getToken: async () => tokens.shift() });
  const ws = await h.connect();
  assert.equal(ws.sent[0].token, 'old');
  ws.receive({ type: 'disconnect', code: 4502, reason: 'token expired', reconnect: true });
  ws.serverClose(4502, 'token expired');
  (await h.reconnectNow()).open();
  assert.equal(h.ws.sent[0].token, 'new');
});

test('4502 without getToken stops and reports an error', async () => {
  const h = makeClient();
  const ws = await h.connect();
  ws.serverClose(4502, 'token expired');
  assert.equal(h.client.state, 'disconnected');
  assert.equal(h.eventsOf('error')[0].code, 109);
  h.clock.advance(60_000);
  await flush();
  assert.equal(h.sockets(), 1);
});

test('authenticate refused with 101 stops; 109 with getToken retries with a fresh token', async () => {
  const refused = makeClient();
  refused.client.connect();
  await flush();
  refused.ws.open();
  refused.ws.replyError(refused.ws.sent[0].id, 101, 'bad token');
  assert.equal(refused.client.state, 'disconnected');
  assert.ok(refused.ws.closedByClient, 'socket closed');
  assert.equal(refused.eventsOf('error')[0].code, 101);

  const tokens = ['stale', 'fresh'];
  const h = makeClient({ token: null, getToken: async () => tokens.shift() });
  h.client.connect();
  await flush();
  h.ws.open();
  h.ws.replyError(h.ws.sent[0].id, 109, 'token expired');
  assert.equal(h.client.state, 'connecting');
  (await h.reconnectNow()).open();
  assert.equal(h.ws.sent[0].token, 'fresh');
});

test('connect timeout when the socket never opens', async () => {
  const h = makeClient({ connectTimeout: 3000 });
  h.client.connect();
  await flush();
  h.clock.advance(2999);
  assert.equal(h.ws.closedByClient, null);
  h.clock.advance(1);
  assert.ok(h.ws.closedByClient, 'abandoned');
  assert.equal(h.eventsOf('disconnected')[0].reason, 'connect timeout');
});

test('heartbeat: pings every `ping` seconds, no frame within ping + timeout reconnects', async () => {
  const h = makeClient({ pingTimeout: 5000 });
  const ws = await h.connect({ ping: 10 });
  h.clock.advance(10_000);
  assert.equal(ws.allOf('ping').length, 1);
  ws.reply(ws.lastOf('ping').id, {});        // alive
  h.clock.advance(10_000);
  assert.equal(ws.allOf('ping').length, 2);
  assert.equal(h.client.state, 'connected');
  h.clock.advance(4999);                      // the second ping goes unanswered
  assert.equal(h.client.state, 'connected');
  h.clock.advance(1);
  assert.equal(h.client.state, 'connecting');
  assert.ok(ws.closedByClient, 'dead socket closed by the client');
  assert.equal(h.eventsOf('disconnected')[0].reason, 'heartbeat timeout');
  assert.equal(h.eventsOf('disconnected')[0].reconnect, true);
  await h.reconnectNow();
});

test('heartbeat: any frame counts as alive; pingInterval overrides the server value', async () => {
  const h = makeClient({ pingInterval: 1000, pingTimeout: 500 });
  const ws = await h.connect({ ping: 25 });
  // Pings go out at 1000, 2000, ...; some frame (not the ping reply) follows each 100 ms later.
  h.clock.advance(1000);
  for (let i = 0; i < 5; i++) {
    h.clock.advance(100);
    ws.receive({ type: 'join', channel: 'x', client: {} });
    h.clock.advance(900);
  }
  assert.equal(ws.allOf('ping').length, 6);
  assert.equal(h.client.state, 'connected');
});

test('refresh push: getToken, then a refresh command; expires updated', async () => {
  let calls = 0;
  const h = makeClient({ token: null, getToken: async () => `tok${++calls}` });
  const ws = await h.connect();
  ws.receive({ type: 'refresh', expires: 1_700_000_000 });
  await flush();
  const refresh = ws.lastOf('refresh');
  assert.equal(refresh.token, 'tok2');
  ws.reply(refresh.id, { expires: 1_700_003_600 });
  assert.equal(h.client.expires, 1_700_003_600);
  assert.deepEqual(h.eventsOf('refreshed'), [{ expires: 1_700_003_600 }]);
  assert.equal(h.client.state, 'connected');
});

test('refresh push without getToken reports an error and keeps the connection', async () => {
  const h = makeClient();
  const ws = await h.connect();
  ws.receive({ type: 'refresh', expires: 1 });
  await flush();
  assert.equal(ws.lastOf('refresh'), undefined);
  assert.equal(h.eventsOf('error').length, 1);
  assert.equal(h.client.state, 'connected');
});

test('offline event drops the connection at once; no attempts while offline; online reconnects now', async () => {
  const h = makeClient();
  const ws = await h.connect();
  h.network.goOffline();
  assert.ok(ws.closedByClient);
  assert.equal(h.client.state, 'connecting');
  assert.equal(h.eventsOf('reconnecting')[0].offline, true);
  h.clock.advance(120_000);
  await flush();
  assert.equal(h.sockets(), 1, 'no attempt while the browser says offline');
  h.network.goOnline();
  await flush();
  assert.equal(h.sockets(), 2, 'online triggers an immediate attempt');
  await h.accept();
});

test('disconnect() closes for good and rejects commands in flight', async () => {
  const h = makeClient();
  const ws = await h.connect();
  const presence = h.client.presence('chat:a');
  await flush();
  h.client.disconnect();
  await assert.rejects(presence, { code: 'disconnected' });
  assert.equal(h.client.state, 'disconnected');
  assert.deepEqual(ws.closedByClient, { code: 1000, reason: 'client disconnect' });
  assert.equal(h.eventsOf('disconnected')[0].reconnect, false);
  assert.equal(h.network.handlers, null, 'network listeners removed');
  h.clock.advance(120_000);
  await flush();
  assert.equal(h.sockets(), 1);
});

test('commands time out after commandTimeout', async () => {
  const h = makeClient({ commandTimeout: 2000 });
  await h.connect();
  const p = h.client.history('chat:a', { limit: 5 });
  await flush();
  h.clock.advance(2000);
  await assert.rejects(p, { code: 'timeout' });
});

test('a garbage frame is reported and ignored', async () => {
  const h = makeClient();
  const ws = await h.connect();
  ws.receive('not json{');
  assert.equal(h.eventsOf('error')[0].code, 'bad_frame');
  assert.equal(h.client.state, 'connected');
});

test('a connected listener may disconnect: nothing more is sent on that socket', async () => {
  const h = makeClient();
  h.client.subscribe('chat:a', {});
  h.client.on('connected', () => h.client.disconnect());
  h.client.connect();
  await flush();
  const ws = h.ws;
  ws.open();
  ws.reply(ws.sent[0].id, { client: 'c', user: 'u', ping: 1 });
  assert.equal(h.client.state, 'disconnected');
  assert.deepEqual(ws.sent.map((c) => c.type), ['authenticate']);
  h.clock.advance(60_000);
  assert.equal(ws.allOf('ping').length, 0);
});

test('a subscribe without reply within commandTimeout restarts the connection', async () => {
  const h = makeClient({ commandTimeout: 3000 });
  const ws = await h.connect();
  const sub = h.client.subscribe('chat:a', {});
  h.clock.advance(3000);
  assert.ok(ws.closedByClient);
  assert.equal(sub.state, 'subscribing', 'kept, to be sent again');
  const ws2 = await h.reconnectNow();
  await h.accept();
  assert.equal(ws2.lastOf('subscribe').channel, 'chat:a');
});

test('reconnectNow tries at once instead of waiting out the delay, and only when a reconnect is pending', async () => {
  const h = makeClient({ backoffBase: 60_000, backoffCap: 60_000 });
  assert.equal(h.client.reconnectNow(), false, 'not connected yet: nothing pending');
  const ws = await h.connect();
  assert.equal(h.client.reconnectNow(), false, 'connected: nothing pending');
  h.setRandom(0.9);
  ws.serverClose(1006, 'server gone');
  const [pending] = h.eventsOf('reconnecting');
  assert.ok(pending.delay > 50_000);
  const before = h.sockets();
  assert.equal(h.client.reconnectNow(), true);
  await flush();
  assert.equal(h.sockets(), before + 1, 'one attempt, now');
  assert.equal(h.client.reconnectAt, null, 'the delayed attempt is cancelled');
  assert.equal(h.client.reconnectNow(), false, 'connecting: nothing pending');
  await h.accept();
  assert.equal(h.client.state, 'connected');
  assert.ok(!h.clock.pendingDelays().includes(pending.delay), 'the delayed attempt\'s timer is gone');
});

test('reconnectNow after disconnect() does nothing', async () => {
  const h = makeClient();
  const ws = await h.connect();
  ws.serverClose(1006);
  h.client.disconnect();
  const before = h.sockets();
  assert.equal(h.client.reconnectNow(), false);
  await flush();
  assert.equal(h.sockets(), before);
});
