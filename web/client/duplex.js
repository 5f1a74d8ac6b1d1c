// duplex.js — client for the duplex hub (wire protocol duplex.v1, docs/PROTOCOL.md).
// A dependency-free ES module for browsers and Node 20+. Usage: docs/CLIENT-JS.md.

const SUBPROTOCOL = 'duplex.v1';

// Close codes after which reconnecting cannot help (PROTOCOL.md, disconnect codes).
const NO_RECONNECT_CODES = new Set([1009, 4500, 4501, 4503]);
const TOKEN_EXPIRED_CLOSE = 4502;
const NETWORK_ERROR_CLOSE = 1006;
const NORMAL_CLOSE = 1000;

// Hub error codes in replies (PROTOCOL.md, error codes).
export const ErrorCode = Object.freeze({
  INTERNAL: 100,
  UNAUTHORIZED: 101,
  UNKNOWN_CHANNEL: 102,
  PERMISSION_DENIED: 103,
  UNKNOWN_COMMAND: 104,
  ALREADY_SUBSCRIBED: 105,
  LIMIT_EXCEEDED: 106,
  BAD_REQUEST: 107,
  NOT_AVAILABLE: 108,
  TOKEN_EXPIRED: 109,
  TOO_MANY_REQUESTS: 110,
  NOT_SUBSCRIBED: 111,
  EPOCH_MISMATCH: 112,
  UNAVAILABLE: 113,
  // Raised by this client, never sent by the hub.
  TIMEOUT: 'timeout',
  DISCONNECTED: 'disconnected',
  NOT_CONNECTED: 'not_connected',
  QUEUE_FULL: 'queue_full',
  BAD_FRAME: 'bad_frame',
  TOKEN_FETCH: 'token_fetch',
});

const DEFAULTS = Object.freeze({
  token: null,
  getToken: null,
  WebSocket: null,
  EventSource: null,
  fetch: null,
  transports: ['websocket', 'sse', 'longpoll'],  // tried in order until one connects
  transport: null,      // force one transport by name
  fallbackTimeout: 5000,  // ms a transport may take to connect before the next is tried
  backoffBase: 500,
  backoffCap: 20000,
  pingInterval: null,   // ms; null: the `ping` seconds the server announces
  pingTimeout: 10000,   // ms a ping may go unanswered before the connection counts as dead
  connectTimeout: 10000,
  commandTimeout: 10000,
  maxQueued: 1000,
  maxBuffered: 10000,   // pushes held for a channel while its subscribe is in flight
  debug: false,
  // Injection points for tests and unusual hosts.
  timers: null,         // {setTimeout, clearTimeout}
  now: null,            // () => ms
  random: null,         // () => [0, 1)
  network: undefined,   // {online(), listen(onOnline, onOffline) => stop}; null disables
});

export class DuplexError extends Error {
  constructor(code, message, details) {
    super(message);
    this.name = 'DuplexError';
    this.code = code;
    if (details) Object.assign(this, details);
  }
}

// ---------------------------------------------------------------------------
// Transports. Each carries duplex.v1 JSON texts both ways behind one small
// interface, so SSE or long-polling can be added next to WebSocket:
//   open({onOpen(), onText(text), onClose({code, reason})})
//   send(text)   — throws if the transport cannot take it
//   close(code, reason) — after this no handler is called again
// onClose fires exactly once unless close() was called first.

function websocketTransport(url, options) {
  const WebSocketImpl = options.WebSocket || globalThis.WebSocket;
  if (typeof WebSocketImpl !== 'function') {
    throw new DuplexError(ErrorCode.BAD_REQUEST,
      'no WebSocket implementation: pass options.WebSocket (e.g. the ws package) on Node < 22');
  }
  let socket = null;
  let handlers = null;
  const decoder = typeof TextDecoder === 'function' ? new TextDecoder() : null;
  const toText = (data) => {
    if (typeof data === 'string') return data;
    if (decoder && (data instanceof ArrayBuffer || ArrayBuffer.isView(data))) return decoder.decode(data);
    return String(data);
  };
  const finish = (code, reason) => {
    const h = handlers;
    handlers = null;
    if (h) h.onClose({ code, reason });
  };
  return {
    name: 'websocket',
    open(h) {
      handlers = h;
      try {
        socket = new WebSocketImpl(wsUrl(url), SUBPROTOCOL);
      } catch (err) {
        Promise.resolve().then(() => finish(NETWORK_ERROR_CLOSE, String((err && err.message) || err)));
        return;
      }
      socket.onopen = () => { if (handlers) handlers.onOpen(); };
      socket.onmessage = (event) => { if (handlers) handlers.onText(toText(event.data)); };
      socket.onerror = () => {};  // a close event always follows an error
      socket.onclose = (event) => finish(event.code || NETWORK_ERROR_CLOSE, event.reason || '');
    },
    send(text) {
      socket.send(text);
    },
    close(code, reason) {
      handlers = null;
      if (!socket) return;
      socket.onopen = socket.onmessage = socket.onclose = null;
      try {
        socket.close(code, reason);
      } catch {
        try { socket.close(); } catch { /* already closed */ }
      }
    },
  };
}

