// A Duplex client wired to fakes, plus the steps every scripted test repeats.
import assert from 'node:assert/strict';
import { Duplex } from '../../web/client/duplex.js';
import { FakeClock, FakeNetwork, makeFakeWebSocket, flush } from './fakes.mjs';

export function makeClient(options = {}) {
  const clock = new FakeClock();
  const network = new FakeNetwork();
  const WebSocket = makeFakeWebSocket();
  const events = [];
  let random = 0.5;
  const client = new Duplex('ws://127.0.0.1:9/connection/websocket', {
    token: 'T1',
    WebSocket,
    timers: clock,
    now: clock.now,
    random: () => random,
    network,
    ...options,
  });
  for (const name of ['state', 'connected', 'disconnected', 'reconnecting', 'error', 'refreshed']) {
    client.on(name, (arg) => events.push([name, arg]));
  }
  const h = {
    client, clock, network, WebSocket, events,
    setRandom(r) { random = r; },
    get ws() { return WebSocket.last; },
    sockets() { return WebSocket.instances.length; },
    eventsOf(name) { return events.filter((e) => e[0] === name).map((e) => e[1]); },

    // Opens the newest socket and answers its authenticate; returns the socket.
    async accept({ ping = 25, client: clientId = 'c1', user = 'u1' } = {}) {
      await flush();
      const ws = WebSocket.last;
      assert.ok(ws, 'a socket was created');
      ws.open();
      const auth = ws.sent[0];
      assert.equal(auth.type, 'authenticate');
      ws.reply(auth.id, { client: clientId, user, node: 'n1', ping, expires: 2_000_000_000 });
      assert.equal(client.state, 'connected');
      return ws;
    },

    // Lets the pending reconnect delay elapse; returns the new socket (not yet open).
    async reconnectNow() {
      const pending = h.eventsOf('reconnecting').slice(-1)[0];
      assert.ok(pending, 'a reconnect is scheduled');
      const before = h.sockets();
      h.clock.advance(pending.delay);
      await flush();
      assert.equal(h.sockets(), before + 1, 'exactly one new attempt');
      return WebSocket.last;
    },

    async connect(opts) {
      client.connect();
      return h.accept(opts);
    },

    // Answers the newest subscribe for `channel` on `ws`.
    answerSubscribe(ws, channel, result) {
      const cmd = ws.sent.filter((c) => c.type === 'subscribe' && c.channel === channel).pop();
      assert.ok(cmd, `subscribe ${channel} sent`);
      ws.reply(cmd.id, { channel, recoverable: true, ...result });
      return cmd;
    },
  };
  return h;
}

export function message(channel, epoch, offset, data) {
  return { type: 'message', channel, epoch, offset, data: data === undefined ? { n: offset } : data };
}
