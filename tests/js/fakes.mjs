// Scripted stand-ins for the WebSocket class, the clock and the browser's
// network events, so tests/js can drive web/client/duplex.js frame by frame.

export class FakeClock {
  constructor() {
    this.time = 1_000_000;
    this.timers = new Map();  // id -> {at, fn, ms}
    this.nextId = 1;
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.time + Math.max(0, ms | 0), fn, ms });
      return id;
    };
    this.clearTimeout = (id) => { this.timers.delete(id); };
    this.now = () => this.time;
  }

  // Runs every timer due within `ms`, in time order, including ones scheduled meanwhile.
  advance(ms) {
    const end = this.time + ms;
    for (;;) {
      let next = null;
      for (const [id, t] of this.timers) {
        if (t.at <= end && (next === null || t.at < next[1].at || (t.at === next[1].at && id < next[0]))) next = [id, t];
      }
      if (!next) break;
      this.timers.delete(next[0]);
      this.time = next[1].at;
      next[1].fn();
    }
    this.time = end;
  }

  // Delays (ms) of the timers currently pending.
  pendingDelays() {
    return [...this.timers.values()].map((t) => t.ms);
  }
}

export class FakeNetwork {
  constructor() {
    this.isOnline = true;
    this.handlers = null;
  }
  online() { return this.isOnline; }
  listen(onOnline, onOffline) {
    this.handlers = { onOnline, onOffline };
    return () => { this.handlers = null; };
  }
  goOffline() { this.isOnline = false; if (this.handlers) this.handlers.onOffline(); }
  goOnline() { this.isOnline = true; if (this.handlers) this.handlers.onOnline(); }
}

// Each test gets its own class (makeFakeWebSocket) so instances do not leak between tests.
export function makeFakeWebSocket() {
  class FakeWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    static instances = [];

    constructor(url, protocol) {
      this.url = url;
      this.protocol = protocol;
      this.readyState = FakeWebSocket.CONNECTING;
      this.sent = [];            // parsed commands, in order
      this.closedByClient = null;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      FakeWebSocket.instances.push(this);
    }

    static get last() { return FakeWebSocket.instances[FakeWebSocket.instances.length - 1]; }

    send(text) {
      if (this.readyState !== FakeWebSocket.OPEN) throw new Error('InvalidStateError: not open');
      this.sent.push(JSON.parse(text));
    }

    close(code, reason) {
      this.closedByClient = { code, reason };
      this.readyState = FakeWebSocket.CLOSED;
    }

    // --- server side of the script ---
    open() {
      this.readyState = FakeWebSocket.OPEN;
      if (this.onopen) this.onopen({});
    }
    receive(obj) {
      if (this.onmessage) this.onmessage({ data: typeof obj === 'string' ? obj : JSON.stringify(obj) });
    }
    reply(id, result) { this.receive({ type: 'reply', id, result }); }
    replyError(id, code, message = 'error') { this.receive({ type: 'reply', id, error: { code, message } }); }
    serverClose(code, reason = '') {
      this.readyState = FakeWebSocket.CLOSED;
      if (this.onclose) this.onclose({ code, reason, wasClean: code !== 1006 });
    }
    // The last command of a type sent by the client.
    lastOf(type) {
      for (let i = this.sent.length - 1; i >= 0; i--) if (this.sent[i].type === type) return this.sent[i];
      return undefined;
    }
    allOf(type) { return this.sent.filter((c) => c.type === type); }
  }
  return FakeWebSocket;
}

export const flush = () => new Promise((resolve) => setImmediate(resolve));