// The hub's HTTP base (http[s]://host[:port]) from the client URL.
function httpBase(url) {
  const u = String(url).replace(/^ws(s?):\/\//i, 'http$1://');
  const m = /^(https?:\/\/[^/?#]+)/i.exec(u);
  return m ? m[1] : '';
}

function fetchImpl(options) {
  const f = options.fetch || globalThis.fetch;
  if (typeof f !== 'function') throw new DuplexError(ErrorCode.BAD_REQUEST, 'no fetch implementation: pass options.fetch');
  return options.fetch ? f : f.bind(globalThis);
}

// Commands go up as POSTs, one JSON text per line, one request at a time so
// the hub sees them in order. The response carries their replies
// ({"replies":[...]}, in reply order); a reply the hub did not have in time
// ("pending" ids) comes later on the stream or in a poll, like pushes.
// Pushes may therefore overtake a reply (a channel's messages before its
// subscribe reply): the client buffers them per subscription.
function commandPoster(doFetch, urlOf, onReply, onFail) {
  let queue = [];
  let busy = false;
  const pump = () => {
    if (busy || queue.length === 0) return;
    busy = true;
    const body = queue.join('\n');
    queue = [];
    doFetch(urlOf(), { method: 'POST', body, headers: { 'Content-Type': 'text/plain' } }).then(async (res) => {
      if (!res.ok) {
        busy = false;
        return onFail(`command POST failed: ${res.status}`);
      }
      let answer = null;
      if (res.status === 200) {
        try {
          answer = await res.json();
        } catch (err) {
          busy = false;
          return onFail(`command POST answer unreadable: ${(err && err.message) || err}`);
        }
      }
      busy = false;
      if (answer && Array.isArray(answer.replies)) for (const reply of answer.replies) onReply(reply);
      pump();
    }, (err) => {
      busy = false;
      onFail(`command POST failed: ${(err && err.message) || err}`);
    });
  };
  return (text) => { queue.push(text); pump(); };
}

// Server-Sent Events down (pushes), POST up (commands; replies in the POST's
// response). A dropped stream resumes the session with
// the last event id (the hub keeps recent events for a grace period).
function sseTransport(url, options) {
  const EventSourceImpl = options.EventSource || globalThis.EventSource;
  if (typeof EventSourceImpl !== 'function') throw new DuplexError(ErrorCode.BAD_REQUEST, 'no EventSource implementation');
  const doFetch = fetchImpl(options);
  const base = httpBase(url);
  let handlers = null;
  let source = null;
  let session = null;
  let lastId = null;
  let resumes = 0;
  const finish = (code, reason) => {
    const h = handlers;
    handlers = null;
    if (source) source.close();
    if (h) h.onClose({ code, reason });
  };
  const post = commandPoster(doFetch, () => `${base}/connection/sse/${session}`,
    (reply) => { if (handlers) handlers.onText(JSON.stringify(reply)); },
    (why) => finish(NETWORK_ERROR_CLOSE, why));
  const start = (target) => {
    let sawSession = false;
    source = new EventSourceImpl(target);
    source.addEventListener('session', (event) => {
      sawSession = true;
      resumes = 0;
      if (session) return;
      session = JSON.parse(event.data).session;
      if (handlers) handlers.onOpen();
    });
    source.onmessage = (event) => {
      if (event.lastEventId) lastId = event.lastEventId;
      if (handlers) handlers.onText(event.data);
    };
    source.onerror = () => {
      if (!handlers) return;
      source.close();
      // Resume once per drop; a session the hub no longer knows ends the transport.
      if (!session || !sawSession && resumes > 0) return finish(NETWORK_ERROR_CLOSE, 'event stream failed');
      resumes += 1;
      const last = lastId ? `&last_event_id=${encodeURIComponent(lastId)}` : '';
      start(`${base}/connection/sse?session=${session}${last}`);
    };
  };
  return {
    name: 'sse',
    open(h) {
      handlers = h;
      start(`${base}/connection/sse`);
    },
    send(text) {
      if (!session) throw new Error('not open');
      post(text);
    },
    close() {
      handlers = null;
      if (source) source.close();
    },
  };
}

// Long-polling: each GET returns the events after `last` or waits for one.
function longpollTransport(url, options) {
  const doFetch = fetchImpl(options);
  const base = httpBase(url);
  let handlers = null;
  let session = null;
  let last = 0;
  const finish = (code, reason) => {
    const h = handlers;
    handlers = null;
    if (h) h.onClose({ code, reason });
  };
  const post = commandPoster(doFetch, () => `${base}/connection/poll/${session}`,
    (reply) => { if (handlers) handlers.onText(JSON.stringify(reply)); },
    (why) => finish(NETWORK_ERROR_CLOSE, why));
  const poll = () => {
    if (!handlers) return;
    doFetch(`${base}/connection/poll/${session}?last=${last}`).then(async (res) => {
      if (!handlers) return;
      if (!res.ok) return finish(NETWORK_ERROR_CLOSE, `poll failed: ${res.status}`);
      const events = await res.json();
      for (const e of events) {
        if (!handlers) return;
        last = e.id;
        handlers.onText(JSON.stringify(e.data));
      }
      poll();
    }, (err) => finish(NETWORK_ERROR_CLOSE, `poll failed: ${(err && err.message) || err}`));
  };
  return {
    name: 'longpoll',
    open(h) {
      handlers = h;
      doFetch(`${base}/connection/poll/open`, { method: 'POST' }).then(async (res) => {
        if (!handlers) return;
        if (!res.ok) return finish(NETWORK_ERROR_CLOSE, `poll open failed: ${res.status}`);
        session = (await res.json()).session;
        if (!handlers) return;
        handlers.onOpen();
        poll();
      }, (err) => finish(NETWORK_ERROR_CLOSE, `poll open failed: ${(err && err.message) || err}`));
    },
    send(text) {
      if (!session) throw new Error('not open');
      post(text);
    },
    close() {
      handlers = null;
    },
  };
}

const TRANSPORTS = { websocket: websocketTransport, sse: sseTransport, longpoll: longpollTransport };

function wsUrl(url) {
  return String(url).replace(/^http(s?):\/\//i, 'ws$1://');
}

// The browser's view of the network (online/offline events), or null on Node.
function browserNetwork() {
  const g = globalThis;
  if (typeof g.addEventListener !== 'function' || !g.navigator || !('onLine' in g.navigator)) return null;
  return {
    online: () => g.navigator.onLine !== false,
    listen(onOnline, onOffline) {
      g.addEventListener('online', onOnline);
      g.addEventListener('offline', onOffline);
      return () => {
        g.removeEventListener('online', onOnline);
        g.removeEventListener('offline', onOffline);
      };
    },
  };
}

function randomKey() {
  const bytes = new Uint8Array(16);
  const c = globalThis.crypto;
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

// ---------------------------------------------------------------------------

export class Subscription {
  constructor(client, channel, options) {
    this.client = client;
    this.channel = channel;
    // 'subscribing' (waiting for the hub), 'subscribed', 'unsubscribed' (ended for good).
    this.state = 'subscribing';
    this.epoch = null;       // last position seen: recovery starts after it
    this.offset = null;
    this.recoverable = false;
    this._handlers = options;
    this._token = options.token || null;
    this._buffer = [];       // pushes that arrived before the subscribe reply
    this._waiters = [];
  }

  // Resolves once subscribed (immediately if it is); rejects if the subscription fails.
  ready() {
    if (this.state === 'subscribed') return Promise.resolve(this);
    if (this.state === 'unsubscribed') {
      return Promise.reject(new DuplexError(ErrorCode.NOT_SUBSCRIBED, `not subscribed to ${this.channel}`));
    }
    return new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
  }

  unsubscribe() { return this.client._unsubscribe(this); }
  presence() { return this.client.presence(this.channel); }
  history(options) { return this.client.history(this.channel, options); }
  publish(data, options) { return this.client.publish(this.channel, data, options); }

  _settle(error) {
    const waiters = this._waiters;
    this._waiters = [];
    for (const w of waiters) error ? w.reject(error) : w.resolve(this);
  }
}

export class Duplex {
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    const o = this.options;
    this._setTimeout = o.timers ? o.timers.setTimeout : (fn, ms) => setTimeout(fn, ms);
    this._clearTimeout = o.timers ? o.timers.clearTimeout : (t) => clearTimeout(t);
    this._now = o.now || (() => Date.now());
    this._random = o.random || Math.random;
    this._network = o.network === undefined ? browserNetwork() : o.network;

    this.state = 'disconnected';   // disconnected | connecting | connected
    this.transport = null;         // name of the transport in use: 'websocket', 'sse' or 'longpoll'
    this.clientId = null;          // from the authenticate reply
    this.user = null;
    this.node = null;
    this.expires = null;
    this.reconnectAt = null;       // ms timestamp of the next attempt while waiting, else null

    this._token = o.token;
    this._wanted = false;          // connect() called and not disconnect()ed or refused
    this._conn = null;             // the current connection attempt
    this._attempt = 0;             // reconnect attempts since the last success
    this._reconnectTimer = null;
    this._stopNetwork = null;
    this._listeners = new Map();
    this._subs = new Map();        // channel -> Subscription
    this._pending = new Map();     // command id -> {conn, onReply, onError, onLost, timer}
    this._nextId = 1;
    this._outbox = [];             // publishes waiting for a connection, in publish order
    this._publishSeq = 0;
    this._connectWaiters = [];
    this._transportIndex = 0;      // into _transportList(): the one to try next
    this._everConnected = false;   // once a transport worked, it is kept
  }

  // --- events -------------------------------------------------------------

  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    const set = this._listeners.get(event);
    if (set) set.delete(fn);
  }

  _emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        if (event !== 'error') this._emit('error', err);
        else console.error('duplex: error listener threw', err);
      }
    }
  }

  _call(handler, arg) {
    if (typeof handler !== 'function') return;
    try {
      handler(arg);
    } catch (err) {
      this._emit('error', err);
    }
  }

  _log(...args) {
    const d = this.options.debug;
    if (typeof d === 'function') d(...args);
    else if (d) console.debug('[duplex]', ...args);
  }

  _setState(state) {
    if (this.state === state) return;
    const previous = this.state;
    this.state = state;
    this._emit('state', { state, previous });
  }

  // --- public API ---------------------------------------------------------

  connect() {
    if (this._wanted) return;
    this._wanted = true;
    this._attempt = 0;
    if (this._network && !this._stopNetwork) {
      this._stopNetwork = this._network.listen(() => this._onOnline(), () => this._onOffline());
    }
    this._openConnection();
  }

  disconnect() {
    this._wanted = false;
    this._cancelReconnect();
    if (this._stopNetwork) {
      this._stopNetwork();
      this._stopNetwork = null;
    }
    const conn = this._conn;
    if (conn) this._dropConnection(conn, { code: NORMAL_CLOSE, reason: 'client disconnect', reconnect: false });
    else this._setState('disconnected');
    this._rejectConnectWaiters(new DuplexError(ErrorCode.NOT_CONNECTED, 'client disconnected'));
  }

  // While waiting out a reconnect delay, tries at once (a "reconnect now"
  // button after the server is back). Returns false, and does nothing, when
  // no reconnect is pending: connected, connecting, or disconnect()ed. A
  // failed attempt goes on with the backoff where it was.
  reconnectNow() {
    if (!this._wanted || this._conn || this._reconnectTimer == null) return false;
    this._openConnection();  // cancels the timer; a failure backs off as the timer's attempt would
    return true;
  }

  // A new connection token for the next (re)connect, e.g. after a 4501 refusal.
  setToken(token) {
    this._token = token;
  }

  subscribe(channel, options = {}) {
    if (typeof channel !== 'string' || channel === '') throw new TypeError('channel must be a non-empty string');
    if (this._subs.has(channel)) throw new DuplexError(ErrorCode.ALREADY_SUBSCRIBED, `already subscribed to ${channel}`);
    const sub = new Subscription(this, channel, options);
    this._subs.set(channel, sub);
    if (this.state === 'connected') this._sendSubscribe(this._conn, sub);
    return sub;
  }

  getSubscription(channel) {
    return this._subs.get(channel) || null;
  }

  // Resolves with {epoch, offset, duplicate} once the hub acknowledged (durably
  // stored) the message. While disconnected the publish is queued and sent after
  // reconnect; a publish cut off by a disconnect is sent again with the same
  // idempotency key, so the hub applies it once.
  publish(channel, data, options = {}) {
    return new Promise((resolve, reject) => {
      const item = {
        seq: this._publishSeq++,
        channel,
        data,
        key: options.idempotencyKey || randomKey(),
        resolve,
        reject,
      };
      if (this.state === 'connected') {
        this._sendPublish(this._conn, item);
      } else if (this._outbox.length >= this.options.maxQueued) {
        reject(new DuplexError(ErrorCode.QUEUE_FULL, `more than ${this.options.maxQueued} publishes queued`));
      } else {
        this._outbox.push(item);
        this._emit('queued', { channel, data, idempotencyKey: item.key, queued: this._outbox.length });
      }
    });
  }

  // Publishes waiting for a connection.
  get queued() {
    return this._outbox.length;
  }

  // Rejects every queued publish (e.g. when the user signs out).
  clearQueue(reason = 'queue cleared') {
    const items = this._outbox;
    this._outbox = [];
    for (const item of items) item.reject(new DuplexError(ErrorCode.DISCONNECTED, reason));
  }

  presence(channel) {
    return this._command({ type: 'presence', channel });
  }

  history(channel, options = {}) {
    const cmd = { type: 'history', channel };
    if (options.limit != null) cmd.limit = options.limit;
    if (options.since) cmd.since = { epoch: options.since.epoch, offset: options.since.offset };
    if (options.reverse) cmd.reverse = true;
    return this._command(cmd);
  }

  // A user-level command once connected (waits up to commandTimeout for the connection).
  _command(cmd) {
    return this._whenConnected().then(() => new Promise((resolve, reject) => {
      if (this.state !== 'connected') {
        reject(new DuplexError(ErrorCode.DISCONNECTED, 'connection lost before the command was sent'));
        return;
      }
      this._request(this._conn, cmd, { onReply: resolve, onError: reject });
    }));
  }

  _whenConnected() {
    if (this.state === 'connected') return Promise.resolve();
    if (!this._wanted) return Promise.reject(new DuplexError(ErrorCode.NOT_CONNECTED, 'not connected'));
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, timer: null };
      waiter.timer = this._setTimeout(() => {
        this._connectWaiters = this._connectWaiters.filter((w) => w !== waiter);
        reject(new DuplexError(ErrorCode.TIMEOUT, 'not connected within commandTimeout'));
      }, this.options.commandTimeout);
      this._connectWaiters.push(waiter);
    });
  }

  _rejectConnectWaiters(error) {
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const w of waiters) {
      this._clearTimeout(w.timer);
      error ? w.reject(error) : w.resolve();
    }
  }

  // --- connection lifecycle ----------------------------------------------

  async _openConnection() {
    this._cancelReconnect();
    if (this._conn) return;
    const conn = { transport: null, connected: false, disconnect: null, timers: new Set(), lastFrameAt: 0 };
    this._conn = conn;
    this._setState('connecting');
    this._emit('connecting', { attempt: this._attempt });

    if (this._token == null && typeof this.options.getToken === 'function') {
      try {
        this._token = await this._fetchToken();
      } catch (err) {
        if (this._conn !== conn) return;
        this._emit('error', new DuplexError(ErrorCode.TOKEN_FETCH, `getToken failed: ${(err && err.message) || err}`, { cause: err }));
        this._connectionLost(conn, { code: NETWORK_ERROR_CLOSE, reason: 'token fetch failed' });
        return;
      }
      if (this._conn !== conn) return;
    }

    let transport;
    try {
      transport = this._createTransport();
    } catch (err) {
      this._emit('error', err);
      this._connectionLost(conn, { code: NETWORK_ERROR_CLOSE, reason: err.message, reconnect: false });
      return;
    }
    conn.transport = transport;
    this.transport = transport.name;
    const fallbackLeft = !this._everConnected && this._transportList().length > 1;
    this._timer(conn, fallbackLeft ? Math.min(this.options.fallbackTimeout, this.options.connectTimeout) : this.options.connectTimeout, () => {
      if (!conn.connected) this._dropConnection(conn, { code: NETWORK_ERROR_CLOSE, reason: 'connect timeout' });
    }, 'connectTimer');
    this._log('connecting', transport.name, this.url);
    transport.open({
      onOpen: () => { if (this._conn === conn) this._authenticate(conn); },
      onText: (text) => { if (this._conn === conn) this._onText(conn, text); },
      onClose: ({ code, reason }) => {
        if (this._conn !== conn) return;
        this._log('closed', code, reason);
        this._connectionLost(conn, conn.disconnect || { code, reason });
      },
    });
  }

  _transportList() {
    const names = this.options.transport ? [this.options.transport] : this.options.transports;
    return names.filter((name) => TRANSPORTS[name]);
  }

  _createTransport() {
    // From the current position the first transport this host can run.
    const list = this._transportList();
    let lastError = null;
    for (let i = 0; i < list.length; i++) {
      const index = (this._transportIndex + i) % list.length;
      try {
        const transport = TRANSPORTS[list[index]](this.url, this.options);
        this._transportIndex = index;
        return transport;
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError || new DuplexError(ErrorCode.BAD_REQUEST, `no known transport in ${this.options.transports}`);
  }

  async _fetchToken() {
    const token = await this.options.getToken();
    if (typeof token !== 'string') throw new TypeError('getToken must resolve to a string');
    return token;
  }

  _authenticate(conn) {
    const cmd = { type: 'authenticate' };
    if (this._token) cmd.token = this._token;
    this._request(conn, cmd, {
      onReply: (result) => this._onConnected(conn, result),
      onError: (err) => {
        // A token in the URL got a `connected` push before this reply, which
        // is then "already authenticated" (or never comes): the connection stands.
        if (conn.connected) return;
        if (err.code === ErrorCode.TOKEN_EXPIRED && typeof this.options.getToken === 'function') {
          this._token = null;  // fetch a fresh one on the next attempt
          this._dropConnection(conn, { code: TOKEN_EXPIRED_CLOSE, reason: err.message, reconnect: true });
        } else if (err.code === ErrorCode.UNAUTHORIZED || err.code === ErrorCode.TOKEN_EXPIRED) {
          this._emit('error', err);
          this._dropConnection(conn, { code: 4501, reason: err.message, reconnect: false });
        } else {
          this._dropConnection(conn, { code: NETWORK_ERROR_CLOSE, reason: `authenticate failed: ${err.message}` });
        }
      },
    });
  }

  _onConnected(conn, result) {
    if (conn.connected) return;
    conn.connected = true;
    this._everConnected = true;
    this._clearTimer(conn, 'connectTimer');
    this._attempt = 0;
    this.clientId = result.client ?? null;
    this.user = result.user ?? null;
    this.node = result.node ?? null;
    this.expires = result.expires ?? null;
    this._setState('connected');
    this._emit('connected', { client: this.clientId, user: this.user, node: this.node, expires: this.expires, transport: this.transport });
    if (this._conn !== conn) return;  // a listener disconnected
    this._startHeartbeat(conn, result.ping);
    // Subscribes go first so the hub replays missed messages before our queued publishes echo back.
    for (const sub of this._subs.values()) this._sendSubscribe(conn, sub);
    const outbox = this._outbox;
    this._outbox = [];
    for (const item of outbox) {
      if (this._conn !== conn) {  // the connection died while flushing: keep the rest queued
        this._requeue(item);
        continue;
      }
      this._sendPublish(conn, item);
    }
    if (this._conn === conn) this._rejectConnectWaiters(null);
  }

  // No frame within ping + pingTimeout means the network is gone even if the
  // socket still looks open (browsers see no TCP keepalives or WebSocket pings).
  _startHeartbeat(conn, pingSeconds) {
    const interval = this.options.pingInterval ?? (pingSeconds > 0 ? pingSeconds * 1000 : 0);
    if (!(interval > 0)) return;
    const tick = () => {
      if (this._conn !== conn) return;
      const sentAt = this._now();
      this._send(conn, { type: 'ping', id: this._nextId++ });
      this._timer(conn, this.options.pingTimeout, () => {
        if (this._conn === conn && conn.lastFrameAt < sentAt) {
          this._dropConnection(conn, { code: NETWORK_ERROR_CLOSE, reason: 'heartbeat timeout' });
        }
      });
      this._timer(conn, interval, tick, 'pingTimer');
    };
    this._timer(conn, interval, tick, 'pingTimer');
  }

  _dropConnection(conn, info) {
    if (this._conn !== conn) return;
    if (conn.transport) conn.transport.close(NORMAL_CLOSE, info.reason || '');
    this._connectionLost(conn, info);
  }

  _connectionLost(conn, info) {
    if (this._conn !== conn) return;
    this._conn = null;
    for (const t of conn.timers) this._clearTimeout(t);
    conn.timers.clear();
    const wasConnected = conn.connected;
    // A transport that never connected (upgrade blocked, nothing received in
    // time): the next attempt uses the next one in the list.
    if (!wasConnected && !this._everConnected && !conn.lastFrameAt) this._transportIndex += 1;

    // Commands of this connection: publishes go back to the queue, the rest fail.
    const lost = [];
    for (const [id, entry] of this._pending) {
      if (entry.conn !== conn) continue;
      this._pending.delete(id);
      this._clearTimeout(entry.timer);
      lost.push(entry);
    }
    for (const entry of lost) {
      if (entry.onLost) entry.onLost();
      else entry.onError(new DuplexError(ErrorCode.DISCONNECTED, 'connection lost before the reply'));
    }
    for (const sub of this._subs.values()) {
      sub.state = 'subscribing';
      sub._buffer = [];
    }

    const code = info.code ?? NETWORK_ERROR_CLOSE;
    let reconnect = typeof info.reconnect === 'boolean' ? info.reconnect : !NO_RECONNECT_CODES.has(code);
    if (code === TOKEN_EXPIRED_CLOSE) {
      if (typeof this.options.getToken === 'function') {
        this._token = null;
      } else {
        reconnect = false;
        this._emit('error', new DuplexError(ErrorCode.TOKEN_EXPIRED, 'token expired and no getToken to renew it'));
      }
    }
    if (!this._wanted) reconnect = false;
    this.clientId = null;

    if (reconnect) this._setState('connecting');
    else {
      this._wanted = false;
      if (this._stopNetwork) {
        this._stopNetwork();
        this._stopNetwork = null;
      }
      this._setState('disconnected');
      this._rejectConnectWaiters(new DuplexError(ErrorCode.NOT_CONNECTED, info.reason || 'disconnected'));
    }
    this._emit('disconnected', { code, reason: info.reason || '', reconnect, wasConnected });
    if (reconnect) this._scheduleReconnect();
  }

  // Exponential backoff with full jitter: random(0, min(cap, base * 2^attempt)).
  _scheduleReconnect() {
    this._cancelReconnect();
    const { backoffBase, backoffCap } = this.options;
    const ceiling = Math.min(backoffCap, backoffBase * 2 ** Math.min(this._attempt, 30));
    const delay = Math.floor(this._random() * ceiling);
    this._attempt += 1;
    this.reconnectAt = this._now() + delay;
    const offline = this._isOffline();
    this._emit('reconnecting', { attempt: this._attempt, delay, offline });
    this._reconnectTimer = this._setTimeout(() => {
      this._reconnectTimer = null;
      this.reconnectAt = null;
      if (!this._wanted || this._conn) return;
      // A browser that knows it is offline would fail anyway (or, under emulation,
      // connect around it); wait for 'online', checking again after the next delay.
      if (this._isOffline()) this._scheduleReconnect();
      else this._openConnection();
    }, delay);
  }

  _cancelReconnect() {
    if (this._reconnectTimer != null) this._clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this.reconnectAt = null;
  }

  _isOffline() {
    return !!this._network && !this._network.online();
  }

  _onOffline() {
    this._log('network offline');
    if (this._conn) this._dropConnection(this._conn, { code: NETWORK_ERROR_CLOSE, reason: 'network offline' });
  }

  _onOnline() {
    this._log('network online');
    if (!this._wanted || this._conn) return;
    this._attempt = 0;
    this._openConnection();
  }

  // --- commands -----------------------------------------------------------

  _timer(conn, ms, fn, name) {
    if (name && conn[name] != null) {
      this._clearTimeout(conn[name]);
      conn.timers.delete(conn[name]);
    }
    const t = this._setTimeout(() => {
      conn.timers.delete(t);
      if (name) conn[name] = null;
      fn();
    }, ms);
    conn.timers.add(t);
    if (name) conn[name] = t;
    return t;
  }

  _clearTimer(conn, name) {
    if (conn[name] == null) return;
    this._clearTimeout(conn[name]);
    conn.timers.delete(conn[name]);
    conn[name] = null;
  }

  _send(conn, cmd) {
    const text = JSON.stringify(cmd);
    this._log('send', text);
    try {
      conn.transport.send(text);
      return true;
    } catch (err) {
      this._dropConnection(conn, { code: NETWORK_ERROR_CLOSE, reason: `send failed: ${(err && err.message) || err}` });
      return false;
    }
  }

  // Replies are handled synchronously in frame order (no promise hop), so a
  // subscribe's result is applied before the next push is looked at.
  _request(conn, cmd, { onReply, onError, onLost = null, timeout = this.options.commandTimeout }) {
    const id = this._nextId++;
    const entry = { conn, onReply, onError, onLost, timer: null };
    if (timeout > 0) {
      entry.timer = this._setTimeout(() => {
        if (this._pending.get(id) !== entry) return;
        this._pending.delete(id);
        onError(new DuplexError(ErrorCode.TIMEOUT, `${cmd.type} timed out`));
      }, timeout);
    }
    this._pending.set(id, entry);
    this._send(conn, { ...cmd, id });
  }

  _sendPublish(conn, item) {
    this._request(conn, { type: 'publish', channel: item.channel, data: item.data, idempotency_key: item.key }, {
      timeout: 0,  // bounded by the heartbeat: a dead connection re-queues it
      onReply: (r) => item.resolve({ epoch: r.epoch, offset: r.offset, duplicate: !!r.duplicate }),
      onError: item.reject,
      onLost: () => this._requeue(item),
    });
  }

  _requeue(item) {
    let i = this._outbox.length;
    while (i > 0 && this._outbox[i - 1].seq > item.seq) i--;
    this._outbox.splice(i, 0, item);
  }

  async _subscribeToken(sub) {
    const t = sub._token;
    if (typeof t === 'function') return t(sub.channel);
    return t;
  }

  _sendSubscribe(conn, sub) {
    sub.state = 'subscribing';
    sub._buffer = [];
    const recovering = sub.epoch != null && sub.offset != null;
    const cmd = { type: 'subscribe', channel: sub.channel };
    if (recovering) {
      cmd.recover = true;
      cmd.epoch = sub.epoch;
      cmd.offset = sub.offset;
    }
    const send = (token) => {
      if (this._conn !== conn || this._subs.get(sub.channel) !== sub) return;
      if (token) cmd.token = token;
      this._request(conn, cmd, {
        onReply: (result) => this._onSubscribed(sub, result, recovering),
        onError: (err) => this._onSubscribeError(conn, sub, err),
      });
    };
    if (typeof sub._token === 'function') {
      this._subscribeToken(sub).then(send, (err) => this._onSubscribeError(conn, sub,
        new DuplexError(ErrorCode.TOKEN_FETCH, `subscribe token for ${sub.channel}: ${(err && err.message) || err}`)));
    } else {
      send(sub._token);
    }
  }

  _onSubscribeError(conn, sub, err) {
    if (this._subs.get(sub.channel) !== sub) return;
    if (err.code === ErrorCode.TIMEOUT || err.code === ErrorCode.DISCONNECTED) {
      // State unknown on the hub: start over on a fresh connection.
      if (this._conn === conn) this._dropConnection(conn, { code: NETWORK_ERROR_CLOSE, reason: `subscribe ${sub.channel}: ${err.message}` });
      return;
    }
    this._subs.delete(sub.channel);
    sub.state = 'unsubscribed';
    sub._buffer = [];
    err.channel = sub.channel;
    this._call(sub._handlers.onError, err);
    this._emit('error', err);
    sub._settle(err);
  }

  _onSubscribed(sub, result, recovering) {
    if (this._subs.get(sub.channel) !== sub) return;
    const previous = { epoch: sub.epoch, offset: sub.offset };
    sub.state = 'subscribed';
    sub.recoverable = !!result.recoverable;
    const recovered = recovering && result.recovered === true;
    const context = {
      channel: sub.channel,
      epoch: result.epoch,
      offset: result.offset,
      recoverable: sub.recoverable,
      resubscribed: recovering,
      recovered,
    };
    if (recovered && result.epoch === sub.epoch) {
      this._call(sub._handlers.onSubscribed, context);
      for (const pub of Array.isArray(result.publications) ? result.publications : []) {
        this._deliver(sub, { ...pub, epoch: result.epoch }, true);
      }
      if (result.offset > sub.offset) sub.offset = result.offset;
    } else {
      sub.epoch = result.epoch;
      sub.offset = result.offset;
      this._call(sub._handlers.onSubscribed, context);
      if (recovering) {
        // Messages were lost: the application must reload its state.
        this._call(sub._handlers.onGap, { ...context, recovered: false, previousEpoch: previous.epoch, previousOffset: previous.offset });
      }
    }
    const buffered = sub._buffer;
    sub._buffer = [];
    for (const msg of buffered) {
      if (msg.type === 'join' || msg.type === 'leave') this._onPresenceChange(msg);
      else this._deliver(sub, msg, false);
    }
    sub._settle(null);
  }

  _unsubscribe(sub) {
    if (this._subs.get(sub.channel) !== sub) return Promise.resolve();
    this._subs.delete(sub.channel);
    sub.state = 'unsubscribed';
    sub._buffer = [];
    sub._settle(new DuplexError(ErrorCode.NOT_SUBSCRIBED, `unsubscribed from ${sub.channel}`));
    this._call(sub._handlers.onUnsubscribed, { channel: sub.channel, code: 0, reason: 'unsubscribe called', server: false });
    if (this.state !== 'connected') return Promise.resolve();
    return new Promise((resolve, reject) => {
      this._request(this._conn, { type: 'unsubscribe', channel: sub.channel }, {
        onReply: () => resolve(),
        onError: (err) => (err.code === ErrorCode.NOT_SUBSCRIBED || err.code === ErrorCode.DISCONNECTED ? resolve() : reject(err)),
      });
    });
  }

  // --- incoming frames ----------------------------------------------------

  _onText(conn, text) {
    conn.lastFrameAt = this._now();
    this._log('recv', text);
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      this._emit('error', new DuplexError(ErrorCode.BAD_FRAME, 'frame is not JSON'));
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'reply': return this._onReply(msg);
      case 'message': return this._onMessage(msg);
      case 'join':
      case 'leave': return this._onPresenceChange(msg);
      case 'unsubscribe': return this._onServerUnsubscribe(msg);
      case 'refresh': return this._onRefreshPush(conn, msg);
      case 'disconnect':
        conn.disconnect = { code: msg.code, reason: msg.reason || '', reconnect: msg.reconnect };
        return undefined;
      case 'connected':
        return this._onConnected(conn, msg);
      default:
        return undefined;  // unknown pushes are ignored (forward compatibility)
    }
  }

  _onReply(msg) {
    const entry = this._pending.get(msg.id);
    if (!entry) return;  // ping replies, or a command that already timed out
    this._pending.delete(msg.id);
    this._clearTimeout(entry.timer);
    if (msg.error) {
      const e = msg.error;
      entry.onError(new DuplexError(e.code ?? ErrorCode.INTERNAL, e.message || `error ${e.code}`));
    } else {
      entry.onReply(msg.result || {});
    }
  }

  _onMessage(msg) {
    const sub = this._subs.get(msg.channel);
    if (!sub) return;
    if (sub.state === 'subscribing') {
      if (sub._buffer.length < this.options.maxBuffered) sub._buffer.push(msg);
      return;
    }
    this._deliver(sub, msg, false);
  }

  // Offsets only grow: anything at or below the last seen offset was delivered already.
  _deliver(sub, msg, recovered) {
    const offset = typeof msg.offset === 'number' ? msg.offset : null;
    if (offset != null) {
      if (msg.epoch != null && sub.epoch != null && msg.epoch !== sub.epoch) {
        const previous = { epoch: sub.epoch, offset: sub.offset };
        sub.epoch = msg.epoch;
        sub.offset = offset - 1;
        this._call(sub._handlers.onGap, {
          channel: sub.channel, epoch: msg.epoch, offset, recovered: false, resubscribed: false,
          previousEpoch: previous.epoch, previousOffset: previous.offset,
        });
      }
      if (sub.offset != null && offset <= sub.offset) return;
      sub.offset = offset;
      if (sub.epoch == null && msg.epoch != null) sub.epoch = msg.epoch;
    }
    const publication = { channel: sub.channel, data: msg.data, offset, epoch: msg.epoch ?? sub.epoch, recovered };
    if (msg.info !== undefined) publication.info = msg.info;
    this._call(sub._handlers.onMessage, publication);
    this._emit('message', publication);
  }

  _onPresenceChange(msg) {
    const sub = this._subs.get(msg.channel);
    if (!sub) return;
    if (sub.state === 'subscribing') {
      // On SSE and long-polling a push can overtake the subscribe reply (it
      // travels in the POST response): kept, in order with the messages.
      if (sub._buffer.length < this.options.maxBuffered) sub._buffer.push(msg);
      return;
    }
    if (sub.state !== 'subscribed') return;
    const who = msg.client && typeof msg.client === 'object' ? msg.client : {};
    const event = { channel: msg.channel, client: who.client, user: who.user, info: who.info };
    this._call(msg.type === 'join' ? sub._handlers.onJoin : sub._handlers.onLeave, event);
  }

  _onServerUnsubscribe(msg) {
    const sub = this._subs.get(msg.channel);
    if (!sub) return;
    if (msg.code >= 2500 && msg.code < 3000 && this.state === 'connected' && this._conn) {
      // The server lost continuity: resubscribe from our position, recovering the gap.
      this._sendSubscribe(this._conn, sub);
      return;
    }
    this._subs.delete(msg.channel);
    sub.state = 'unsubscribed';
    sub._buffer = [];
    sub._settle(new DuplexError(ErrorCode.NOT_SUBSCRIBED, msg.reason || 'unsubscribed by server'));
    this._call(sub._handlers.onUnsubscribed, { channel: msg.channel, code: msg.code, reason: msg.reason || '', server: true });
  }

  _onRefreshPush(conn, msg) {
    if (typeof this.options.getToken !== 'function') {
      this._emit('error', new DuplexError(ErrorCode.TOKEN_EXPIRED, `token expires at ${msg.expires} and there is no getToken to renew it`));
      return;
    }
    if (conn.refreshing) return;
    conn.refreshing = true;
    this._fetchToken().then((token) => {
      if (this._conn !== conn) return;
      this._token = token;
      this._request(conn, { type: 'refresh', token }, {
        onReply: (result) => {
          conn.refreshing = false;
          this.expires = result.expires ?? this.expires;
          this._emit('refreshed', { expires: this.expires });
        },
        onError: (err) => {
          conn.refreshing = false;
          this._emit('error', err);
        },
      });
    }, (err) => {
      conn.refreshing = false;
      this._emit('error', new DuplexError(ErrorCode.TOKEN_FETCH, `getToken failed: ${(err && err.message) || err}`, { cause: err }));
    });
  }
}

export default Duplex;
