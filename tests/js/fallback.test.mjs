// Transport fallback of web/client/duplex.js: WebSocket, then SSE, then long-polling,
// against scripted EventSource and fetch fakes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flush } from './fakes.mjs';
import { makeClient } from './harness.mjs';

function makeFakeEventSource() {
  class FakeEventSource {
    static instances = [];
    constructor(url) {
      this.url = url;
      this.closed = false;
      this.listeners = new Map();
      this.onmessage = this.onerror = null;
      FakeEventSource.instances.push(this);
    }
    static get last() { return FakeEventSource.instances[FakeEventSource.instances.length - 1]; }
    addEventListener(type, fn) { this.listeners.set(type, fn); }
    close() { this.closed = true; }
    // --- server side ---
    session(id) { this.listeners.get('session')({ data: JSON.stringify({ session: id }) }); }
    receive(obj, id) { this.onmessage({ data: JSON.stringify(obj), lastEventId: String(id) }); }
    fail() { this.onerror({}); }
  }
  return FakeEventSource;
}

// fetch calls stay pending until the test answers them.
function makeFakeFetch() {
  const calls = [];
  const fetch = (url, init = {}) => new Promise((resolve, reject) => {
    calls.push({
      url,
      method: init.method || 'GET',
      body: init.body,
      respond(status, body) { resolve({ ok: status >= 200 && status < 300, status, json: async () => body }); },
      fail(message) { reject(new Error(message)); },
    });
  });
  const pending = (pred) => calls.filter((c) => !c.answered && pred(c));
  return {
    fetch,
    calls,
    // The oldest unanswered call matching; marks it answered.
    take(pred) {
      const c = pending(pred)[0];
      assert.ok(c, 'expected a matching fetch call');
      c.answered = true;
      return c;
    },
  };
}

function lines(body) { return body.split('\n').map((l) => JSON.parse(l)); }

async function nextAttempt(h) {
  const pending = h.eventsOf('reconnecting').slice(-1)[0];
  assert.ok(pending, 'a reconnect is scheduled');
  h.clock.advance(pending.delay);
  await flush();
}

test('default order: a WebSocket that never opens falls back to SSE, which carries the session', async () => {
  const EventSource = makeFakeEventSource();
  const f = makeFakeFetch();
  const h = makeClient({ EventSource, fetch: f.fetch, fallbackTimeout: 3000 });
  h.client.connect();
  await flush();
  assert.equal(h.sockets(), 1);
  assert.equal(h.client.transport, 'websocket');
  h.clock.advance(3000);  // no frame within the fallback timeout
  await nextAttempt(h);
  assert.equal(h.sockets(), 1, 'no second WebSocket');
  const es = EventSource.last;
  assert.equal(es.url, 'http://127.0.0.1:9/connection/sse');
  assert.ok(!es.url.includes('T1'), 'the token never goes into the URL');
  es.session('s1');
  await flush();
  const post = f.take((c) => c.method === 'POST');
  assert.equal(post.url, 'http://127.0.0.1:9/connection/sse/s1');
  const [auth] = lines(post.body);
  assert.equal(auth.type, 'authenticate');
  assert.equal(auth.token, 'T1');
  post.respond(202, { ok: true });
  es.receive({ type: 'reply', id: auth.id, result: { client: 'c1', user: 'u1', ping: 25 } }, 2);
  assert.equal(h.client.state, 'connected');
  assert.equal(h.client.transport, 'sse');
  assert.equal(h.eventsOf('connected')[0].transport, 'sse');

  // Commands go up in order, one POST at a time; what queues meanwhile goes in the next one.
  await flush();
  h.client.publish('chat:a', { n: 1 }).catch(() => {});
  await flush();
  const p1 = f.take((c) => c.method === 'POST');
  assert.deepEqual(lines(p1.body).map((c) => c.data.n), [1]);
  h.client.publish('chat:a', { n: 2 }).catch(() => {});
  h.client.publish('chat:a', { n: 3 }).catch(() => {});
  await flush();
  assert.equal(f.calls.filter((c) => !c.answered).length, 0, 'the next POST waits for the first');
  p1.respond(202, { ok: true });
  await flush();
  await flush();
  assert.deepEqual(lines(f.take((c) => c.method === 'POST').body).map((c) => c.data.n), [2, 3]);

  // A dropped stream resumes the same session from the last event id.
  es.fail();
  const resumed = EventSource.last;
  assert.notEqual(resumed, es);
  assert.equal(resumed.url, 'http://127.0.0.1:9/connection/sse?session=s1&last_event_id=2');
  assert.equal(h.client.state, 'connected');
});

