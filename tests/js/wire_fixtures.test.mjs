// duplex.js over the duplex.v1 messages of tests/wire/duplex.v1.json, the
// file tests/unit/client/test_wire_fixtures.cpp runs the server's codec and the C++
// client over: every command duplex.js sends is the fixture's (as JSON, `id`
// aside), and every server message yields what the fixture's `client` says.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { flush } from './fakes.mjs';
import { makeClient } from './harness.mjs';

const fixtures = JSON.parse(readFileSync(new URL('../wire/duplex.v1.json', import.meta.url), 'utf8'));

function withoutId(command) {
  const { id, ...rest } = command;
  return rest;
}

// What a client surfaced, in the fixtures' vocabulary (see `client` there).
function observer() {
  const seen = {};
  const messages = [];
  const defined = (o) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== null));
  return {
    seen,
    observe(key, value) { seen[key] = value; },
    clear() {
      for (const k of Object.keys(seen)) delete seen[k];
      messages.length = 0;
    },
    result() { return messages.length ? { ...seen, messages: [...messages] } : { ...seen }; },
    handlers: {
      onMessage: (m) => messages.push(defined({ channel: m.channel, epoch: m.epoch, offset: m.offset, data: m.data, info: m.info })),
      onSubscribed: (s) => seen.subscribed = { channel: s.channel, epoch: s.epoch, offset: s.offset, recovered: s.recovered },
      onJoin: (j) => seen.join = defined(j),
      onLeave: (l) => seen.leave = defined(l),
      onUnsubscribed: (u) => seen.unsubscribed = { channel: u.channel, code: u.code, reason: u.reason },
    },
  };
}

// A client under test: the harness plus an observer and the steps the
// drivers share.
function clientUnderTest(options = {}) {
  const tokens = [];
  const h = makeClient({
    ...options,
    // The first connection uses the `token` option (T1); the provider serves refreshes.
    getToken: options.withTokenProvider ? async () => { tokens.push('asked'); return 'T2'; } : undefined,
  });
  const o = observer();
  h.client.on('connected', (c) => o.observe('connected', c));
  h.client.on('disconnected', (d) => o.observe('disconnect', { code: d.code, reason: d.reason, reconnect: d.reconnect }));
  h.client.on('refreshed', (r) => o.observe('refreshed', { expires: r.expires }));
  h.client.on('error', (e) => o.observe('client error', e.message));
  const c = {
    h, o, tokens,
    async open() {
      h.client.connect();
      await flush();
      h.ws.open();
      await flush();
      return h.ws.lastOf('authenticate');
    },
    async connect() {
      const auth = await c.open();
      h.ws.reply(auth.id, { client: 'c1', user: 'alice', node: 'n1', ping: 25 });
      await flush();
      o.clear();
    },
    async subscribed() {
      await c.connect();
      c.sub = h.client.subscribe('chat', o.handlers);
      await flush();
      h.answerSubscribe(h.ws, 'chat', { epoch: 'E1', offset: 7 });
      o.clear();
    },
    // Feeds `frame` (exact text) as the answer to `command` (its id replaced).
    replyTo(command, frame) {
      h.ws.receive(frame.replace(/"id":\d+/, `"id":${command.id}`));
    },
  };
  return c;
}