test('WebSocket and SSE both failing end in long-polling', async () => {
  const EventSource = makeFakeEventSource();
  const f = makeFakeFetch();
  const h = makeClient({ EventSource, fetch: f.fetch });
  h.client.connect();
  await flush();
  h.ws.serverClose(1006);  // the proxy refused the upgrade
  await nextAttempt(h);
  EventSource.last.fail();  // the stream is refused too
  await nextAttempt(h);
  const open = f.take((c) => c.url.endsWith('/connection/poll/open'));
  assert.equal(open.method, 'POST');
  open.respond(200, { session: 'p1' });
  await flush();
  await flush();
  const auth = lines(f.take((c) => c.method === 'POST' && c.url.endsWith('/connection/poll/p1')).body)[0];
  assert.equal(auth.type, 'authenticate');
  const poll = f.take((c) => c.method === 'GET');
  assert.equal(poll.url, 'http://127.0.0.1:9/connection/poll/p1?last=0');
  poll.respond(200, [{ id: 1, data: { type: 'reply', id: auth.id, result: { client: 'c1', user: 'u1' } } }]);
  await flush();
  await flush();
  assert.equal(h.client.state, 'connected');
  assert.equal(h.client.transport, 'longpoll');
  const next = f.take((c) => c.method === 'GET');
  assert.equal(next.url, 'http://127.0.0.1:9/connection/poll/p1?last=1', 'the next poll acknowledges what arrived');
});

test('transport: "sse" forces SSE; a transport that worked is kept across reconnects', async () => {
  const EventSource = makeFakeEventSource();
  const f = makeFakeFetch();
  const h = makeClient({ EventSource, fetch: f.fetch, transport: 'sse' });
  h.client.connect();
  await flush();
  assert.equal(h.sockets(), 0, 'no WebSocket at all');
  EventSource.last.session('s1');
  await flush();
  const auth = lines(f.take((c) => c.method === 'POST').body)[0];
  EventSource.last.receive({ type: 'reply', id: auth.id, result: { client: 'c1' } }, 1);
  assert.equal(h.client.transport, 'sse');

  // Default list: after a WebSocket success, later failures stay on WebSocket.
  const d = makeClient({ EventSource: makeFakeEventSource(), fetch: f.fetch });
  const ws = await d.connect();
  ws.serverClose(1006);
  await nextAttempt(d);
  d.ws.serverClose(1006);
  await nextAttempt(d);
  assert.equal(d.sockets(), 3);
  assert.equal(d.client.transport, 'websocket');
});

test('SSE: replies come in the POST response; messages that overtake the subscribe reply are buffered, delivered once, in order', async () => {
  const EventSource = makeFakeEventSource();
  const f = makeFakeFetch();
  const h = makeClient({ EventSource, fetch: f.fetch, transport: 'sse' });
  h.client.connect();
  await flush();
  const es = EventSource.last;
  es.session('s1');
  await flush();
  const authPost = f.take((c) => c.method === 'POST');
  const auth = lines(authPost.body)[0];
  authPost.respond(200, { replies: [{ type: 'reply', id: auth.id, result: { client: 'c1', user: 'u1' } }] });
  await flush();
  await flush();
  assert.equal(h.client.state, 'connected');
  assert.equal(h.client.transport, 'sse');

  const got = [];
  const sub = h.client.subscribe('chat:a', { onMessage: (m) => got.push(m.offset) });
  await flush();
  const subPost = f.take((c) => c.method === 'POST');
  const cmd = lines(subPost.body)[0];
  assert.equal(cmd.type, 'subscribe');
  // The stream is faster than the POST's response: 5 (already covered by the reply's position), 6 and 7 arrive first.
  es.receive({ type: 'message', channel: 'chat:a', epoch: 'e1', offset: 5, data: {} }, 3);
  es.receive({ type: 'message', channel: 'chat:a', epoch: 'e1', offset: 6, data: {} }, 4);
  es.receive({ type: 'message', channel: 'chat:a', epoch: 'e1', offset: 7, data: {} }, 5);
  assert.deepEqual(got, []);
  assert.equal(sub.state, 'subscribing');
  subPost.respond(200, { replies: [{ type: 'reply', id: cmd.id, result: { channel: 'chat:a', epoch: 'e1', offset: 5, recoverable: true } }] });
  await flush();
  await flush();
  assert.equal(sub.state, 'subscribed');
  es.receive({ type: 'message', channel: 'chat:a', epoch: 'e1', offset: 8, data: {} }, 6);
  assert.deepEqual(got, [6, 7, 8]);

  // A publish resolves from the POST's response.
  const published = h.client.publish('chat:a', { n: 1 });
  await flush();
  const pubPost = f.take((c) => c.method === 'POST');
  const pub = lines(pubPost.body)[0];
  pubPost.respond(200, { replies: [{ type: 'reply', id: pub.id, result: { epoch: 'e1', offset: 9 } }] });
  assert.deepEqual(await published, { epoch: 'e1', offset: 9, duplicate: false });

  // A reply the hub did not have in time ("pending") comes on the stream later.
  const history = h.client.history('chat:a', { limit: 1 });
  await flush();
  await flush();
  const histPost = f.take((c) => c.method === 'POST');
  const hist = lines(histPost.body)[0];
  histPost.respond(200, { replies: [], pending: [hist.id] });
  await flush();
  es.receive({ type: 'reply', id: hist.id, result: { epoch: 'e1', offset: 9, publications: [] } }, 7);
  assert.equal((await history).offset, 9);
});

test('long-polling: replies come in the POST response, pushes in the polls; pushes before the subscribe reply are delivered once', async () => {
  const f = makeFakeFetch();
  const h = makeClient({ fetch: f.fetch, transport: 'longpoll' });
  const got = [];
  h.client.subscribe('chat:b', { onMessage: (m) => got.push([m.offset, m.recovered]) });
  h.client.connect();
  await flush();
  f.take((c) => c.url.endsWith('/connection/poll/open')).respond(200, { session: 'p1' });
  await flush();
  await flush();
  const authPost = f.take((c) => c.method === 'POST');
  const auth = lines(authPost.body)[0];
  authPost.respond(200, { replies: [{ type: 'reply', id: auth.id, result: { client: 'c1', user: 'u1' } }] });
  await flush();
  await flush();
  assert.equal(h.client.state, 'connected');
  const subPost = f.take((c) => c.method === 'POST');
  const cmd = lines(subPost.body)[0];
  assert.equal(cmd.type, 'subscribe');
  // A poll returns live 11 and 12 before the subscribe reply (which recovers 10 and 11).
  const poll = f.take((c) => c.method === 'GET');
  poll.respond(200, [
    { id: 1, data: { type: 'message', channel: 'chat:b', epoch: 'e', offset: 11, data: {} } },
    { id: 2, data: { type: 'message', channel: 'chat:b', epoch: 'e', offset: 12, data: {} } },
  ]);
  await flush();
  await flush();
  assert.deepEqual(got, []);
  subPost.respond(200, { replies: [{ type: 'reply', id: cmd.id, result: { channel: 'chat:b', epoch: 'e', offset: 11, recoverable: true } }] });
  await flush();
  await flush();
  assert.deepEqual(got, [[12, false]], 'offset 11 is covered by the reply position, 12 comes once');
  assert.equal(f.take((c) => c.method === 'GET').url, 'http://127.0.0.1:9/connection/poll/p1?last=2');
});