// How duplex.js's API makes each command fixture; each returns the command sent.
const drivers = {
  'authenticate': async (c) => c.open(),
  'subscribe': async (c) => {
    await c.connect();
    c.sub = c.h.client.subscribe('chat', c.o.handlers);
    await flush();
    return c.h.ws.lastOf('subscribe');
  },
  'subscribe with recovery': async (c) => {
    await c.subscribed();
    c.h.ws.serverClose(1006);
    const ws = await c.h.reconnectNow();
    ws.open();
    ws.reply(ws.lastOf('authenticate').id, { client: 'c1', user: 'alice', node: 'n1', ping: 25 });
    await flush();
    c.o.clear();
    return ws.lastOf('subscribe');
  },
  'publish with an idempotency key': async (c) => {
    await c.subscribed();
    c.h.client.publish('chat', { text: 'hi', n: [1, 2] }, { idempotencyKey: 'k-1' }).then((r) => c.o.observe('published', r));
    await flush();
    return c.h.ws.lastOf('publish');
  },
  'presence': async (c) => {
    await c.subscribed();
    c.h.client.presence('chat').then(
      (r) => c.o.observe('presence', r.clients),
      (e) => c.o.observe('error', { code: e.code, message: e.message }));
    await flush();
    return c.h.ws.lastOf('presence');
  },
  'history since, limit, reverse': async (c) => {
    await c.subscribed();
    c.h.client.history('chat', { limit: 10, since: { epoch: 'E1', offset: 3 }, reverse: true })
      .then((r) => c.o.observe('history', r));
    await flush();
    return c.h.ws.lastOf('history');
  },
  'unsubscribe': async (c) => {
    await c.subscribed();
    c.sub.unsubscribe().then(() => c.o.observe('replied', {}));
    await flush();
    c.o.clear();  // duplex.js tells the application at once; the reply only settles the promise
    return c.h.ws.lastOf('unsubscribe');
  },
  'refresh': async (c) => {
    await c.connect();
    c.h.ws.receive('{"type":"refresh","expires":2000000000}');
    await flush();
    await flush();
    return c.h.ws.lastOf('refresh');
  },
  'ping': async (c) => {
    await c.connect();
    c.h.clock.advance(25_000);
    await flush();
    return c.h.ws.lastOf('ping');
  },
};

const needsTokenProvider = (name) => name === 'refresh' || name === 'refresh push';

test('duplex.js sends every command of the fixtures as written', async () => {
  for (const fixture of fixtures.commands) {
    const driver = drivers[fixture.name];
    assert.ok(driver, `a driver for "${fixture.name}" in ${import.meta.url}`);
    const c = clientUnderTest({ withTokenProvider: needsTokenProvider(fixture.name) });
    const sent = await driver(c);
    assert.ok(sent, `${fixture.name}: a command was sent`);
    assert.deepEqual(withoutId(sent), withoutId(fixture.frame), fixture.name);
  }
});

// The heartbeat period a connection runs with: the first ping's delay.
async function pingSeconds(c) {
  for (let s = 1; s <= 120; s++) {
    c.h.clock.advance(1000);
    await flush();
    if (c.h.ws.lastOf('ping')) return s;
  }
  return 0;
}

test('duplex.js reads every server message of the fixtures as written', async () => {
  for (const fixture of fixtures.server) {
    const name = fixture.name;
    const c = clientUnderTest({ withTokenProvider: needsTokenProvider(name) || fixture.answers === 'refresh' });
    if (name === 'connected reply' || name === 'connected push') {
      const auth = await c.open();
      if (name === 'connected reply') {
        c.replyTo(auth, fixture.frame);
      } else {
        // A token in the URL: the server greets at once, then answers the
        // client's authenticate with "already authenticated".
        c.h.ws.receive(fixture.frame);
        c.h.ws.replyError(auth.id, 107, 'already authenticated');
      }
      await flush();
      assert.equal(c.h.client.state, 'connected', name);
      const e = c.o.seen.connected;
      assert.ok(e, `${name}: connected`);
      const connected = { client: e.client, user: e.user, node: e.node, ping: await pingSeconds(c) };
      if (e.expires != null) connected.expires = e.expires;
      c.o.observe('connected', connected);
    } else if (fixture.answers) {
      const driver = drivers[fixture.answers];
      assert.ok(driver, `${name} answers an unknown command "${fixture.answers}"`);
      const sent = await driver(c);
      c.o.clear();
      c.replyTo(sent, fixture.frame);
      await flush();
    } else if (needsTokenProvider(name)) {
      await c.connect();
      const asked = c.tokens.length;
      c.h.ws.receive(fixture.frame);
      await flush();
      if (c.tokens.length > asked) c.o.observe('asks_for_a_token', true);
      await flush();
      delete c.o.seen.refreshed;  // the refresh it then sends is another fixture's
    } else {
      await c.subscribed();
      const before = c.h.ws.allOf('subscribe').length;
      c.h.ws.receive(fixture.frame);
      await flush();
      if (name === 'disconnect push') {
        c.h.ws.serverClose(1006);  // the close frame lost: the push alone says why
        await flush();
      }
      const subscribes = c.h.ws.allOf('subscribe');
      if (subscribes.length > before) c.o.observe('resubscribes', withoutId(subscribes[subscribes.length - 1]));
    }
    assert.deepEqual(c.o.result(), fixture.client, name);
  }
});
